"""What made each run is stored with it: the schedule, a manual trigger, a retry, or a catch-up
(a fire later than its misfire grace, run after a gap in leadership). On the fake clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.scheduler.rig import Rig, stop_cleanly


async def runs(rig: Rig, task_id: str) -> list[dict[str, Any]]:
    page = await rig.caller.ask("store.execution.history", task_id=task_id, limit=100)
    return list(page["executions"])


async def test_schedule_trigger_and_catch_up_are_told_apart(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    start = rig.clock.wall()
    await rig.caller.ask(
        "scheduler.task.create",
        task_id="user.tick",
        task_class="ticks:Tick",
        schedule="every 10s",
        misfire_policy={"mode": "catch_up", "grace_s": 5},
    )
    await rig.advance(10)
    await rig.executor.until(1)
    await rig.advance(1)  # a trigger's instant is now: not the fire's, which has its own key
    manual = await rig.caller.ask("scheduler.task.trigger", task_id="user.tick")
    await rig.executor.until(2)
    await stop_cleanly(rig.system, "scheduler-1")
    await rig.advance(30)  # fires at +20s, +30s and +40s pass while nobody leads
    await rig.leads("scheduler-2")
    await rig.executor.until(5)
    stored = await runs(rig, "user.tick")
    by_id = {run["execution_id"]: run["trigger"] for run in stored}
    assert by_id[manual["execution_id"]] == "trigger"
    by_instant = {run["scheduled_at"]: run["trigger"] for run in stored}
    assert by_instant[(start + timedelta(seconds=10)).isoformat()] == "schedule"
    late = (start + timedelta(seconds=20)).isoformat()
    assert by_instant[late] == "catch-up"  # 20 s late, past its 5 s grace
    status = await rig.caller.ask("scheduler.task.status", task_id="user.tick")
    assert status["status"]["last_run"] is not None
