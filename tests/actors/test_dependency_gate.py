"""Dependencies between tasks (``run_policy.depends_on``) on a real bus, a real store actor over
an encrypted file and the schedulers' fake clock: a fire of a dependent task runs only after its
dependencies' runs for the logical instant succeeded (a chain, a diamond); it is blocked, naming
the dependency, when one failed for good, or at its wait limit (which a takeover does not
restart); create, update and delete refuse what would break the graph, storing nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling import Dispatch
from bus import BusClient, RemoteError
from config.sections import SchedulerSettings
from scheduler import FakeClock
from tests.scheduler import conftest as scheduling
from tests.scheduler.rig import (
    Caller,
    RecordingExecutor,
    Rig,
    Scheduling,
    StoreClock,
    stop_cleanly,
)

# the fixtures of the scheduler actor tests; ``rig`` below keeps a longer lease (fewer steps)
system, caller, clock, executor, store_clock = (
    scheduling.system,
    scheduling.caller,
    scheduling.clock,
    scheduling.executor,
    scheduling.store_clock,
)

EVERY_MINUTE = "every 1m"
ONCE = {"max_attempts": 1}


@pytest.fixture
def rig(
    system: ActorSystem,
    caller: Caller,
    executor: RecordingExecutor,
    clock: FakeClock,
    store_clock: StoreClock,
) -> Rig:
    store_clock.read = clock.wall
    executor.clock = clock
    settings = SchedulerSettings(lease_ttl_s=30.0, default_retry_delay_s=0.05)
    return Rig(Scheduling(system, settings), caller, executor, system, clock)


class Events:
    """Every status event the caller received, kept, so that a test can wait for one whatever
    came before it."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.seen: list[dict[str, Any]] = []

    async def wait(self, state: str, task_id: str, count: int = 1) -> dict[str, Any]:
        """The ``count``th event of ``state`` about ``task_id``, waiting for it."""
        while True:
            found = self.of(state, task_id)
            if len(found) >= count:
                return found[count - 1]
            envelope = await self.caller.event("scheduler.task.status")
            self.seen.append(dict(envelope.payload))

    def of(self, state: str, task_id: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e.get("state") == state and e.get("task_id") == task_id]


async def create(rig: Rig, task_id: str, *deps: str, **fields: Any) -> dict[str, Any]:
    run_policy = dict(fields.pop("run_policy", {}))
    if deps:
        run_policy["depends_on"] = list(deps)
    reply = await rig.caller.ask(
        "scheduler.task.create",
        task_id=task_id,
        task_class="tasks.sample:Sample",
        schedule=fields.pop("schedule", EVERY_MINUTE),
        retry_policy=fields.pop("retry_policy", ONCE),
        **({"run_policy": run_policy} if run_policy else {}),
        **fields,
    )
    return dict(reply["task"])


async def history(rig: Rig, task_id: str) -> list[dict[str, Any]]:
    page = await rig.caller.ask("store.execution.history", task_id=task_id, limit=100)
    return list(page["executions"])


def order(runs: list[Dispatch]) -> list[str]:
    return [run.task_id for run in runs]


async def test_a_chain_runs_each_task_after_the_one_it_depends_on(rig: Rig) -> None:
    events = Events(rig.caller)
    await rig.leads("scheduler")
    await create(rig, "user.a")
    await create(rig, "user.b", "user.a")
    await create(rig, "user.c", "user.b")
    start = rig.clock.wall()
    await rig.advance(60)  # all three fire at one instant, recorded in one write
    runs = await rig.executor.until(3)
    assert order(runs) == ["user.a", "user.b", "user.c"]
    instant = (start + timedelta(seconds=60)).isoformat()
    assert {run.scheduled_at.isoformat() for run in runs} == {instant}
    # b and c were held: their dependency's run had not ended when they were recorded
    waiting = await events.wait("waiting", "user.c")
    assert waiting["dependencies"][0]["task_id"] == "user.b"
    assert waiting["dependencies"][0]["logical_instant"] == instant
    assert (await events.wait("waiting", "user.b"))["scheduled_at"] == instant
    for task_id in ("user.a", "user.b", "user.c"):
        (run,) = await history(rig, task_id)
        assert run["success"] is True, run


async def test_a_diamond_runs_the_join_after_both_branches(rig: Rig) -> None:
    events = Events(rig.caller)
    await rig.leads("scheduler")
    await create(rig, "user.a")
    await create(rig, "user.b", "user.a")
    await create(rig, "user.c", "user.a")
    await create(rig, "user.d", "user.b", "user.c")
    await rig.advance(60)
    runs = order(await rig.executor.until(4))
    assert runs[0] == "user.a"
    assert sorted(runs[1:3]) == ["user.b", "user.c"]
    assert runs[3] == "user.d"
    join = await events.wait("waiting", "user.d")  # held for both branches
    assert sorted(dep["task_id"] for dep in join["dependencies"]) == ["user.b", "user.c"]
    for branch in ("user.b", "user.c"):
        held = await events.wait("waiting", branch)
        assert [dep["task_id"] for dep in held["dependencies"]] == ["user.a"]
    await rig.advance(60)  # the next instant: the same again, nothing left over
    runs = order(await rig.executor.until(8))[4:]
    assert (runs[0], sorted(runs[1:3]), runs[3]) == ("user.a", ["user.b", "user.c"], "user.d")


async def test_a_failed_dependency_blocks_the_fire_naming_it_and_its_dependents(rig: Rig) -> None:
    events = Events(rig.caller)
    rig.executor.outcome = lambda d: RuntimeError("disk full") if d.task_id == "user.a" else None
    await rig.leads("scheduler")
    await create(rig, "user.a")
    await create(rig, "user.b", "user.a")
    await create(rig, "user.c", "user.b")
    start = rig.clock.wall()
    await rig.advance(60)
    blocked = await events.wait("blocked", "user.c")
    instant = (start + timedelta(seconds=60)).isoformat()
    assert order(rig.executor.runs) == ["user.a"]  # b and c never ran
    (b,) = await history(rig, "user.b")
    assert b["success"] is False
    assert b["error_message"] == (f"blocked: dependency user.a failed for {instant}: disk full")
    assert (await events.wait("blocked", "user.b"))["reason"] == b["error_message"]
    (c,) = await history(rig, "user.c")
    assert c["error_message"].startswith(f"blocked: dependency user.b failed for {instant}: ")
    assert blocked["reason"] == c["error_message"]
    assert "dependency user.a" in c["error_message"]  # why b failed, quoted


async def test_a_dependency_retried_keeps_the_fire_waiting_until_its_retry_succeeds(
    rig: Rig,
) -> None:
    events = Events(rig.caller)
    rig.executor.outcome = lambda d: (
        RuntimeError("flaky") if (d.task_id, d.attempt) == ("user.a", 1) else None
    )
    await rig.leads("scheduler")
    await create(rig, "user.a", retry_policy={"max_attempts": 2, "base_delay_s": 1.0})
    await create(rig, "user.x")
    await create(rig, "user.b", "user.a", "user.x")
    await rig.advance(60)
    # a's first attempt failed (its retry is due in a second), then x's run ended: b is
    # checked again and still waits for a's retry
    await rig.executor.until(2)
    await events.wait("retry_scheduled", "user.a")
    assert sorted(order(rig.executor.runs)) == ["user.a", "user.x"]
    await rig.advance(2)
    runs = await rig.executor.until(4)
    assert [(run.task_id, run.attempt) for run in runs][2:] == [("user.a", 2), ("user.b", 1)]
    assert events.of("blocked", "user.b") == []


async def test_a_trigger_waits_for_the_dependency_run_at_its_latest_instant(rig: Rig) -> None:
    events = Events(rig.caller)
    await rig.leads("scheduler")
    await create(rig, "user.a", enabled=False)  # runs only when triggered
    await create(rig, "user.b", "user.a", schedule="0 0 1 1 *")  # b likewise
    await rig.advance(60)  # now is on a's schedule: a's latest instant is now
    instant = rig.clock.wall().isoformat()
    b = await rig.caller.ask("scheduler.task.trigger", task_id="user.b")
    held = await events.wait("waiting", "user.b")
    assert (held["execution_id"], held["scheduled_at"]) == (b["execution_id"], instant)
    assert held["dependencies"][0]["logical_instant"] == instant
    assert rig.executor.runs == []
    a = await rig.caller.ask("scheduler.task.trigger", task_id="user.a")  # a's run for now
    runs = await rig.executor.until(2)
    assert [run.execution_id for run in runs] == [a["execution_id"], b["execution_id"]]


async def test_the_wait_limit_blocks_and_a_takeover_does_not_restart_it(rig: Rig) -> None:
    events = Events(rig.caller)
    await rig.leads("scheduler-1")
    await create(rig, "user.a", enabled=False)  # never runs: b waits in vain
    await create(rig, "user.b", "user.a", run_policy={"depends_wait_s": 100})
    start = rig.clock.wall()
    await rig.advance(60)
    held = await events.wait("waiting", "user.b")
    recorded = start + timedelta(seconds=60)
    assert datetime.fromisoformat(held["until"]) == recorded + timedelta(seconds=100)
    await stop_cleanly(rig.system, "scheduler-1")
    await rig.advance(40)  # 40 s of the 100 pass while nobody leads
    await rig.leads("scheduler-2")
    await rig.advance(10)
    again = await events.wait("waiting", "user.b", count=2)  # held again by the new leader
    assert (again["execution_id"], again["until"]) == (held["execution_id"], held["until"])
    assert events.of("blocked", "user.b") == []
    await rig.advance(55)  # 165 s after the fire: the limit (100 s) counted from its record
    blocked = await events.wait("blocked", "user.b")
    assert blocked["reason"].startswith(
        "blocked: dependency user.a had no succeeded run within the wait limit of 100s "
        f"(it has no run for {recorded.isoformat()} yet)"
    )
    assert rig.executor.runs == []


# ------------------------------------------------------------------ refusals


async def refused(caller: Caller | BusClient, topic: str, **payload: Any) -> RemoteError:
    if isinstance(caller, Caller):
        return await caller.refused(topic, **payload)
    with pytest.raises(RemoteError) as caught:
        await caller.ask(topic, payload, timeout=10)
    return caught.value


async def test_create_and_update_refuse_unknown_self_and_cycles_storing_nothing(
    rig: Rig,
) -> None:
    await rig.leads("scheduler")
    caller = rig.caller
    await create(rig, "user.a")
    await create(rig, "user.b", "user.a")
    await create(rig, "user.c", "user.b")
    base = {"task_class": "tasks.sample:Sample", "schedule": EVERY_MINUTE}
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (
            "scheduler.task.create",
            base | {"task_id": "user.x", "run_policy": {"depends_on": ["user.nope"]}},
            "invalid",
            "run_policy.depends_on: 'user.nope': no such task",
        ),
        (
            "scheduler.task.create",
            base | {"task_id": "user.x", "run_policy": {"depends_on": ["user.x"]}},
            "invalid",
            "'user.x' cannot depend on itself",
        ),
        (
            "scheduler.task.create",
            base | {"task_id": "user.x", "run_policy": {"depends_on": ["bad id"]}},
            "invalid",
            "'bad id': expected",
        ),
        (
            "scheduler.task.create",
            base | {"task_id": "user.x", "run_policy": {"depends_on": "user.a"}},
            "invalid",
            "run_policy.depends_on",
        ),
        (
            "scheduler.task.create",
            base | {"task_id": "user.x", "run_policy": {"depends_on": ["user.a", "user.a"]}},
            "invalid",
            "no task id twice",
        ),
        (
            "scheduler.task.update",
            {"task_id": "user.a", "run_policy": {"depends_on": ["user.c"]}},
            "invalid",
            "closes a cycle: user.a -> user.c -> user.b -> user.a (each depends on the next)",
        ),
        (
            "scheduler.task.update",
            {"task_id": "user.a", "run_policy": {"depends_wait_s": -1, "depends_on": []}},
            "invalid",
            "run_policy.depends_wait_s",
        ),
    ]
    for topic, payload, code, reason in cases:
        error = await refused(caller, topic, **payload)
        assert (error.code, reason in error.reason) == (code, True), (payload, error.reason)
    with pytest.raises(RemoteError):
        await caller.ask("scheduler.task.get", task_id="user.x")
    stored = await caller.ask("scheduler.task.get", task_id="user.a")
    assert stored["task"]["run_policy"] is None
    assert stored["task"]["version"] == 1
    # changing a's other fields, or b's dependencies to another acyclic set, is fine
    await caller.ask("scheduler.task.update", task_id="user.a", schedule="every 2m")
    await caller.ask(
        "scheduler.task.update", task_id="user.c", run_policy={"depends_on": ["user.a"]}
    )


async def test_delete_of_a_task_others_depend_on_is_refused_naming_them(rig: Rig) -> None:
    await rig.leads("scheduler")
    await create(rig, "user.a")
    await create(rig, "user.b", "user.a")
    await create(rig, "user.c", "user.a", enabled=False)  # disabled ones count too
    error = await rig.caller.refused("scheduler.task.delete", task_id="user.a")
    assert error.code == "conflict"
    assert "user.b, user.c depend on it" in error.reason
    await rig.caller.ask("scheduler.task.get", task_id="user.a")  # still there
    await rig.caller.ask("scheduler.task.delete", task_id="user.b")
    await rig.caller.ask("scheduler.task.delete", task_id="user.c")
    await rig.caller.ask("scheduler.task.delete", task_id="user.a")


async def test_another_identity_cannot_depend_on_a_task_it_may_not_manage(
    rig: Rig, system: ActorSystem
) -> None:
    await rig.leads("scheduler")
    await create(rig, "user.a")
    mallory = await system.client("mallory")
    try:
        payload = {
            "task_id": "user.m",
            "task_class": "tasks.sample:Sample",
            "schedule": EVERY_MINUTE,
            "run_policy": {"depends_on": ["user.a"]},
        }
        error = await refused(mallory, "scheduler.task.create", **payload)
        assert error.code == "denied"
        assert "'mallory' may not depend on task 'user.a'" in error.reason
        payload["run_policy"] = {}
        await mallory.ask("scheduler.task.create", payload, timeout=10)
    finally:
        await mallory.stop()
