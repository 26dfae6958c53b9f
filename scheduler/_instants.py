"""Instants are aware datetimes in UTC; a naive datetime is a caller's bug, refused at the door."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.errors import ScheduleError

# An end for "the next fire after t" asked through FireTimes.fires_between.
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


def utc(name: str, value: datetime) -> datetime:
    """``value`` converted to UTC; ScheduleError naming ``name`` unless it is an aware datetime."""
    if not isinstance(value, datetime):
        raise ScheduleError(f"{name} must be an aware datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ScheduleError(f"{name} must be an aware datetime, not naive {value.isoformat()}")
    return value.astimezone(UTC)


def seconds(value: float) -> str:
    """A duration for messages: ``60s``, ``1.5s``."""
    return f"{value:g}s"
