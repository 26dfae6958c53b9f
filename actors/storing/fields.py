"""Reading a request's payload strictly, field by field: ``Fields`` and the field parsers.

A missing, mistyped or unknown field is refused with ``InvalidValue`` naming the field (a nested
one by its path: ``fence.token``, ``runs[3].last_at``). Instants travel as ISO 8601 text with a UTC
offset (``2024-05-01T03:00:00+00:00``) and come back in UTC. ``strict`` turns a function of
``Fields`` into a route's reader (``actors.actor.on_request(read=...)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from store import Fence, values
from store.errors import InvalidValue
from store.records import MAX_EXECUTION_BATCH

T = TypeVar("T")
_MISSING: Any = object()


class Fields:
    """Reads a request payload field by field; :meth:`done` refuses fields nobody asked for."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload
        self._seen: set[str] = set()

    def required(self, name: str, parse: Callable[[str, Any], T]) -> T:
        self._seen.add(name)
        if name not in self._payload:
            raise InvalidValue(name, "is required")
        return parse(name, self._payload[name])

    def optional(self, name: str, parse: Callable[[str, Any], T], default: T) -> T:
        """``default`` if the field is absent or nil."""
        self._seen.add(name)
        value = self._payload.get(name, _MISSING)
        if value is _MISSING or value is None:
            return default
        return parse(name, value)

    def done(self) -> None:
        if self._payload.keys() <= self._seen:  # the common case, checked in C
            return
        unknown = sorted(str(name) for name in self._payload if name not in self._seen)
        if unknown:
            raise InvalidValue(unknown[0], "is not a field of this request")


# ------------------------------------------------------------------ field parsers


def text(name: str, value: Any) -> str:
    return values.text(name, value)


def any_text(name: str, value: Any) -> str:
    return values.text(name, value, empty=True)


def identifier(name: str, value: Any) -> str:
    return values.identifier(name, value)


def instant(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidValue(name, f"expected ISO 8601 text, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(name, f"{value!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        raise InvalidValue(name, f"{value!r} has no UTC offset (add +00:00 or Z)")
    return values.instant(name, parsed)


def mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValue(name, f"expected a map, got {type(value).__name__}")
    return dict(value)


def flag(name: str, value: Any) -> bool:
    return values.flag(name, value)


def count(name: str, value: Any) -> int:
    return values.count(name, value)


def positive(name: str, value: Any) -> int:
    return values.count(name, value, low=1)


def seconds(name: str, value: Any) -> float:
    return values.seconds(name, value)


def message(name: str, value: Any) -> str:
    return values.message(name, value)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Names a problem of a nested field by its path: ``fence.token``, ``runs[3].last_at``."""
    try:
        yield
    except InvalidValue as exc:
        raise InvalidValue(f"{name}.{exc.field}", exc.problem) from None


def fence(name: str, value: Any) -> Fence:
    lease = Fields(mapping(name, value))
    with inside(name):
        parsed = Fence(lease.required("lease", identifier), lease.required("token", positive))
        lease.done()
    return parsed


def entries(
    name: str,
    value: Any,
    read: Callable[[Fields], T],
    *,
    low: int = 1,
    high: int = MAX_EXECUTION_BATCH,
) -> tuple[T, ...]:
    """``low`` to ``high`` maps, each read by ``read`` (which must call ``done``); a bad entry is
    named with its index: ``executions[3].scheduled_at: is required``.
    """
    parsed: list[T] = []
    for index, entry in enumerate(_batch(name, value, low, high)):
        item = f"{name}[{index}]"
        fields_ = Fields(mapping(item, entry))
        with inside(item):
            parsed.append(read(fields_))
    return tuple(parsed)


def identifiers(name: str, value: Any) -> tuple[str, ...]:
    """1 to MAX_EXECUTION_BATCH identifiers."""
    return tuple(
        identifier(f"{name}[{index}]", item)
        for index, item in enumerate(_batch(name, value, 1, MAX_EXECUTION_BATCH))
    )


def _batch(name: str, value: Any, low: int, high: int) -> list[Any] | tuple[Any, ...]:
    """A list of ``low`` to ``high`` entries."""
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if not low <= len(value) <= high:
        raise InvalidValue(name, f"has {len(value)} entries, expected {low}..{high}")
    return value


# ------------------------------------------------------------------ readers


def strict(read: Callable[[Fields], T]) -> Callable[[Mapping[str, Any]], T]:
    """``read`` as a route's reader: a payload in, the request out, and no field left unread."""

    @functools.wraps(read)
    def reader(payload: Mapping[str, Any]) -> T:
        request = Fields(payload)
        value = read(request)
        request.done()
        return value

    return reader
