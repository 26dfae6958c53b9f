"""Settling a run: its outcome written to the store, then its result queued for the scheduler,
then its status published, in this order; the dispatch is acknowledged only after all three, so a
run is settled at least once and its result never lost once stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from actors.actor import Actor
from actors.executing.ledger import Ledger
from actors.executing.running import Logged
from actors.executing.status import StatusEvents
from actors.scheduling.protocol import Dispatch, RunResult
from config import topics
from scheduler import Clock
from store.records import MAX_LOG_LINES, ExecutionOutcome, LogLine
from tasks.result import TaskResult

ENQUEUE_TIMEOUT_S = 30.0  # for the broker to confirm a queued result


class Settlement:
    """Settles the runs of one executor."""

    def __init__(
        self,
        actor: Actor,
        ledger: Ledger,
        status: StatusEvents,
        *,
        clock: Clock,
        counters: Counter[str],
        logs: Callable[[str], Logged] | None = None,
    ) -> None:
        """``logs``: what a run logged, taken once by its execution id (TaskRunner.take_logs)."""
        self._logs = logs
        self._actor = actor
        self._ledger = ledger
        self._status = status
        self._clock = clock
        self._counters = counters

    async def settle(self, dispatch: Dispatch, result: TaskResult, *, started: datetime) -> None:
        """Store the outcome, queue the result, publish the status (in this order)."""
        completed = self._clock.wall()
        logged = () if self._logs is None else self._logs(dispatch.execution_id)
        outcome = outcome_of(result, started=started, completed=completed, logged=logged)
        await self._ledger.finish(dispatch.execution_id, outcome)
        await self._actor.bus.enqueue(
            topics.RESULT_QUEUE,
            RunResult(
                execution_id=dispatch.execution_id,
                task_id=dispatch.task_id,
                scheduled_at=dispatch.scheduled_at,
                attempt=dispatch.attempt,
                success=result.success,
                completed_at=completed,
                error_type=error_types(result),
                error_message=result.error or "",
            ).payload(),
            ENQUEUE_TIMEOUT_S,
        )
        state = "skipped" if result.skipped else "succeeded" if result.success else "failed"
        if result.data.get("timed_out"):
            state = "timed_out"
        self._counters[state] += 1
        await self._status(dispatch, state, error=result.error)


def outcome_of(
    result: TaskResult, *, started: datetime, completed: datetime, logged: Logged = ()
) -> ExecutionOutcome:
    """The stored outcome of a run: its data, with its error types and whether it was skipped;
    ``started`` is when the task really began (after admission), its duration from then;
    ``logged``, what it logged (the first MAX_LOG_LINES lines)."""
    names = error_types(result)
    data = dict(result.data)
    if names:
        data["error_type"] = list(names)
    if result.skipped:
        data["skipped"] = True
    return ExecutionOutcome(
        completed_at=completed,
        success=result.success,
        result=data,
        error_message=result.error,
        duration_seconds=max(0.0, (completed - started).total_seconds()),
        run_started_at=min(started, completed),
        logs=tuple(
            LogLine(at=at, level=level, message=message)
            for at, level, message in logged[:MAX_LOG_LINES]
        ),
    )


def error_types(result: TaskResult) -> tuple[str, ...]:
    """The failure's class names along its hierarchy (empty on success)."""
    if result.success:
        return ()
    names = result.data.get("error_type")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    return ("TaskFailed",)  # a TaskResult.fail() that named no error type
