"""The scheduler decides retries and dead letters from the store, not from what a result says: a
result from an identity that is not an executor, for an execution the store does not know, or
at an attempt that was not dispatched is dropped and reported, and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors import ActorSystem
from actors.scheduling import RESULT_QUEUE, RunResult
from tests.scheduler.rig import Caller, RecordingExecutor, Scheduling

TASK: dict[str, Any] = {
    "task_id": "user.report",
    "task_class": "reports:Daily",
    "schedule": "0 3 * * *",
    # the first retry waits long enough that nothing but the forged results could act meanwhile
    "retry_policy": {"base_delay_s": 3600.0, "max_attempts": 3},
}


def forged(execution_id: str, scheduled_at: datetime, attempt: int) -> dict[str, Any]:
    return RunResult(
        execution_id=execution_id,
        task_id="user.report",
        scheduled_at=scheduled_at,
        attempt=attempt,
        success=False,
        completed_at=datetime.now(UTC),
        error_type=("RuntimeError", "Exception"),
        error_message="forged",
    ).payload()


async def test_forged_results_are_dropped_and_reported_and_change_nothing(
    start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor, system: ActorSystem
) -> None:
    await start_scheduler()
    executor.outcome = lambda d: RuntimeError("broke")
    await caller.ask("scheduler.task.create", **TASK)
    await caller.ask("scheduler.task.trigger", task_id="user.report")
    (run,) = await executor.until(1)
    await caller.event("scheduler.task.status", lambda e: e.payload["state"] == "retry_scheduled")

    async def dropped(sender: str, payload: dict[str, Any]) -> str:
        client = await system.client(sender)
        await client.enqueue(RESULT_QUEUE, payload, 10)
        report = await caller.event("scheduler.error", lambda e: e.payload["sender"] == sender)
        await client.stop()
        return str(report.payload["reason"])

    # attempt 99 of a real fire: a dead letter "exhausted after 99 attempts" before, now nothing
    reason = await dropped("executor-forger", forged(run.execution_id, run.scheduled_at, 99))
    assert reason == (
        f"no failed run {run.execution_id} of user.report at {run.scheduled_at.isoformat()}, "
        "attempt 99, in the store"
    )
    # an instant that never fired: a retry would have run it
    never = datetime(2026, 1, 1, 3, tzinfo=UTC)
    unknown = "0190a0a0-0000-7000-8000-000000000000"
    reason = await dropped("executor-forger", forged(unknown, never, 1))
    assert reason.startswith(f"no failed run {unknown} of user.report")
    # anyone but an executor, even for the real failure
    reason = await dropped("mallory", forged(run.execution_id, run.scheduled_at, 1))
    assert reason == "'mallory' is not an executor (bus.roles.executor): its result is dropped"

    status = await caller.ask("scheduler.task.status", task_id="user.report")
    assert status["pending_retries"] == [
        {"scheduled_at": run.scheduled_at.isoformat(), "attempt": 2}
    ]
    assert (await caller.ask("store.dead_letters", task_id="user.report"))["dead_letters"] == []
    history = await caller.ask("store.execution.history", task_id="user.report")
    assert [e["execution_id"] for e in history["executions"]] == [run.execution_id]
    assert len(executor.runs) == 1
