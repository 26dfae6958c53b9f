"""A schedule as the scheduler uses it: the next fire instant after a given instant.

``Schedule`` is the interface; ``CronSchedule`` (in ``scheduler.cron``), ``IntervalSchedule`` and
``OneShotSchedule`` implement it, and ``compile_schedule`` builds the right one from a schedule's
text. Every instant in and out is an aware datetime; out, always in UTC. Nothing reads a clock:
"now" is the caller's argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from config.schedules import ScheduleSpec
from scheduler._instants import utc
from scheduler.errors import ScheduleError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule(ABC):
    """When a task fires.

    Invariants every implementation keeps: ``next_fire(after)`` is strictly later than ``after``
    or None; a fire instant is never returned twice by ``fires_between``; the object is immutable
    and may be shared (``compile_schedule`` hands out one object per schedule). A naive datetime
    argument raises ScheduleError.
    """

    __slots__ = ()
    spec: ScheduleSpec

    @abstractmethod
    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after ``after``, in UTC; None if there is none."""

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The fire instants ``t`` with ``start < t <= end``, ascending, at most ``limit``.

        For misfire catch-up: ``fires_between(last_fired, now, limit)``. ``end`` may be far in
        the future (year 9999) to ask for the next fires after ``start``.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ScheduleError(f"limit must be a whole number >= 0, not {limit!r}")
        end = utc("end", end)
        fires: list[datetime] = []
        if limit == 0:
            return fires
        instant = self.next_fire(start)
        while instant is not None and instant <= end:
            fires.append(instant)
            if len(fires) == limit:
                break  # not one fire more than asked: each can cost a croniter search
            instant = self.next_fire(instant)
        return fires


@dataclass(frozen=True, slots=True)
class IntervalSchedule(Schedule):
    """Every ``spec.interval_s`` seconds of absolute time, at ``anchor + k * interval`` for every
    whole ``k``: the anchor only sets the phase. Time zones and DST do not move it.

    The default anchor, the Unix epoch, puts ``every 5m`` at :00, :05, :10... UTC on every host
    and after every restart without storing anything.
    """

    spec: ScheduleSpec
    anchor: datetime = EPOCH
    _step: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.spec.interval_s is None:
            raise ScheduleError(f"schedule {self.spec.text!r} is not an interval")
        object.__setattr__(self, "anchor", utc("anchor", self.anchor))
        object.__setattr__(self, "_step", timedelta(seconds=self.spec.interval_s))

    def next_fire(self, after: datetime) -> datetime | None:
        after = utc("after", after)
        periods = (after - self.anchor) // self._step + 1
        try:
            return self.anchor + periods * self._step
        except OverflowError:  # past year 9999
            return None


@dataclass(frozen=True, slots=True)
class OneShotSchedule(Schedule):
    """Once, at ``spec.at``; nothing after it."""

    spec: ScheduleSpec
    _at: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.spec.at is None:
            raise ScheduleError(f"schedule {self.spec.text!r} is not a one-shot at:")
        object.__setattr__(self, "_at", utc("at", self.spec.at))

    @property
    def at(self) -> datetime:
        """The one fire instant, in UTC."""
        return self._at

    def next_fire(self, after: datetime) -> datetime | None:
        return self._at if utc("after", after) < self._at else None
