"""Dependencies between tasks, as pure logic: which run of a dependency a fire waits for, what
the store's answer about that run means for the fire, and the cycles that ``depends_on`` must
never close.

**The logical instant.** A fire of task B at instant ``t`` depends on the run of each of its
dependencies A at A's *logical instant* for ``t``: the latest instant A's schedule fires at, at or
before ``t`` (``logical_instant``). B hourly at :30 and A hourly at :00: B's 10:30 fire waits for
A's 10:00 run; B daily at 02:00 and A every 15 minutes: B waits for A's 02:00 run.

Nothing here reads a clock or the store: the caller passes what it read (``judge``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from scheduler._instants import utc
from scheduler.schedules import IntervalSchedule, OneShotSchedule, Schedule

# How far back a dependency's latest fire is looked for: a cron schedule such as "0 0 29 2 *"
# fires once in four years (eight across a century year that is not a leap year).
MAX_LOOKBACK = timedelta(days=366 * 8 + 2)
_FIRST_WINDOW = timedelta(seconds=1)
MAX_ERROR_CHARS = 200  # of a dependency's error quoted in a blocked fire's reason

State = Literal["met", "waiting", "failed"]


def logical_instant(schedule: Schedule, instant: datetime) -> datetime | None:
    """The latest fire of ``schedule`` at or before ``instant`` (UTC); None if it has none
    within ``MAX_LOOKBACK`` (a one-shot after ``instant``, a cron date years away)."""
    instant = utc("instant", instant)
    if isinstance(schedule, OneShotSchedule):
        return schedule.at if schedule.at <= instant else None
    if isinstance(schedule, IntervalSchedule):
        assert schedule.spec.interval_s is not None  # an interval schedule's spec has it
        step = timedelta(seconds=schedule.spec.interval_s)
        return schedule.anchor + ((instant - schedule.anchor) // step) * step
    # Any other schedule knows only its next fire: look back over windows doubling from one
    # second until one holds a fire, then walk forward to the last fire at or before the
    # instant. The window that first holds one is at most twice as long as the time since the
    # latest fire, so the walk takes a few steps.
    window = _FIRST_WINDOW
    while window <= MAX_LOOKBACK * 2:
        try:
            found = schedule.next_fire(instant - window)
        except OverflowError:  # before year 1
            return None
        if found is not None and found <= instant:
            while (following := schedule.next_fire(found)) is not None and following <= instant:
                found = following
            return found
        window *= 2
    return None


@dataclass(frozen=True, slots=True)
class Check:
    """What one dependency means for a fire now: ``met`` (its run for the logical instant
    succeeded), ``waiting`` (no such run yet, or it has not ended, or it failed and is retried)
    or ``failed`` (it failed for good, or there is no run to wait for); ``why`` says it in
    words, for a blocked fire's reason."""

    dependency: str
    logical: datetime | None
    state: State
    why: str


def judge(
    dependency: str,
    instant: datetime,
    logical: datetime | None,
    attempt: tuple[bool | None, str | None] | None,
    *,
    retrying: bool,
) -> Check:
    """The check of ``dependency`` for a fire at ``instant``: ``logical`` is its logical instant,
    ``attempt`` the (success, error message) of the latest attempt of its run at ``logical``
    (None: no attempt stored), ``retrying`` whether a retry of that run is pending."""
    if logical is None:
        return Check(
            dependency,
            None,
            "failed",
            f"has no fire at or before {instant.isoformat()} to wait for",
        )
    at = logical.isoformat()
    if attempt is None:
        return Check(dependency, logical, "waiting", f"has no run for {at} yet")
    success, error = attempt
    if success is True:
        return Check(dependency, logical, "met", f"succeeded for {at}")
    if success is None:
        return Check(dependency, logical, "waiting", f"is still running for {at}")
    if retrying:
        return Check(dependency, logical, "waiting", f"failed for {at} and is retried")
    text = (error or "no error message").strip()
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return Check(dependency, logical, "failed", f"failed for {at}: {text}")


def blocked_reason(check: Check, *, wait_s: float | None = None) -> str:
    """A blocked fire's error: the dependency that failed it and why; ``wait_s`` if the fire
    waited that long for it in vain."""
    if wait_s is None:
        return f"blocked: dependency {check.dependency} {check.why}"
    return (
        f"blocked: dependency {check.dependency} had no succeeded run within the wait limit "
        f"of {wait_s:g}s (it {check.why})"
    )


# ------------------------------------------------------------------ cycles


def find_cycle(
    task_id: str, depends_on: Iterable[str], graph: Mapping[str, Sequence[str]]
) -> tuple[str, ...] | None:
    """The cycle ``task_id`` would close if it depended on ``depends_on``, given the other
    tasks' dependencies (``graph``: task id -> its ``depends_on``; what ``task_id`` maps to
    there is ignored), as the path from ``task_id`` back to itself along "depends on" (the
    first found, depth first); None if it closes none."""
    seen: set[str] = {task_id}
    # depth-first, each frame the path so far and the dependencies of its last task left to try
    stack: list[tuple[tuple[str, ...], list[str]]] = [((task_id,), list(depends_on))]
    while stack:
        path, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        nxt = pending.pop(0)
        if nxt == task_id:
            return (*path, task_id)
        if nxt in seen:
            continue
        seen.add(nxt)
        stack.append(((*path, nxt), list(graph.get(nxt, ()))))
    return None


def spell_cycle(path: Sequence[str]) -> str:
    """``a -> b -> c -> a``: each task depends on the next."""
    return " -> ".join(path)


def dependents(task_id: str, graph: Mapping[str, Sequence[str]]) -> list[str]:
    """The tasks of ``graph`` that depend on ``task_id`` directly, sorted."""
    return sorted(other for other, deps in graph.items() if task_id in deps and other != task_id)
