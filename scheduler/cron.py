"""Cron schedules evaluated in the task's time zone, with the DST rules of ``scheduler.dst``.

croniter does the calendar arithmetic on naive *wall* times only, on the spec's ``cron_terms``
(Vixie cron's meaning in croniter's terms, ``config.cron``): the wall times are the union of the
terms' in ascending order. This module maps each wall time to
UTC instants itself (``wall_instants``). croniter's own zone handling is not used because its
fall-back rule differs from ours: given a zone-aware start it fires a daily 02:30 job twice on a
fall-back day (once per occurrence), like APScheduler.

Why the search below is right: taking for each wall time the earliest instant it fires at, those
instants never decrease as the wall time increases (a gap maps to its end, a fold's first
occurrences come before everything after the fold). So walking wall times upwards from a start
that no fire can precede, the first fire after ``after`` is found as soon as a wall time's earliest
instant reaches the best candidate. The start is the wall time of ``after``, less the size of a
fold that ``after`` may be inside (whose second occurrences are still to come).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from config.schedules import ScheduleSpec
from scheduler._instants import utc
from scheduler.dst import DEFAULT_DST_POLICY, DstPolicy, wall_instants
from scheduler.errors import ScheduleError
from scheduler.schedules import Schedule

# Real zones change their offset a few times a year at most, so at most once within this span:
# looking this far ahead finds the fold ``after`` may be in.
_FOLD_HORIZON = timedelta(days=1)
_ZERO = timedelta(0)
_START = datetime(2000, 1, 1)


@dataclass(frozen=True, slots=True)
class CronSchedule(Schedule):
    """``spec.cron`` in ``zone``'s wall time; DST gaps and folds as ``dst_policy`` says.

    ``legacy`` evaluates the expression as taskbus did before it followed Vixie cron (croniter's
    own reading, ``day_or=True``): only to tell a user whose stored schedule changed meaning."""

    spec: ScheduleSpec
    zone: ZoneInfo
    dst_policy: DstPolicy = DEFAULT_DST_POLICY
    legacy: bool = False
    _templates: tuple[croniter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.spec.cron is None:
            raise ScheduleError(f"schedule {self.spec.text!r} is not a cron expression")
        terms = (
            ((self.spec.cron, True),)
            if self.legacy
            else [(term, False) for term in self.spec.cron_terms]
        )
        templates = tuple(
            croniter(
                term,
                _START,
                ret_type=datetime,
                second_at_beginning=self.spec.cron_has_seconds,
                day_or=day_or,
            )
            for term, day_or in terms
        )
        object.__setattr__(self, "_templates", templates)

    def next_fire(self, after: datetime) -> datetime | None:
        after = utc("after", after)
        if self.zone.key in _UTC_KEYS:  # no gaps, no folds: the first wall time is the fire
            return next((w.replace(tzinfo=UTC) for w in self._walls(_naive(after))), None)
        best: datetime | None = None
        try:
            for wall in self._walls(self._search_start(after)):
                instants = wall_instants(wall, self.zone, self.dst_policy)
                if not instants:
                    continue  # a skipped gap
                candidate = next((i for i in instants if i > after), None)
                if candidate is not None and (best is None or candidate < best):
                    best = candidate
                if best is not None and instants[0] >= best:
                    break
        except OverflowError:  # the search ran past year 9999
            pass
        return best

    def walls_after(self, after: datetime) -> Iterator[datetime]:
        """The expression's naive wall times upwards from the earliest one that may fire after
        ``after`` (the start of ``next_fire``'s search); for ``scheduler.describe``."""
        return self._walls(self._search_start(utc("after", after)))

    def _search_start(self, after: datetime) -> datetime:
        """The wall time of ``after``, less the fold it may be in (module docstring)."""
        offset = after.astimezone(self.zone).utcoffset() or _ZERO
        later = (after + _FOLD_HORIZON).astimezone(self.zone).utcoffset() or _ZERO
        return (after + offset).replace(tzinfo=None) - max(_ZERO, offset - later)

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """The expression's naive wall times from ``start`` (inclusive, to the second) upwards:
        its terms' merged, each wall time once."""
        if len(self._templates) == 1:
            yield from _term_walls(self._templates[0], start)
            return
        previous = None
        for wall in heapq.merge(*(_term_walls(t, start) for t in self._templates)):
            if wall != previous:
                yield wall
            previous = wall


def _term_walls(template: croniter, start: datetime) -> Iterator[datetime]:
    walls = copy.copy(template)  # shares the parsed fields, not the position
    walls.set_current(start - timedelta(seconds=1), force=True)
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except (CroniterBadDateError, OverflowError, ValueError):  # none before year 10000
            return
        yield wall


def changed_meaning(
    schedule: CronSchedule, after: datetime, count: int = 20
) -> tuple[datetime | None, datetime | None] | None:
    """Where the schedule's fires under croniter's own reading (``legacy``) and under Vixie
    cron's part, among the next ``count`` after ``after``: the first pair that differs (``old``,
    ``new``; None when one of them has no more fires), or None if they agree."""
    try:
        old_reading = CronSchedule(schedule.spec, schedule.zone, schedule.dst_policy, legacy=True)
    except CroniterError:  # not an expression the old reading took: it cannot have been stored
        return None
    old_after = new_after = utc("after", after)
    for _ in range(count):
        old, new = old_reading.next_fire(old_after), schedule.next_fire(new_after)
        if old != new:
            return old, new
        if new is None or old is None:
            return None
        old_after, new_after = old, new
    return None


_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"})


def _naive(after: datetime) -> datetime:
    """The UTC wall time just after ``after``: walls are whole seconds, fires strictly later."""
    return after.replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
