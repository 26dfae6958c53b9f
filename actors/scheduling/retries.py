"""Results and retries: a failed attempt is tried again by its task's retry policy, on a timer of
the scheduler's clock, or given up as a dead letter (kept in the store, published on the owner's
``scheduler.task.dead``).

A retry or a dead letter is decided from what the store holds, never from what a result says: a
result is acted on only if it names an attempt that was recorded (so dispatched) for that task,
instant and attempt, and that ended failed in the store. After a takeover, the failures no leader
settled are decided again from the store (``actors.scheduling.takeover``).

A run that suspended and was woken has attempts that were wakes, not retries (``wakes``): the
retry policy counts ``attempt - wakes``. An attempt ended because its run was cancelled is never
retried nor given up; a fire given up ends its run (``finish_run``, ``failed``) too.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from actors.scheduling import definitions
from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.events import Events
from actors.scheduling.firing import Firing
from actors.scheduling.owed import Owed
from actors.scheduling.protocol import RunResult
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from config.sections import SchedulerSettings
from scheduler import Clock, RetryDecision, Timer
from store.errors import InvalidValue, NotFound
from store.records import ExecutionRecord, NewDeadLetter, run_key
from tasks.permissions import is_child_task

RetryKey = tuple[str, datetime, int]  # task id, the fire's instant, the attempt to run
GivenUp = Callable[[str, datetime, str], Awaitable[None]]  # task id, instant, the last error


def failure_of(execution: ExecutionRecord, wakes: int = 0) -> RunResult:
    """A failed execution as the store has it, as a RunResult (its error's class names are the
    ones the executor stored in its result; ``Exception`` if it stored none); ``wakes``: how many
    of its fire's attempts before it were wakes (the run's, as the store keeps it)."""
    result = execution.result or {}
    names = result.get("error_type")
    return RunResult(
        execution_id=execution.execution_id,
        task_id=execution.task_id,
        scheduled_at=execution.scheduled_at,
        attempt=execution.retry_count + 1,
        success=False,
        completed_at=execution.completed_at or execution.started_at,
        error_type=tuple(names) if isinstance(names, list) and names else ("Exception",),
        error_message=execution.error_message or "",
        wakes=min(wakes, execution.retry_count),
    )


def tries(failure: RunResult) -> int:
    """The attempts the retry policy counts: the fire's attempts that were not wakes."""
    return max(1, failure.attempt - failure.wakes)


def dead_letter(task_id: str, failure: RunResult, decision: RetryDecision) -> NewDeadLetter:
    """The fire of ``failure`` given up on, as the store keeps it."""
    return NewDeadLetter(
        task_id=task_id,
        scheduled_at=failure.scheduled_at,
        attempts=tries(failure),
        error_type=failure.error_type[0],
        last_error=failure.error_message,
        reason=decision.reason,
        failed_at=failure.completed_at,
    )


class Retries:
    def __init__(
        self,
        *,
        store: StoreClient,
        owed: Owed,
        roster: Roster,
        firing: Firing,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        background: Background,
        log: logging.Logger,
        settings: SchedulerSettings | None = None,
    ) -> None:
        self._store = store
        self._owed = owed
        self._roster = roster
        self._firing = firing
        self._events = events
        self._counters = counters
        self._clock = clock
        self._background = background
        self._log = log
        self._settings = settings or SchedulerSettings()
        self._timers: dict[RetryKey, Timer] = {}
        self.given_up: GivenUp | None = None  # told of every fire given up (a child's parent)

    def __len__(self) -> int:
        return len(self._timers)

    def pending(self, task_id: str) -> list[tuple[datetime, int]]:
        """The task's retries waiting for their time: (the fire's instant, the attempt)."""
        return sorted(
            (instant, attempt) for (tid, instant, attempt) in self._timers if tid == task_id
        )

    def cancel(self, task_id: str) -> None:
        """Drop the task's waiting retries (it was deleted or disabled)."""
        for key in [key for key in self._timers if key[0] == task_id]:
            self._timers.pop(key).cancel()

    def cancel_run(self, task_id: str, instant: datetime) -> None:
        """Drop the waiting retry of one fire (its run was cancelled)."""
        for key in [key for key in self._timers if key[:2] == (task_id, instant)]:
            self._timers.pop(key).cancel()

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def settle(self, result: RunResult) -> str | None:
        """Act on an executor's result: a failure of a task still fired is retried or given up.
        Returns why the result is dropped (the store knows no such failed attempt), else None.
        An attempt its run's cancel ended is neither retried nor given up."""
        if result.cancelled:
            self._counters["cancelled"] += 1
            return None
        self._counters["succeeded" if result.success else "failed"] += 1
        if result.success:
            return None
        task = await self.task_of(result.task_id)
        if task is None:
            return None
        failure = await self._stored_failure(result)
        if failure is None:
            return (
                f"no failed run {result.execution_id} of {result.task_id} at "
                f"{result.scheduled_at.isoformat()}, attempt {result.attempt}, in the store"
            )
        await self.after_failure(task, failure)
        return None

    async def task_of(self, task_id: str) -> CompiledTask | None:
        """The task whose failures are retried: one still fired, or a child run's task (never
        enabled: it runs only the fire its spawn made)."""
        task = self._roster.get(task_id)
        if task is not None or not is_child_task(task_id):
            return task
        try:
            return definitions.compile_task(await self._store.get_task(task_id), self._settings)
        except (NotFound, InvalidValue):
            return None

    async def _stored_failure(self, result: RunResult) -> RunResult | None:
        """The failure as the store has it, if ``result`` names a recorded attempt of that task,
        instant and attempt that ended failed; else None."""
        try:
            execution = await self._store.get_execution(result.execution_id)
        except NotFound:
            return None
        failure = failure_of(execution)
        if (
            execution.success is not False
            or failure.task_id != result.task_id
            or failure.scheduled_at != result.scheduled_at
            or failure.attempt != result.attempt
        ):
            return None
        return replace(failure, wakes=min(result.wakes, execution.retry_count))

    async def after_failure(self, task: CompiledTask, failure: RunResult) -> None:
        """Retry the failed attempt by the task's policy, or give its fire up."""
        key = f"{task.task_id}@{failure.scheduled_at.isoformat()}"
        decision = task.policies.retry.decide(tries(failure), failure.error_type, key)
        if not decision.retry:
            await self._give_up(task, failure, decision)
            return
        attempt = failure.attempt + 1
        due = decision.retry_at(failure.completed_at)
        self._retry_at(task, failure.scheduled_at, attempt, due, failure.wakes)
        await self._events.status(
            task.record.owner,
            task.task_id,
            "retry_scheduled",
            scheduled_at=failure.scheduled_at.isoformat(),
            attempt=attempt,
            reason=decision.reason,
        )

    def _retry_at(
        self, task: CompiledTask, instant: datetime, attempt: int, due: datetime, wakes: int
    ) -> None:
        key = (task.task_id, instant, attempt)
        if key in self._timers:
            return
        delay = max(0.0, (due - self._clock.wall()).total_seconds())

        def fire() -> None:
            self._timers.pop(key, None)
            current = self._roster.get(task.task_id)
            if current is None and is_child_task(task.task_id):
                current = task
            if current is not None:
                self._background.spawn(
                    self._firing.fire(
                        current, instant, attempt=attempt, reason="retry", wakes=wakes
                    )
                )

        self._timers[key] = self._clock.call_later(delay, fire)

    async def _give_up(
        self, task: CompiledTask, failure: RunResult, decision: RetryDecision
    ) -> None:
        letter = dead_letter(task.task_id, failure, decision)
        await self._owed(
            f"writing the dead letter of {task.task_id}",
            functools.partial(self._store.add_dead_letter, letter),
        )
        self._counters["dead"] += 1
        await self._owed(
            f"ending the run of {task.task_id} given up",
            functools.partial(
                self._store.finish_run,
                run_key(task.task_id, failure.scheduled_at),
                "failed",
                reason=decision.reason,
                now=self._clock.wall(),
            ),
        )
        self._log.warning(
            "task %s fire %s given up: %s",
            task.task_id,
            letter.scheduled_at.isoformat(),
            letter.reason,
        )
        await self._events.dead(task.record.owner, letter)
        if self.given_up is not None:
            await self.given_up(task.task_id, failure.scheduled_at, failure.error_message)
