"""The shortest interval between two fires of a schedule, for a quota of how often a task fires.

Read from the schedule itself, not by sampling fires: an interval's step; for cron, the wall-clock
times of day it fires at (its second, minute and hour fields; the day fields only choose the days)
give the gaps within a day, and the gap from a day's last time to the next day's first counts as
if the next day fired too (a cron whose days never touch is judged as strictly as one firing
daily). A one-shot ``at:`` fires once: no interval. Pure: no clock, no I/O.

DST moves wall-clock times in real time: a pair of fires on both sides of a spring-forward gap
can be closer in real time than on the wall clock, once a year, by at most the zone's shift; a
cron with one second value fires on whole minutes, so such a pair is never under 60 s apart.
"""

from __future__ import annotations

import itertools

from croniter import croniter

from config.schedules import ScheduleSpec

DAY_S = 86_400
_RANGES = ((0, 60), (0, 60), (0, 24))  # second, minute, hour


def shortest_gap_s(spec: ScheduleSpec) -> float | None:
    """The fewest seconds between two consecutive fires of ``spec``; None if it fires once."""
    if spec.interval_s is not None:
        return float(spec.interval_s)
    if spec.at is not None:
        return None
    times = sorted(
        set[int]().union(*(_times_of_day(term, spec.cron_has_seconds) for term in spec.cron_terms))
    )
    if not times:
        return None
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    gaps.append(times[0] + DAY_S - times[-1])
    return float(min(gaps))


def _times_of_day(term: str, seconds: bool) -> set[int]:
    """The seconds after midnight (wall clock) at which the croniter expression ``term`` fires
    on a day it fires."""
    expanded = croniter(term, second_at_beginning=seconds).expanded
    minute, hour = expanded[0], expanded[1]
    second = expanded[5] if seconds and len(expanded) > 5 else [0]
    values = [
        _values(field, low, high)
        for field, (low, high) in zip((second, minute, hour), _RANGES, strict=True)
    ]
    return {h * 3600 + m * 60 + s for h in values[2] for m in values[1] for s in values[0]}


def _values(field: list[int | str], low: int, high: int) -> list[int]:
    if "*" in field:
        return list(range(low, high))
    return [int(value) for value in field]
