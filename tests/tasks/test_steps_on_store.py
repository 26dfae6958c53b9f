"""Steps on a real system (broker, scheduler, executor, encrypted store): a run retried by its
task's retry policy finds the steps its first attempt stored and does not run them again;
concurrent steps are found by id in any order; a changed code path fails the run with the names
of the recorded steps it no longer asks for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store import run_key
from tests.bus.waits import eventually
from tests.tasks import step_tasks
from tests.tasks.rig import Rig, Start
from tests.tasks.step_tasks import CALLS, Changing, Pages, ThreeSteps

RETRY_ONCE = {"max_attempts": 2, "base_delay_s": 0.0, "max_delay_s": 0.0}


async def retried(rig: Rig, task_id: str, cls: type) -> dict[str, Any]:
    """Create and trigger a task whose first attempt fails; the execution of its retry, once
    finished."""
    await rig.create(task_id, cls, retry_policy=RETRY_ONCE)
    first = await rig.finished(await rig.trigger(task_id))
    assert first["success"] is False

    async def retry_done() -> dict[str, Any] | None:
        executions = (await rig.ask("store.execution.history", task_id=task_id))["executions"]
        done = [e for e in executions if e["retry_count"] == 1 and e["success"] is not None]
        return done[0] if done else None

    await eventually(retry_done, f"the retry of {task_id}", 10)
    found = await retry_done()
    assert found is not None
    return found


async def test_a_retried_run_does_not_run_its_finished_steps_again(start: Start) -> None:
    step_tasks.reset()
    rig = await start(classes=(ThreeSteps,))
    retry = await retried(rig, "user.three", ThreeSteps)
    assert retry["success"] is True, retry["error_message"]
    assert retry["result"] == {"total": 6, "stored": "stored"}
    assert step_tasks.ATTEMPTS["three"] == 2
    assert dict(CALLS) == {"collect": 1, "summarise": 1, "store": 2}
    key = run_key("user.three", datetime.fromisoformat(retry["scheduled_at"]))
    steps = (await rig.ask("store.step.list", run_key=key))["steps"]
    assert [(s["name"], s["status"], s["result"]) for s in steps] == [
        ("collect", "ok", [1, 2, 3]),
        ("summarise", "ok", 6),
        ("store", "ok", "stored"),
    ]


async def test_concurrent_steps_survive_a_retry_in_another_order(start: Start) -> None:
    step_tasks.reset()
    rig = await start(classes=(Pages,))
    retry = await retried(rig, "user.pages", Pages)
    assert retry["success"] is True, retry["error_message"]
    assert retry["result"] == {"pages": {"2": 20, "1": 10, "0": 0}}
    assert dict(CALLS) == {"page[0]": 1, "page[1]": 2, "page[2]": 1}


async def test_a_recorded_step_the_code_no_longer_asks_for_fails_the_run(start: Start) -> None:
    step_tasks.reset()
    rig = await start(classes=(Changing,))
    retry = await retried(rig, "user.changing", Changing)
    assert retry["success"] is False
    assert retry["error_message"].startswith("StepsChanged: ")
    assert "never asked for: 'b'" in retry["error_message"]
    assert dict(CALLS) == {"a": 1, "b": 1, "c": 1}
