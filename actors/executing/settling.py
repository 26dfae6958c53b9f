"""Settling a run: its outcome written to the store, then its result queued for the scheduler,
then its status published, in this order; the dispatch is acknowledged only after all three, so a
run is settled at least once and its result never lost once stored.

An attempt that suspended its run (a durable sleep, a wait for a signal, a pause) first stores
the run's suspension (``store.run.suspend``), then its outcome (a success whose result says
``suspended``): an executor that dies in between leaves an unfinished execution, run again, never
a finished one whose run nobody would wake. A run that succeeded and has a row in the store's
runs is closed there (``finish_run``) before its outcome is stored, as is a cancelled one. The
answers to its class's queries (if it has any) are stored with its suspension or its end."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from actors.actor import Actor
from actors.executing.ledger import Ledger
from actors.executing.running import Attempt, Logged, failure
from actors.executing.status import StatusEvents
from actors.scheduling.protocol import Dispatch, RunResult
from config import topics
from scheduler import Clock
from store.records import MAX_LOG_LINES, ExecutionOutcome, LogLine, RunSuspension, run_key
from tasks.errors import RunCancelled, Suspended
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

    async def settle(self, dispatch: Dispatch, attempt: Attempt, *, started: datetime) -> None:
        """Store the run's suspension or end, then the outcome, queue the result, publish the
        status (in this order)."""
        completed = self._clock.wall()
        logged = () if self._logs is None else self._logs(dispatch.execution_id)
        key = run_key(dispatch.task_id, dispatch.scheduled_at)
        result, cancelled = attempt.result, attempt.cancelled
        suspended: dict[str, Any] = {}
        if attempt.suspension is not None:
            row = await self._ledger.store.suspend_run(
                _suspension(dispatch, key, attempt.suspension, completed, attempt.answers)
            )
            if row.state == "cancelled":  # cancelled as it suspended: never woken
                result, cancelled = failure(RunCancelled(row.reason or "cancelled")), True
            else:
                suspended = {"suspended": True, "wake_at": row.wake_at}
                suspended["wake_now"] = row.state == "running"
        answers = attempt.answers
        if cancelled:
            reason = result.error or "cancelled"
            await self._ledger.store.finish_run(
                key, "cancelled", reason=reason, now=completed, answers=answers
            )
        elif (attempt.durable or answers is not None) and result.success and not suspended:
            await self._ledger.store.finish_run(
                key, "succeeded", reason=None, now=completed, answers=answers
            )
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
                wakes=dispatch.wakes,
                cancelled=cancelled,
                **suspended,
            ).payload(),
            ENQUEUE_TIMEOUT_S,
        )
        await self._announce(dispatch, result, suspended, attempt.suspension, cancelled)

    async def _announce(
        self,
        dispatch: Dispatch,
        result: TaskResult,
        suspended: dict[str, Any],
        suspension: Suspended | None,
        cancelled: bool,
    ) -> None:
        fields: dict[str, Any] = {"error": result.error}
        if cancelled:
            state = "cancelled"
        elif suspended and suspension is not None:
            state = "suspended"
            wake_at = suspended["wake_at"]
            fields["wake_at"] = None if wake_at is None else wake_at.isoformat()
            fields["waiting"] = suspension.waiting
        else:
            state = "skipped" if result.skipped else "succeeded" if result.success else "failed"
            if result.data.get("timed_out"):
                state = "timed_out"
        self._counters[state] += 1
        await self._status(dispatch, state, **fields)


def _suspension(
    dispatch: Dispatch,
    key: str,
    suspension: Suspended,
    at: datetime,
    answers: dict[str, Any] | None = None,
) -> RunSuspension:
    return RunSuspension(
        run_key=key,
        task_id=dispatch.task_id,
        scheduled_at=dispatch.scheduled_at,
        attempt=dispatch.attempt,
        wake_at=suspension.wake_at,
        waiting=suspension.waiting,
        consumed=suspension.consumed,
        paused=suspension.paused,
        at=at,
        answers=answers,
    )


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
