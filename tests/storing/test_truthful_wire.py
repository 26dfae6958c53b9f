"""What schema version 6 adds, over the bus: a run's trigger, real start and log lines go in
through the typed client and come back as the store's own records; a bad one is refused naming
its field; a history page leaves the log lines to ``store.execution.get``."""

from __future__ import annotations

import pytest

from actors.storing.client import StoreClient
from store import ExecutionOutcome, InvalidValue, LogLine, NewExecution, TaskSpec
from tests.store.conftest import at
from tests.storing.test_actor import Served

SPEC = TaskSpec(task_id="user.x", task_class="tasks.reminders:Reminder", schedule="@hourly")


async def test_trigger_real_start_and_log_lines_round_trip(
    served: Served, store: StoreClient
) -> None:
    await store.put_task(SPEC, expected_version=0)
    (fired,) = await store.record_fires(
        [NewExecution(task_id="user.x", scheduled_at=at(60), started_at=at(60), trigger="retry")]
    )
    lines = (LogLine(at=at(62), level="INFO", message="step 1 of 2 ✓"),)
    outcome = ExecutionOutcome(
        completed_at=at(63), success=True, run_started_at=at(61.5), logs=lines
    )
    assert await store.finish_executions([(fired.execution_id, outcome)]) == [False]
    record = await store.get_execution(fired.execution_id)
    assert record == await served.actor.store.get_execution(fired.execution_id)
    assert (record.trigger, record.run_started_at, record.duration_seconds) == (
        "retry",
        at(61.5),
        1.5,
    )
    assert record.logs == lines
    (listed,) = (await store.history("user.x")).items
    assert (listed.execution_id, listed.trigger, listed.logs) == (fired.execution_id, "retry", ())

    manual = await store.record_execution(
        NewExecution(task_id="user.x", scheduled_at=at(70), started_at=at(70), trigger="trigger")
    )
    assert manual.record.trigger == "trigger"
    finished = await store.finish_execution(
        manual.record.execution_id, ExecutionOutcome(completed_at=at(71), success=False)
    )
    assert (finished.record.run_started_at, finished.record.duration_seconds) == (None, 1.0)


async def test_a_bad_trigger_or_log_line_is_refused_naming_it(
    served: Served, store: StoreClient
) -> None:
    await store.put_task(SPEC, expected_version=0)
    refused = await served.refused(
        "store.execution.record",
        task_id="user.x",
        scheduled_at=at(1).isoformat(),
        started_at=at(1).isoformat(),
        trigger="whim",
    )
    assert refused.code == "invalid"
    assert refused.reason.startswith("trigger: ")
    recorded = await store.record_execution(
        NewExecution(task_id="user.x", scheduled_at=at(2), started_at=at(2))
    )
    refused = await served.refused(
        "store.execution.finish",
        execution_id=recorded.record.execution_id,
        completed_at=at(3).isoformat(),
        success=True,
        logs=[{"at": at(3).isoformat(), "level": "INFO"}],
    )
    assert (refused.code, refused.reason) == ("invalid", "logs[0].message: is required")
    refused = await served.refused(
        "store.execution.finish",
        execution_id=recorded.record.execution_id,
        completed_at=at(3).isoformat(),
        success=True,
        run_started_at=at(4).isoformat(),
    )
    assert (refused.code, refused.reason) == ("invalid", "run_started_at: is after completed_at")
    with pytest.raises(InvalidValue, match="run_started_at"):
        ExecutionOutcome(completed_at=at(3), success=True, run_started_at=at(4))
