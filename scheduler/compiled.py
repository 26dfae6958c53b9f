"""``compile_schedule``: a schedule's text, zone and DST policy to a shared ``Schedule``.

Compiling parses the text (config's one grammar), looks the zone up and prepares croniter; the
result is immutable, so it is cached: asking again for the same (text, zone, policy, anchor) returns
the same object, and a scheduler with thousands of tasks on ``@daily`` compiles it once.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.errors import ScheduleSyntaxError
from config.schedules import parse_schedule_spec
from scheduler._instants import utc
from scheduler.cron import CronSchedule
from scheduler.dst import DEFAULT_DST_POLICY, DstPolicy
from scheduler.errors import ScheduleError
from scheduler.schedules import EPOCH, IntervalSchedule, OneShotSchedule, Schedule

CACHE_SIZE = 65_536  # distinct (schedule, zone, policy, anchor) kept compiled


def compile_schedule(
    text: str,
    timezone: str = "UTC",
    *,
    dst_policy: DstPolicy = DEFAULT_DST_POLICY,
    anchor: datetime | None = None,
) -> Schedule:
    """The ``Schedule`` of ``text`` (see ``config.schedules``), cached.

    ``timezone`` is the IANA zone a cron schedule's wall times are in; ``dst_policy`` says what
    those wall times do on DST transition days. ``anchor`` sets the phase of an interval schedule
    (default: the Unix epoch). Interval and ``at:`` schedules ignore the zone and the policy, but
    an unknown zone is still an error. Raises ScheduleError saying what is wrong and where.
    """
    if not isinstance(text, str):
        raise ScheduleError(f"a schedule is a string, not {type(text).__name__}")
    if not isinstance(timezone, str):
        raise ScheduleError(f"a time zone is an IANA name string, not {type(timezone).__name__}")
    if not isinstance(dst_policy, DstPolicy):
        raise ScheduleError(f"dst_policy must be a DstPolicy, not {type(dst_policy).__name__}")
    start = EPOCH if anchor is None else utc("anchor", anchor)
    return _compile(text, timezone, dst_policy, start)


def clear_schedule_cache() -> None:
    """Forget every compiled schedule (tests; a time zone database update)."""
    _compile.cache_clear()


@lru_cache(maxsize=CACHE_SIZE)
def _compile(text: str, timezone: str, dst_policy: DstPolicy, anchor: datetime) -> Schedule:
    try:
        spec = parse_schedule_spec(text)
    except ScheduleSyntaxError as error:
        raise ScheduleError(str(error)) from error
    zone = _zone(timezone)
    if spec.kind == "interval":
        return IntervalSchedule(spec, anchor)
    if spec.kind == "at":
        return OneShotSchedule(spec)
    return CronSchedule(spec, zone, dst_policy)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"time zone {name!r} is not known to this system; expected an IANA name such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None
