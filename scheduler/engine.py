"""The scheduler's timing core, without I/O: which fires are due, and how long to sleep.

The driver (the scheduler actor) runs this loop::

    while running:
        now = clock.wall()
        for plan in engine.tick(now):       # due fires, misfires already applied
            dispatch plan.runs, record plan.missed
        apply queued task changes with engine.put(..., now) / engine.remove(...)
        wait for a change or engine.sleep_s(now) seconds, measured on clock.monotonic()

Clock jumps are handled here, not in the driver:

- Instants are wall instants in UTC. Sleeps are measured on the monotonic clock and capped at
  ``max_sleep_s``, so a wall clock that jumps forward while the driver sleeps is noticed within
  ``max_sleep_s``, and one that jumps backward is re-read on the next wake.
- Each task remembers its last fire: the latest instant that was run, skipped or coalesced. A task
  is never scheduled at or before it, whatever the wall clock says, so a backward jump cannot fire
  an instant twice; the next fire waits until the wall clock reaches it again.
- A tick plans *every* fire of a task between its previous tick and ``now`` through its misfire
  policy, so fires passed over by a forward jump (or downtime) are run, coalesced or skipped with a
  record, never fired as a silent burst and never lost without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from config.bus import require_float, require_int
from scheduler._instants import FAR_FUTURE, utc
from scheduler.errors import ScheduleError
from scheduler.misfire import FireTimes, MisfirePlan, MisfirePolicy, plan_window
from scheduler.timing import FireQueue


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """What one tick decided for one task."""

    task_id: str
    plan: MisfirePlan


@dataclass(slots=True)
class _Task:
    fires: FireTimes
    policy: MisfirePolicy
    after: datetime  # the queued fire is the first one after this instant


class TimingEngine:
    """Tasks, their next fires in a ``FireQueue`` and their last fires; ``now`` is always passed."""

    def __init__(self, *, max_sleep_s: float = 60.0, max_listed: int = 10_000) -> None:
        require_float("timing.max_sleep_s", max_sleep_s, 0.001, 86_400.0)
        require_int("timing.max_listed", max_listed, 1, 10_000_000)
        self._max_sleep_s = max_sleep_s
        self._max_listed = max_listed
        self._queue = FireQueue()
        self._tasks: dict[str, _Task] = {}
        self._last: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def put(
        self,
        task_id: str,
        fires: FireTimes,
        policy: MisfirePolicy,
        now: datetime,
        *,
        last_fired: datetime | None = None,
    ) -> datetime | None:
        """Add or change a task; returns its next fire (None: the schedule has no more fires).

        A new or changed task fires next after ``now``: the change creates no missed fires. With
        ``last_fired`` (restored from the store at start) the fires after it that are already due
        are planned by the next tick, so downtime goes through the misfire policy. Never before the
        task's last fire. Call ``tick(now)`` first: a fire due at ``now`` and not yet ticked is
        replaced.
        """
        now = utc("now", now)
        if last_fired is not None:
            self._mark(task_id, utc("last_fired", last_fired))
            after = self._last[task_id]
        else:
            after = max(now, self._last.get(task_id, now))
        self._tasks[task_id] = _Task(fires, policy, after)
        return self._queue_next(task_id)

    def remove(self, task_id: str) -> bool:
        """Forget a task and its pending fire (its last fire is kept, should it come back)."""
        self._queue.remove(task_id)
        return self._tasks.pop(task_id, None) is not None

    def forget(self, task_id: str) -> bool:
        """Remove a task and its last fire (a reset): put back, it fires next after ``now``."""
        self._last.pop(task_id, None)
        return self.remove(task_id)

    def upcoming(self, task_id: str, fires: FireTimes, *, last_fired: datetime) -> datetime | None:
        """The fire ``put(task_id, fires, ..., last_fired=last_fired)`` would queue, without
        putting anything: the first instant after ``last_fired`` and after the task's last fire.
        A caller that stores a task's next run with its definition asks this before the write.
        """
        after = utc("last_fired", last_fired)
        previous = self._last.get(task_id)
        return _first_after(fires, after if previous is None else max(previous, after))

    def next_fire(self, task_id: str) -> datetime | None:
        """The task's pending fire (None: not scheduled, or its schedule has no more fires)."""
        return self._queue.due_of(task_id)

    def last_fired(self, task_id: str) -> datetime | None:
        """The latest instant of ``task_id`` that was run, skipped or coalesced."""
        return self._last.get(task_id)

    def next_due(self) -> tuple[str, datetime] | None:
        """The first pending fire, as (task id, instant)."""
        return self._queue.next_due()

    def sleep_s(self, now: datetime) -> float | None:
        """Seconds to sleep on the monotonic clock: until the next fire, at most ``max_sleep_s``.

        None when no fire is pending: sleep until a task is put.
        """
        delay = self._queue.delay_until_next(now)
        return None if delay is None else min(delay, self._max_sleep_s)

    def tick(self, now: datetime, *, ahead_s: float = 0.0) -> list[TaskPlan]:
        """Plan every task with a fire due at or before ``now`` (or ``ahead_s`` after it: planned
        ahead, on time, with a negative ``late_s``) and schedule its next fire."""
        now = utc("now", now)
        through = now + timedelta(seconds=ahead_s) if ahead_s > 0 else now
        plans: list[TaskPlan] = []
        for task_id, _ in self._queue.pop_due(through):
            task = self._tasks[task_id]
            start = max(task.after, self._last.get(task_id, task.after))
            plan = plan_window(
                task.fires,
                start,
                now,
                task.policy,
                max_listed=max(self._max_listed, task.policy.catch_up_limit),
                through=through,
            )
            if plan.through is not None:
                self._mark(task_id, plan.through)
                plans.append(TaskPlan(task_id, plan))
            task.after = max(through, self._last.get(task_id, through))
            self._queue_next(task_id)
        return plans

    def _mark(self, task_id: str, instant: datetime) -> None:
        previous = self._last.get(task_id)
        self._last[task_id] = instant if previous is None else max(previous, instant)

    def _queue_next(self, task_id: str) -> datetime | None:
        task = self._tasks[task_id]
        instant = _first_after(task.fires, task.after)
        if instant is None:
            self._queue.remove(task_id)
            return None
        self._queue.schedule(task_id, instant)
        return instant


def _first_after(fires: FireTimes, after: datetime) -> datetime | None:
    upcoming = fires.fires_between(after, FAR_FUTURE, 1)
    if not upcoming:
        return None
    instant = utc("fire instant", upcoming[0])
    if instant <= after:
        raise ScheduleError(
            f"fires_between({after.isoformat()}, ...) returned {instant.isoformat()}, "
            "not after the start"
        )
    return instant
