"""``scheduler.run.get`` on a real system (broker, scheduler, executor, encrypted store): a run
is read back with its logs and its fire's steps in the order they were stored, without their
results; only its task's owner and the admins may read it; an unknown run is ``not_found`` and
a malformed id ``invalid``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bus import BusClient, RemoteError
from tests.bus.waits import eventually
from tests.tasks import step_tasks
from tests.tasks.rig import Rig, Start
from tests.tasks.step_tasks import ThreeSteps

RETRY_ONCE = {"max_attempts": 2, "base_delay_s": 0.0, "max_delay_s": 0.0}
STEP_FIELDS = {"name", "status", "attempts", "started_at", "finished_at", "size", "error"}
OWNER = "alice"  # not an admin: the owner of the task read here


async def _ask(client: BusClient, topic: str, **payload: Any) -> dict[str, Any]:
    return dict((await client.ask(topic, payload, timeout=10)).payload)


async def _stepped_run(rig: Rig) -> tuple[BusClient, str, dict[str, Any]]:
    """A task of OWNER's in three steps whose first attempt fails at its third step and whose
    retry succeeds: OWNER's client, the first attempt's id, and the retry once finished."""
    step_tasks.reset()
    owner = await rig.system.client(OWNER)
    await _ask(
        owner,
        "scheduler.task.create",
        task_id="user.three",
        task_class=ThreeSteps.key(),
        schedule="@yearly",
        retry_policy=RETRY_ONCE,
    )
    first = str((await _ask(owner, "scheduler.task.trigger", task_id="user.three"))["execution_id"])

    async def retry_done() -> dict[str, Any] | None:
        executions = (await rig.ask("store.execution.history", task_id="user.three"))["executions"]
        done = [e for e in executions if e["retry_count"] == 1 and e["success"] is not None]
        return done[0] if done else None

    await eventually(retry_done, "the retry of user.three", 10)
    retry = await retry_done()
    assert retry is not None
    assert retry["success"] is True, retry
    return owner, first, retry


async def test_a_run_is_read_with_its_steps_in_the_order_they_were_stored(start: Start) -> None:
    rig = await start(classes=(ThreeSteps,))
    owner, first, retry = await _stepped_run(rig)

    reply = await _ask(owner, "scheduler.run.get", execution_id=retry["execution_id"])
    assert set(reply) == {"run", "steps"}
    run = reply["run"]
    assert (run["execution_id"], run["task_id"], run["success"]) == (
        retry["execution_id"],
        "user.three",
        True,
    )
    assert run["result"] == {"total": 6, "stored": "stored"}
    assert "logs" in run
    steps = reply["steps"]
    assert [(s["name"], s["status"], s["attempts"]) for s in steps] == [
        ("collect", "ok", 1),
        ("summarise", "ok", 1),
        ("store", "ok", 1),
    ]
    for step in steps:  # the results stay in the store: they may be large
        assert set(step) == STEP_FIELDS
        assert step["size"] > 0
        assert step["error"] is None
        assert step["started_at"] <= step["finished_at"]

    # the failed first attempt is of the same fire: the steps it stored, and the one its retry
    # added, are the fire's
    earlier = await _ask(owner, "scheduler.run.get", execution_id=first)
    assert earlier["run"]["success"] is False
    assert [s["name"] for s in earlier["steps"]] == ["collect", "summarise", "store"]
    # an admin reads anyone's run
    assert (await rig.ask("scheduler.run.get", execution_id=first))["run"]["task_id"] == (
        "user.three"
    )


async def test_another_identity_may_not_read_a_run(start: Start) -> None:
    rig = await start(classes=(ThreeSteps,))
    _, first, _ = await _stepped_run(rig)
    mallory = await rig.system.client("mallory")  # neither the owner nor an admin
    with pytest.raises(RemoteError) as caught:
        await mallory.ask("scheduler.run.get", {"execution_id": first}, timeout=10)
    refused = caught.value
    assert refused.code == "denied"
    assert "'mallory' may not read task 'user.three'" in refused.reason


async def test_an_unknown_or_malformed_run_is_refused_precisely(start: Start) -> None:
    rig = await start()
    unknown = str(uuid.uuid4())
    missing = await rig.refused("scheduler.run.get", execution_id=unknown)
    assert (missing.code, missing.reason) == ("not_found", f"run {unknown!r} not found")
    for bad in ({"execution_id": "not-a-uuid"}, {"execution_id": 7}, {}):
        refused = await rig.refused("scheduler.run.get", **bad)
        assert refused.code == "invalid", (bad, refused)
    extra = await rig.refused("scheduler.run.get", execution_id=unknown, task_id="user.x")
    assert extra.code == "invalid"
