"""A fire held back by jitter whose task is deleted meanwhile is dropped; the scheduler keeps
leading. (Before, the deleted task still fired once when its jitter ran out.) On the fake clock:
the jitter passes when the test advances it."""

from __future__ import annotations

from datetime import datetime, timedelta

from actors import ActorState
from scheduler import jittered
from tests.bus.waits import eventually
from tests.scheduler.rig import Rig

JITTER_S = 5.0


def _held_back(instant: datetime) -> tuple[str, float]:
    """A task id whose jitter at ``instant`` is between 1.5 and 4 seconds."""
    for n in range(1000):
        task_id = f"user.jittered_{n}"
        delay = (jittered(instant, task_id, JITTER_S) - instant).total_seconds()
        if 1.5 <= delay <= 4.0:
            return task_id, delay
    raise AssertionError("no task id with a usable jitter")


async def test_a_jittered_fire_of_a_deleted_task_is_dropped(rig: Rig) -> None:
    caller, system = rig.caller, rig.system
    await rig.leads("scheduler")
    due = (rig.clock.wall() + timedelta(seconds=1)).replace(microsecond=0)
    task_id, delay = _held_back(due)
    await caller.ask(
        "scheduler.task.create",
        task_id=task_id,
        task_class="ticks:Tick",
        schedule=f"at:{due.isoformat()}",
        run_policy={"jitter_s": JITTER_S},
    )
    token = (await caller.ask("scheduler.stats"))["lease_token"]

    async def planned() -> bool:  # the fire loop saw it due and holds it for its jitter
        task = (await caller.ask("scheduler.task.get", task_id=task_id))["task"]
        return bool(task["last_run"] == due.isoformat())

    await rig.advance((due - rig.clock.wall()).total_seconds())
    await eventually(planned, "the fire planned", 10)
    await caller.ask("scheduler.task.delete", task_id=task_id)
    await rig.advance(delay + 0.5)  # the jitter runs out

    async def ended() -> bool:  # the held fire ended as not started
        history = await caller.ask("store.execution.history", task_id=task_id)
        return [e["success"] for e in history["executions"]] == [False]

    await eventually(ended, "the held fire ended", 10)
    stats = await caller.ask("scheduler.stats")
    assert stats["lease_token"] == token
    assert stats["counters"].get("fires", 0) == 0
    assert system.status()["scheduler"]["state"] == ActorState.RUNNING
    assert system.status()["scheduler"]["restarts"] == 0
    assert rig.executor.runs == []
