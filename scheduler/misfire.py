"""What to do with fires that were due while taskbus was down, busy or its clock jumped forward.

Lateness is ``now - instant``. A fire late by at most ``grace_s`` is *on time*: it runs normally
under every policy. A fire late by more is *missed*, and the policy decides:

- ``skip``: missed fires do not run; each is recorded as skipped.
- ``run_once``: the missed fires collapse into one run. When a fire is also due on time, the
  missed ones are coalesced into the first on-time run (no extra run moments before it);
  otherwise into the latest missed fire, which runs. The others are recorded as coalesced.
- ``catch_up``: missed fires run one by one, oldest first, at most ``catch_up_limit`` of them:
  the latest ones. Older missed fires are recorded as beyond the limit. On-time fires do not count
  against the limit.

A run keeps its scheduled instant, which with the task id is the run's idempotency key, however
late it runs. Every fire that does not run gets a ``MissedRun`` with its reason. Everything here is
a pure function of its arguments: ``now`` is passed in, never read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from config.bus import require_float, require_int
from config.errors import ConfigError
from scheduler._instants import seconds, utc
from scheduler.errors import ScheduleError

MisfireMode = Literal["skip", "run_once", "catch_up"]
MODES: tuple[MisfireMode, ...] = ("skip", "run_once", "catch_up")
_WEEK_S = 7 * 24 * 3600.0
MAX_CATCH_UP = 10_000


class FireTimes(Protocol):
    """A schedule as the scheduler's timing needs it.

    ``fires_between(start, end, limit)`` returns the fire instants ``t`` with
    ``start < t <= end``, ascending, at most ``limit`` of them, as aware UTC datetimes. ``end`` may
    be far in the future (year 9999) when the next fire after ``start`` is asked for.
    """

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MisfirePolicy:
    """A task's misfire policy; see the module docstring for the meaning of each mode."""

    mode: MisfireMode = "run_once"
    grace_s: float = 60.0
    catch_up_limit: int = 10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("misfire.mode", self.mode, f"one of {', '.join(MODES)}")
        require_float("misfire.grace_s", self.grace_s, 0.0, _WEEK_S)
        require_int("misfire.catch_up_limit", self.catch_up_limit, 1, MAX_CATCH_UP)

    @property
    def skip_reason(self) -> str:
        return f"skipped: missed while down (grace {seconds(self.grace_s)} exceeded)"

    @property
    def limit_reason(self) -> str:
        return f"beyond catch_up_limit ({self.catch_up_limit})"


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A fire to run now; ``instant`` is its scheduled instant (the idempotency key).

    ``coalesced`` counts the missed fires folded into this run (``run_once``).
    """

    instant: datetime
    late_s: float
    coalesced: int = 0


@dataclass(frozen=True, slots=True)
class MissedRun:
    """A fire that does not run, and why: skipped, coalesced into another, or beyond the limit."""

    instant: datetime
    reason: str
    late_s: float


@dataclass(frozen=True, slots=True)
class MissedRange:
    """``count`` fires from ``first`` to ``last`` that did not run for ``reason``, recorded as one
    range because the window held more fires than ``plan_window`` lists one by one.
    """

    first: datetime
    last: datetime
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class MisfirePlan:
    """The runs to start, oldest first, and a record for every fire that does not run."""

    runs: tuple[PlannedRun, ...] = ()
    missed: tuple[MissedRun, ...] = ()
    unlisted: MissedRange | None = None

    @property
    def through(self) -> datetime | None:
        """The latest instant the plan decided about, run or not: the task's new last fire."""
        latest = [r.instant for r in self.runs] + [m.instant for m in self.missed[-1:]]
        if self.unlisted is not None:
            latest.append(self.unlisted.last)
        return max(latest, default=None)


def plan_missed(due: Iterable[datetime], now: datetime, policy: MisfirePolicy) -> MisfirePlan:
    """Plan the fires ``due`` (instants at or before ``now``, any order, duplicates merged)."""
    now = utc("now", now)
    instants = sorted({utc("due instant", t) for t in due})
    if instants and instants[-1] > now:
        raise ScheduleError(f"fire {instants[-1].isoformat()} is not due at {now.isoformat()}")
    return _plan(instants, now, policy, None)


def plan_window(
    fires: FireTimes,
    after: datetime,
    now: datetime,
    policy: MisfirePolicy,
    *,
    max_listed: int = 10_000,
    through: datetime | None = None,
) -> MisfirePlan:
    """Plan every fire of ``fires`` in ``(after, through]`` (``through``: ``now`` unless given,
    and never before it), their lateness counted from ``now``: a fire after ``now`` (planned
    ahead) is on time, its ``late_s`` negative.

    The window is read in pages of ``fires_between``. Only the latest ``max_listed`` fires (at least
    ``policy.catch_up_limit``) are planned one by one; older ones count as missed whatever their
    lateness and are recorded as one ``MissedRange`` with the reason the policy gives them.
    """
    after, now = utc("after", after), utc("now", now)
    end = now if through is None else max(now, utc("through", through))
    require_int("misfire.max_listed", max_listed, policy.catch_up_limit, 10_000_000)
    listed: deque[datetime] = deque(maxlen=max_listed)
    first_older: datetime | None = None  # the fires pushed out of `listed`: first, last, count
    last_older = after
    count = 0
    cursor = after
    while cursor < end:
        page = fires.fires_between(cursor, end, max_listed)
        for answer in page:
            instant = utc("fire instant", answer)
            if not cursor < instant <= end:
                raise ScheduleError(
                    f"fires_between({cursor.isoformat()}, {end.isoformat()}) returned "
                    f"{instant.isoformat()}, outside the window or out of order"
                )
            if len(listed) == max_listed:
                last_older = listed.popleft()
                first_older = first_older or last_older
                count += 1
            listed.append(instant)
            cursor = instant
        if len(page) < max_listed:
            break
    overflow = (first_older, last_older, count) if first_older else None
    return _plan(list(listed), now, policy, overflow)


def _plan(
    instants: list[datetime],
    now: datetime,
    policy: MisfirePolicy,
    overflow: tuple[datetime, datetime, int] | None,
) -> MisfirePlan:
    late = [(t, (now - t).total_seconds()) for t in instants]
    on_time = [(t, s) for t, s in late if s <= policy.grace_s]
    missed = [(t, s) for t, s in late if s > policy.grace_s]
    extra = overflow[2] if overflow else 0
    runs = [PlannedRun(t, s) for t, s in on_time]
    if policy.mode == "skip":
        records = [MissedRun(t, policy.skip_reason, s) for t, s in missed]
        reason = policy.skip_reason
    elif policy.mode == "run_once":
        records, reason = _coalesce(runs, missed, extra)
    else:
        split = max(0, len(missed) - policy.catch_up_limit)
        dropped, kept = missed[:split], missed[split:]
        records = [MissedRun(t, policy.limit_reason, s) for t, s in dropped]
        runs[:0] = [PlannedRun(t, s) for t, s in kept]
        reason = policy.limit_reason
    unlisted = MissedRange(overflow[0], overflow[1], overflow[2], reason) if overflow else None
    return MisfirePlan(tuple(runs), tuple(records), unlisted)


def _coalesce(
    runs: list[PlannedRun], missed: list[tuple[datetime, float]], extra: int
) -> tuple[list[MissedRun], str]:
    """Fold every missed fire (and ``extra`` unlisted older ones) into one run, in place."""
    if not missed and not extra:
        return [], ""
    if runs:
        into, others = runs[0], missed
    else:
        last, last_late = missed[-1]
        into, others = PlannedRun(last, last_late), missed[:-1]
        runs.append(into)
    reason = f"coalesced into {into.instant.isoformat()}"
    runs[0] = PlannedRun(into.instant, into.late_s, coalesced=len(others) + extra)
    return [MissedRun(t, reason, s) for t, s in others], reason
