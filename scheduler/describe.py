"""A schedule's next fire times, each with a note when a DST gap or fold decided it.

The fire times are the schedule's own (``Schedule.fires_between``); the notes say which rule of
``scheduler.dst`` made them: the wall times of a cron expression that fall in a gap or a fold are
classified with ``wall_instants`` itself (a gap: no instant when gaps are skipped; a fold: two
when folds fire both), so the rules have one owner. A wall time that a ``dst_gap = "skip"``
task does not fire gets an entry of its own, without an instant (``at`` None). Interval and
one-shot schedules fire at absolute instants: no DST rule applies, no note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from scheduler._instants import utc
from scheduler.cron import CronSchedule
from scheduler.dst import DstPolicy, wall_instants
from scheduler.schedules import Schedule

MAX_COUNT = 100
_FAR = datetime(9999, 12, 31, tzinfo=UTC)
_CLASSIFY = DstPolicy(gap="skip", fold="both")  # gap: no instant; fold: two
_PLACE = DstPolicy(gap="shift", fold="first")  # where a skipped wall time would have been


@dataclass(frozen=True, slots=True)
class NextFire:
    """A fire at ``at`` (UTC), ``local`` its wall time in the task's zone (aware); ``note`` why a
    DST rule moved, doubled or dropped it. ``at`` is None for a wall time not fired
    (``dst_gap = "skip"``); ``local`` is then the naive wall time that does not exist."""

    at: datetime | None
    local: datetime
    note: str | None = None


def next_fires(
    schedule: Schedule, zone: ZoneInfo, after: datetime, count: int
) -> tuple[NextFire, ...]:
    """The first ``count`` (1..MAX_COUNT) fires of ``schedule`` after ``after``, in ``zone``,
    with DST notes; a skipped wall time before the last of them is listed in its place too."""
    after = utc("after", after)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 1..{MAX_COUNT}, not {count!r}")
    fires = schedule.fires_between(after, _FAR, count)
    if not fires:
        return ()
    notes: dict[datetime, str] = {}
    skipped: list[NextFire] = []
    if isinstance(schedule, CronSchedule):
        notes, skipped = _dst_notes(schedule, after, fires[-1])
    entries = [NextFire(at, at.astimezone(zone), notes.get(at)) for at in fires]
    entries.extend(skipped)
    return tuple(sorted(entries, key=_position(schedule)))


def _position(schedule: Schedule) -> Callable[[NextFire], tuple[datetime, int]]:
    def key(entry: NextFire) -> tuple[datetime, int]:
        if entry.at is not None:
            return (entry.at, 0)
        assert isinstance(schedule, CronSchedule)
        return (wall_instants(entry.local, schedule.zone, _PLACE)[0], 1)

    return key


def _dst_notes(
    schedule: CronSchedule, after: datetime, last: datetime
) -> tuple[dict[datetime, str], list[NextFire]]:
    """The notes of the fires in ``(after, last]`` that a gap or fold decided, by instant, and
    the wall times a skipped gap dropped."""
    zone, policy = schedule.zone, schedule.dst_policy
    gaps: dict[datetime, list[datetime]] = {}  # fire instant: the gap wall times shifted to it
    folds: dict[datetime, tuple[datetime, int, int]] = {}  # instant: (wall, which, of how many)
    skipped: list[NextFire] = []
    for wall in schedule.walls_after(after):
        both = wall_instants(wall, zone, _CLASSIFY)
        place = wall_instants(wall, zone, _PLACE)[0]
        if place > last:
            break  # earliest instants never decrease as wall times increase (scheduler.cron)
        fired = wall_instants(wall, zone, policy)
        if not both:  # in a gap
            if fired and after < fired[0] <= last:
                gaps.setdefault(fired[0], []).append(wall)
            elif not fired and place > after:
                skipped.append(NextFire(None, wall, _gap_note([wall], None, zone, policy)))
        elif len(both) == 2:  # in a fold
            for instant in fired:
                if after < instant <= last:
                    folds[instant] = (wall, both.index(instant), len(fired))
    notes = {at: _gap_note(walls, at, zone, policy) for at, walls in gaps.items()}
    for at, (wall, which, of) in folds.items():
        notes[at] = _fold_note(wall, at, which, of, zone=zone, policy=policy)
    return notes, skipped


def _gap_note(walls: list[datetime], at: datetime | None, zone: ZoneInfo, policy: DstPolicy) -> str:
    names = ", ".join(_clock(wall) for wall in walls)
    verb = "does" if len(walls) == 1 else "do"
    day = walls[0].date().isoformat()
    if at is None:
        return f"{names} {verb} not exist on {day}: not fired (dst_gap {policy.gap})"
    shifted = _clock(at.astimezone(zone).replace(tzinfo=None))
    once = "" if len(walls) == 1 else " once"
    return f"{names} {verb} not exist on {day}: fires{once} at {shifted} (dst_gap {policy.gap})"


def _fold_note(
    wall: datetime, at: datetime, which: int, of: int, *, zone: ZoneInfo, policy: DstPolicy
) -> str:
    offset = at.astimezone(zone).strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}"
    ordinal = ("first", "second")[which]
    what = f"fires at both: this is the {ordinal}" if of == 2 else f"fires at the {ordinal}"
    return (
        f"{_clock(wall)} occurs twice on {wall.date().isoformat()}: {what} ({offset}) "
        f"(dst_fold {policy.fold})"
    )


def _clock(wall: datetime) -> str:
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")
