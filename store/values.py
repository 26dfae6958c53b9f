"""Checking and encoding the values the store keeps: text, counts, instants, msgpack maps.

Every check raises InvalidValue naming the field. Text may not contain NUL (libSQL would cut it
there), integers must fit in int64 (libSQL turns others into floats), instants must be aware.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from bus.nesting import MAX_PAYLOAD_DEPTH, nesting_depth
from store._sql import INT_MAX
from store.errors import InvalidValue

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 4_000
# A stored map travels back inside replies that wrap it (a task list puts a task's config three
# levels deep) and every reply must fit the bus's nesting limit: stored values keep this margin.
REPLY_WRAPPING_LEVELS = 8
MAX_STORED_DEPTH = MAX_PAYLOAD_DEPTH - REPLY_WRAPPING_LEVELS


def text(field: str, value: object, *, max_chars: int = MAX_TEXT_CHARS, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidValue(field, f"expected a string, got {type(value).__name__}")
    if not value and not empty:
        raise InvalidValue(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidValue(field, f"is {len(value)} characters long, more than {max_chars}")
    if "\x00" in value:
        raise InvalidValue(field, "must not contain NUL characters")
    return value


def identifier(field: str, value: object) -> str:
    """Ids (task ids, lease names...): non-empty printable text of at most MAX_ID_CHARS.

    Anything printable is accepted, quotes and semicolons included: every query binds its values.
    """
    checked = text(field, value, max_chars=MAX_ID_CHARS)
    if not checked.isprintable():
        raise InvalidValue(field, "must be printable (no control characters or line breaks)")
    return checked


def message(field: str, value: object) -> str:
    """Error messages: any string (they are cut and cleaned when written, see ``truncated``)."""
    if not isinstance(value, str):
        raise InvalidValue(field, f"expected a string, got {type(value).__name__}")
    return value


def truncated(value: str, max_chars: int) -> str:
    """Error messages are kept, cut to ``max_chars``, with NUL characters replaced."""
    value = value.replace("\x00", "\\0")
    if len(value) <= max_chars:
        return value
    return value[: max_chars - 1] + "…"


def count(field: str, value: object, *, low: int = 0, high: int = INT_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValue(field, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidValue(field, f"{value} is outside {low}..{high}")
    return value


def seconds(field: str, value: object, *, low: float = 0.0, high: float = 1e9) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidValue(field, f"expected a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidValue(field, f"{value} is outside {low}..{high}")
    return float(value)


def flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(field, f"expected true or false, got {type(value).__name__}")
    return value


def instant(field: str, value: object) -> datetime:
    """An aware datetime, as UTC."""
    if not isinstance(value, datetime):
        raise InvalidValue(field, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is UTC:  # already (what the wire's ``+00:00`` reads as)
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue(field, f"must be an aware datetime, not naive {value.isoformat()}")
    return value.astimezone(UTC)


def to_us(when: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    delta = when - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def maybe_from_us(micros: int | None) -> datetime | None:
    return None if micros is None else from_us(micros)


def packed(field: str, value: Mapping[str, Any] | None, max_bytes: int) -> bytes | None:
    """``value`` as msgpack; refused if it does not round-trip or is over ``max_bytes``."""
    return encoded(field, value, max_bytes)[0]


def encoded(
    field: str, value: Mapping[str, Any] | None, max_bytes: int
) -> tuple[bytes | None, dict[str, Any] | None]:
    """``value`` as msgpack, and as it reads back (tuples become lists...)."""
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise InvalidValue(field, f"expected a map, got {type(value).__name__}")
    depth = nesting_depth(dict(value), stop_after=MAX_STORED_DEPTH)
    if depth > MAX_STORED_DEPTH:
        raise InvalidValue(
            field,
            f"nests more than {MAX_STORED_DEPTH} levels of maps and arrays: a stored value "
            f"leaves {REPLY_WRAPPING_LEVELS} of the bus's {MAX_PAYLOAD_DEPTH} to the replies "
            "that carry it",
        )
    try:
        data: bytes = msgpack.packb(dict(value), use_bin_type=True)
        decoded: dict[str, Any] = msgpack.unpackb(data, raw=False)  # keys must be strings
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValue(field, f"cannot be stored as msgpack: {exc}") from None
    if len(data) > max_bytes:
        raise InvalidValue(
            field, f"is {len(data)} bytes encoded, more than the {max_bytes} allowed"
        )
    return data, decoded


def unpacked(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    value: dict[str, Any] = msgpack.unpackb(data, raw=False)
    return value
