"""Jitter: a fire's dispatch delayed by a reproducible amount, so that many tasks on the same
schedule (``@hourly``) do not all start in the same instant.

The delay is derived from a hash of ``(task_id, instant)``: the same task and fire always get the
same delay (tests, restarts, two scheduler hosts agree), different tasks get different ones. Only
the dispatch moves; the fire keeps its scheduled instant as its key.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

from scheduler._instants import utc
from scheduler.errors import ScheduleError

_SCALE = 2**48  # a 6-byte hash divides exactly in a float: the fraction stays below 1


def jittered(instant: datetime, task_id: str, max_jitter_s: float) -> datetime:
    """``instant`` (in UTC) plus a delay in ``[0, max_jitter_s]`` seconds fixed by the task and
    the instant, to the microsecond. ``max_jitter_s == 0`` returns ``instant`` unchanged.
    """
    instant = utc("instant", instant)
    if not isinstance(task_id, str):
        raise ScheduleError(f"task_id must be a string, not {type(task_id).__name__}")
    if (
        isinstance(max_jitter_s, bool)
        or not isinstance(max_jitter_s, int | float)
        or not math.isfinite(max_jitter_s)
        or max_jitter_s < 0
    ):
        raise ScheduleError(f"max_jitter_s must be a finite number >= 0, not {max_jitter_s!r}")
    key = f"{task_id}\x00{instant.astimezone(UTC).isoformat()}".encode("utf-8", "surrogatepass")
    fraction = int.from_bytes(hashlib.blake2b(key, digest_size=6).digest(), "big") / _SCALE
    return instant + timedelta(microseconds=math.floor(fraction * max_jitter_s * 1_000_000))
