"""From a local wall time to the UTC instants it fires at, under a task's DST policy.

On a spring-forward day a range of wall times does not exist (the *gap*, 02:00-03:00 in
Europe/Berlin); on a fall-back day a range occurs twice (the *fold*, 02:00-03:00 again). A cron
schedule names wall times, so each task chooses:

- ``gap``: ``"shift"`` (default) fires a nonexistent wall time once, at the first instant after the
  gap (03:00 local, the transition itself); ``"skip"`` does not fire it. Several wall times in
  one gap (``*/15`` at 02:00, 02:15...) shift to the same instant and fire once there.
- ``fold``: ``"first"`` (default) fires a repeated wall time once, at its first occurrence;
  ``"last"`` once, at its second; ``"both"`` at both, which keeps an hourly or ``*/15`` job
  running at an even pace through the repeated hour.

The defaults fire every wall time of the expression exactly once: never zero times, never twice.
Offsets come from ``zoneinfo``; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from scheduler.errors import ScheduleError

GapRule = Literal["shift", "skip"]
FoldRule = Literal["first", "last", "both"]
GAP_RULES: tuple[GapRule, ...] = ("shift", "skip")
FOLD_RULES: tuple[FoldRule, ...] = ("first", "last", "both")


@dataclass(frozen=True, slots=True, kw_only=True)
class DstPolicy:
    """What a task's cron schedule does with wall times in a DST gap or fold (module docstring)."""

    gap: GapRule = "shift"
    fold: FoldRule = "first"

    def __post_init__(self) -> None:
        if self.gap not in GAP_RULES:
            raise ScheduleError(f"DST gap rule {self.gap!r}: expected one of {GAP_RULES}")
        if self.fold not in FOLD_RULES:
            raise ScheduleError(f"DST fold rule {self.fold!r}: expected one of {FOLD_RULES}")


DEFAULT_DST_POLICY = DstPolicy()


def wall_instants(wall: datetime, zone: ZoneInfo, policy: DstPolicy) -> tuple[datetime, ...]:
    """The aware UTC instants at which the naive local ``wall`` time fires, earliest first.

    One instant for an ordinary wall time; none, one or two in a gap or fold, by ``policy``.
    """
    first, second = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    if first == second:
        return (first,)
    if _wall_of(first, zone) == wall:  # both readings exist: a fold
        return {"first": (first,), "last": (second,), "both": (first, second)}[policy.fold]
    if policy.gap == "skip":
        return ()
    return (_transition(first, second, zone),)


def _wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in ``(before, after]`` with ``after``'s offset, to the second.

    ``before`` and ``after`` are the two readings of a wall time in a gap, one on each side of the
    transition (at most a few hours apart), so a bisection over whole seconds is short.
    """
    offset = after.astimezone(zone).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)
