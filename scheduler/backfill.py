"""Backfill: every instant of a task's schedule in a past range ``[start, end]``, to be fired once
each (docs/scheduling.md#backfill).

Pure: ``now`` is an argument, and the instants come from the schedule's own ``fires_between``
(the ``FireTimes`` protocol every ``Schedule`` satisfies), so a backfill fires exactly the
instants the schedule would have fired, under its zone and DST rules. A range holding more than
``MAX_BACKFILL`` instants is refused whole (nothing is fired), with the instant where the limit
was passed, so that the caller can split it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler._instants import utc
from scheduler.errors import ScheduleError
from scheduler.misfire import FireTimes

MAX_BACKFILL = 10_000  # instants one backfill fires at most
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a range starts at the Unix epoch or later
_RESOLUTION = timedelta(microseconds=1)  # instants are whole microseconds


class BackfillError(ScheduleError):
    """A backfill range the schedule cannot be backfilled over; ``field`` names the bound at
    fault (``from`` or ``to``), ``problem`` says why."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True, slots=True)
class Backfill:
    """The range ``[start, end]`` (UTC) and the schedule's instants in it, ascending."""

    start: datetime
    end: datetime
    instants: tuple[datetime, ...]

    @property
    def first(self) -> datetime | None:
        return self.instants[0] if self.instants else None

    @property
    def last(self) -> datetime | None:
        return self.instants[-1] if self.instants else None


def backfill_instants(
    schedule: FireTimes,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    limit: int = MAX_BACKFILL,
) -> Backfill:
    """The instants ``t`` of ``schedule`` with ``start <= t <= end`` (both bounds included).

    BackfillError (naming the bound at fault) unless both bounds are aware,
    ``EARLIEST <= start < end <= now``, and the range holds at most ``limit`` instants. A range
    with no instant is no error (nothing to fire).
    """
    start = _bound("from", start)
    end = _bound("to", end)
    now = utc("now", now)
    if start < EARLIEST:
        raise BackfillError(
            "from",
            f"{start.isoformat()} is before {EARLIEST.isoformat()}, the earliest a range starts",
        )
    if start >= end:
        raise BackfillError(
            "from", f"{start.isoformat()} is not before to ({end.isoformat()}): from < to"
        )
    if end > now:
        raise BackfillError(
            "to",
            f"{end.isoformat()} is in the future (now {now.isoformat()}): a backfill fires past "
            "instants only; the schedule fires the later ones",
        )
    instants = schedule.fires_between(start - _RESOLUTION, end, limit + 1)
    if len(instants) > limit:
        raise BackfillError(
            "to",
            f"the range {start.isoformat()} .. {end.isoformat()} holds more than {limit:,} "
            f"instants of the schedule (the {limit + 1:,}th is {instants[limit].isoformat()}): "
            f"backfill at most {limit:,} at once; split the range, e.g. to before "
            f"{instants[limit].isoformat()}",
        )
    return Backfill(start, end, tuple(instants))


def _bound(name: str, value: datetime) -> datetime:
    try:
        return utc(name, value)
    except ScheduleError as error:
        raise BackfillError(name, str(error)) from error
