"""What both sides of the store's wire share: records as payload maps and back, errors as codes.

``plain`` renders a record (a frozen dataclass of ``store.records``) as a map, instants as ISO 8601
text; ``from_plain`` reads such a map back into the record. ``error_code`` names a store failure
for an error reply and ``store_error`` turns the code back into the store's exception class, so
that a caller of :class:`actors.storing.StoreClient` catches ``NotFound`` or ``LeaseLost`` exactly
as a caller of :class:`store.Store` does.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError

R = TypeVar("R")

# ------------------------------------------------------------------ records to maps


def plain(record: Any) -> dict[str, Any]:
    """A record dataclass as a payload map: instants as ISO 8601 text, nested records as maps."""
    rendered: dict[str, Any] = {}
    for name in _field_names(type(record)):  # type: ignore[arg-type]
        value = getattr(record, name)
        # Most fields are scalars: kept as they are without a call (records go by thousands).
        rendered[name] = value if type(value) in _SCALARS else _plain_value(value)
    return rendered


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    assert is_dataclass(cls)
    return tuple(f.name for f in fields(cls))


def _plain_value(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return plain(value)
    if isinstance(value, tuple):
        return [_plain_value(item) for item in value]
    return value


_SCALARS = frozenset({str, int, float, bool, bytes, dict, list, type(None)})

# ------------------------------------------------------------------ maps back to records


def from_plain(cls: type[R], data: Mapping[str, Any]) -> R:
    """The record ``cls`` a store reply rendered with :func:`plain` (trusted: the store wrote
    it); a field the map leaves out takes the record's default."""
    readers = _readers(cls)  # type: ignore[arg-type]
    return cls(**{name: read(data[name]) for name, read in readers if name in data})


Reader = Callable[[Any], Any]


@functools.cache
def _readers(cls: type) -> tuple[tuple[str, Reader], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _reader(hints[f.name])) for f in fields(cls) if f.init)


def _reader(hint: Any) -> Reader:
    origin = typing.get_origin(hint)
    if hint is datetime:
        return _instant
    if isinstance(hint, type) and is_dataclass(hint):
        return functools.partial(from_plain, hint)
    if origin in (types.UnionType, typing.Union):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            read = _reader(inner[0])
            return lambda value: None if value is None else read(value)
    if origin is tuple:
        read = _reader(typing.get_args(hint)[0])
        return lambda value: tuple(read(item) for item in value)
    return _same


def _instant(value: Any) -> datetime:
    return datetime.fromisoformat(value)


def _same(value: Any) -> Any:
    return value


# ------------------------------------------------------------------ errors as codes

_CODES: tuple[tuple[type[StoreError], str], ...] = (
    (InvalidValue, "invalid"),
    (NotFound, "not_found"),
    (LeaseLost, "lease_lost"),
    (Conflict, "conflict"),
)


STORE_CODES = frozenset({*(code for _, code in _CODES), "store_error"})


def error_code(error: StoreError) -> str:
    """The error code a store failure is answered with (``store_error`` for any other)."""
    return next((code for kind, code in _CODES if isinstance(error, kind)), "store_error")


def store_error(code: str, reason: str) -> StoreError:
    """The store's exception for an error reply's ``code`` and ``reason``: the inverse of
    :func:`error_code`, worded as the store worded it."""
    if code == "invalid":
        field, _, problem = reason.partition(": ")
        return InvalidValue(field, problem)
    kind = next((kind for kind, known in _CODES if known == code), StoreError)
    return kind(reason)
