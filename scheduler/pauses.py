"""The fires a paused task owed while it was paused, coalesced into one range.

Pure: the schedule, the instant the task was accounted through when paused and the instant it is
unpaused are arguments.
"""

from __future__ import annotations

from datetime import datetime

from scheduler._instants import utc
from scheduler.misfire import FireTimes, MissedRange

PAGE = 10_000  # instants read from the schedule at a time


def pause_reason(note: str | None) -> str:
    """The reason recorded for the fires a pause passed over: ``paused: <note>``."""
    return "paused" if note is None else f"paused: {note}"


def passed_while_paused(
    fires: FireTimes, after: datetime, until: datetime, note: str | None
) -> MissedRange | None:
    """Every fire of ``fires`` in ``(after, until]`` as one range (first, last, count) with the
    reason ``pause_reason(note)``; None if there was none."""
    after, until = utc("after", after), utc("until", until)
    first: datetime | None = None
    last = after
    count = 0
    while last < until:
        page = fires.fires_between(last, until, PAGE)
        if not page:
            break
        first = first or page[0]
        last = page[-1]
        count += len(page)
        if len(page) < PAGE:
            break
    if first is None:
        return None
    return MissedRange(first, last, count, pause_reason(note))
