"""Child runs and queries from the scheduler's side, on a real bus, a real store actor over a real
encrypted file and the schedulers' fake clock (the test executor runs dispatches as executors
settle them): a spawn creates one child run (the same key again is a duplicate), a child's end
reaches its parent's inbox as ``child:<key>`` and wakes a parent waiting for it, a parent's
cancel cancels its ``cancel`` children and not its ``abandon`` ones, the run tree, a query is
answered live by the executor holding the run or from the answers it stored; only executors may
spawn, and bad input is refused precisely, storing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling import RESULT_QUEUE, Dispatch, RunResult
from actors.scheduling.children import child_task_id
from actors.scheduling.protocol import RunPush
from bus import BusClient, RemoteError
from store.records import RunSuspension, run_key
from tests.actors import test_run_control as control
from tests.actors.test_run_control import TASK, DurableExecutor, settled, stored_run
from tests.bus.waits import eventually
from tests.scheduler.rig import Rig

# the fixtures of the run control tests
system, caller, clock, executor, rig, store_clock = (
    control.system,
    control.caller,
    control.clock,
    control.executor,
    control.rig,
    control.store_clock,
)
CLASS = "reports:Daily"  # announced by the test executor for category "user"


@dataclass(frozen=True)
class Step:
    """How a test attempt ends: suspended (a sleep of ``wake_in_s``, or a wait for ``waiting``),
    with ``answers`` stored; else succeeds with ``result``."""

    wake_in_s: float | None = None
    waiting: str | None = None
    answers: dict[str, Any] | None = None
    result: dict[str, Any] = field(default_factory=lambda: {"ok": 1})

    @property
    def suspends(self) -> bool:
        return self.wake_in_s is not None or self.waiting is not None


Plan = Callable[[Dispatch], Step]


@dataclass
class ChildExecutor(DurableExecutor):
    steps: Plan = lambda dispatch: Step()

    async def _run(self, delivery: Any) -> None:
        dispatch = Dispatch.read(delivery.envelope.payload)
        step = self.steps(dispatch)
        now = self.clock.wall()
        result = RunResult(
            execution_id=dispatch.execution_id,
            task_id=dispatch.task_id,
            scheduled_at=dispatch.scheduled_at,
            attempt=dispatch.attempt,
            success=True,
            completed_at=now,
            wakes=dispatch.wakes,
        )
        assert self.store is not None
        key = run_key(dispatch.task_id, dispatch.scheduled_at)
        if step.suspends:
            wake_at = None if step.wake_in_s is None else now + timedelta(seconds=step.wake_in_s)
            row = await self.store.suspend_run(
                RunSuspension(
                    run_key=key,
                    task_id=dispatch.task_id,
                    scheduled_at=dispatch.scheduled_at,
                    attempt=dispatch.attempt,
                    wake_at=wake_at,
                    waiting=step.waiting,
                    at=now,
                    answers=step.answers,
                )
            )
            result = replace(
                result, suspended=True, wake_at=row.wake_at, wake_now=row.state == "running"
            )
        await self.client.ask(
            "store.execution.finish",
            {
                "execution_id": dispatch.execution_id,
                "completed_at": now.isoformat(),
                "success": True,
                "result": {"suspended": {"waiting": step.waiting}}
                if step.suspends
                else step.result,
                "error_message": None,
                "retry_count": dispatch.attempt - 1,
            },
            timeout=10,
        )
        await self.client.enqueue(RESULT_QUEUE, result.payload(), 10)
        delivery.ack()
        self.runs.append(dispatch)
        self.ran.set()


async def leading(rig: Rig, steps: Plan) -> ChildExecutor:
    """A leading scheduler that knows the executor's class, the parent task, the plan."""
    await rig.leads("scheduler")
    runner = rig.executor
    assert isinstance(runner, DurableExecutor)
    runner.__class__ = ChildExecutor
    assert isinstance(runner, ChildExecutor)
    runner.steps = steps
    announced = {"category": "user", "classes": {CLASS: {"options": {}}}}
    await runner.client.publish("scheduler.catalogue.user", announced)
    scheduler = rig.start_scheduler.made[0]
    await eventually(lambda: scheduler.catalogue.classes("user") is not None, "announced", 10)
    await rig.caller.ask("scheduler.task.create", **TASK)
    return runner


def parent_waits_for(key: str) -> Plan:
    """The parent's first attempt waits for ``child:<key>``; children and later attempts end."""

    def plan(dispatch: Dispatch) -> Step:
        if dispatch.task_id == "user.report" and dispatch.attempt == 1:
            return Step(waiting=f"child:{key}")
        return Step(result={"child": dispatch.task_id})

    return plan


async def spawn(runner: ChildExecutor, parent: str, key: str, **more: Any) -> dict[str, Any]:
    payload = {"parent_run": parent, "key": key, "task_class": CLASS} | more
    reply = await runner.client.ask("scheduler.exec.spawn", payload, timeout=10)
    return dict(reply.payload)


async def parent_run(rig: Rig, runner: ChildExecutor) -> str:
    reply = await rig.caller.ask("scheduler.task.trigger", task_id="user.report")
    await runner.until(1)
    return str(reply["run"])


async def child_signal(rig: Rig, parent: str) -> dict[str, Any]:
    async def there() -> bool:
        listed = await rig.caller.ask("store.run.signal.list", run_key=parent)
        return any(s["name"].startswith("child:") for s in listed["signals"])

    await eventually(there, "the child's end in the parent's inbox", 10)
    listed = await rig.caller.ask("store.run.signal.list", run_key=parent)
    (signal,) = [s for s in listed["signals"] if s["name"].startswith("child:")]
    assert signal["sender"] == "scheduler"
    return dict(signal)


# ------------------------------------------------------------------ spawning


async def test_a_spawn_creates_one_child_and_a_child_success_wakes_its_parent(rig: Rig) -> None:
    runner = await leading(rig, parent_waits_for("a"))
    parent = await parent_run(rig, runner)
    await settled(rig, parent, "waiting")
    first = await spawn(runner, parent, "a", config={})
    assert first["task_id"] == child_task_id("user", parent, "a")
    assert first["duplicate"] is False
    again = await spawn(runner, parent, "a")
    assert again == first | {"duplicate": True}
    child = await stored_run(rig.caller, first["run"])
    assert (child["parent_key"], child["spawn_key"], child["on_parent_cancel"]) == (
        parent,
        "a",
        "cancel",
    )
    task = (await rig.caller.ask("store.task.get", task_id=first["task_id"]))["task"]
    assert (task["enabled"], task["schedule"], task["owner"]) == (False, "@yearly", "tester")
    runs = await runner.until(3)  # parent, child, the parent woken
    assert [(d.task_id, d.attempt) for d in runs] == [
        ("user.report", 1),
        (first["task_id"], 1),
        ("user.report", 2),
    ]
    signal = await child_signal(rig, parent)
    assert signal["name"] == "child:a"
    assert signal["payload"]["state"] == "succeeded"
    assert signal["payload"]["result"]["child"] == first["task_id"]
    tree = await rig.caller.ask("scheduler.run.tree", run=parent)
    assert tree["run"]["run_key"] == parent
    assert [c["run"]["run_key"] for c in tree["children"]] == [first["run"]]
    assert tree["children"][0]["children"] == []


async def test_a_child_cancel_reaches_its_parent(rig: Rig) -> None:
    def plan(dispatch: Dispatch) -> Step:
        if dispatch.task_id == "user.report":
            return Step(waiting="child:b") if dispatch.attempt == 1 else Step()
        return Step(wake_in_s=3600)

    runner = await leading(rig, plan)
    parent = await parent_run(rig, runner)
    await settled(rig, parent, "waiting")
    child = await spawn(runner, parent, "b")
    await settled(rig, child["run"], "sleeping")
    await rig.caller.ask("scheduler.run.cancel", run=child["run"], reason="no")
    signal = await child_signal(rig, parent)
    assert (signal["name"], signal["payload"]["state"]) == ("child:b", "cancelled")
    woken = await runner.until(3)
    assert (woken[-1].task_id, woken[-1].attempt) == ("user.report", 2)


async def test_a_parent_cancel_cancels_its_cancel_children_only(rig: Rig) -> None:
    def plan(dispatch: Dispatch) -> Step:
        if dispatch.task_id == "user.report":
            return Step(waiting="child:x")
        return Step(wake_in_s=3600)

    runner = await leading(rig, plan)
    parent = await parent_run(rig, runner)
    await settled(rig, parent, "waiting")
    cancelled = await spawn(runner, parent, "x")
    abandoned = await spawn(runner, parent, "y", on_parent_cancel="abandon")
    await settled(rig, cancelled["run"], "sleeping")
    await settled(rig, abandoned["run"], "sleeping")
    await rig.caller.ask("scheduler.run.cancel", run=parent)
    assert (await stored_run(rig.caller, cancelled["run"]))["state"] == "cancelled"
    assert (await stored_run(rig.caller, abandoned["run"]))["state"] == "sleeping"
    tree = await rig.caller.ask("scheduler.run.tree", run=parent)
    states = {c["run"]["spawn_key"]: c["run"]["state"] for c in tree["children"]}
    assert states == {"x": "cancelled", "y": "sleeping"}


# ------------------------------------------------------------------ queries


async def test_a_query_is_answered_live_else_from_the_stored_answers(
    rig: Rig, system: ActorSystem
) -> None:
    def plan(dispatch: Dispatch) -> Step:
        return Step(wake_in_s=3600, answers={"progress": 0.5})

    runner = await leading(rig, plan)
    parent = await parent_run(rig, runner)
    await settled(rig, parent, "sleeping")
    # nobody answers: the stored answer once a second passed on the scheduler's clock
    scheduler = rig.start_scheduler.made[0]
    asked = asyncio.ensure_future(
        rig.caller.ask("scheduler.run.query", run=parent, name="progress")
    )
    await eventually(lambda: bool(len(scheduler._children.asks)), "the query pushed", 10)
    rig.clock.advance(1.1)
    assert await asked == {"answer": 0.5, "live": False}
    refused = asyncio.ensure_future(
        rig.caller.refused("scheduler.run.query", run=parent, name="eta")
    )
    await eventually(lambda: bool(len(scheduler._children.asks)), "the query pushed", 10)
    rig.clock.advance(1.1)
    missing = await refused
    assert (missing.code, missing.reason) == (
        "not_found",
        f"run {parent} has no stored answer to query 'eta'",
    )
    # an executor holding the run answers
    pushes = await runner.client.subscribe("scheduler.run.deliver.user")

    async def answer() -> None:
        while True:
            push = RunPush.read((await pushes.get(timeout=10)).payload)
            if push.kind == "query":
                await runner.client.ask(
                    "scheduler.exec.answer", {"query_id": push.query_id, "answer": 0.9}, timeout=10
                )
                return

    answering = asyncio.ensure_future(answer())
    live = await rig.caller.ask("scheduler.run.query", run=parent, name="progress")
    await answering
    assert live == {"answer": 0.9, "live": True}


# ------------------------------------------------------------------ refusals


async def test_only_executors_spawn_and_bad_input_stores_nothing(
    rig: Rig, system: ActorSystem
) -> None:
    runner = await leading(rig, parent_waits_for("a"))
    parent = await parent_run(rig, runner)
    await settled(rig, parent, "waiting")
    before = await rig.caller.ask("store.task.list")
    mallory: BusClient = await system.client("mallory")
    try:
        with pytest.raises(RemoteError) as refused:
            await mallory.ask(
                "scheduler.exec.spawn",
                {"parent_run": parent, "key": "a", "task_class": CLASS},
                timeout=10,
            )
        assert refused.value.code == "denied"
    finally:
        await mallory.stop()
    unknown_parent = run_key("user.report", runner.runs[0].scheduled_at + timedelta(seconds=1))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"parent_run": parent, "key": "a", "task_class": "nope:Nothing"}, "invalid"),
        ({"parent_run": parent, "key": "a", "task_class": CLASS, "config": {"x": 1}}, "invalid"),
        ({"parent_run": parent, "key": "", "task_class": CLASS}, "invalid"),
        ({"parent_run": parent, "key": 5, "task_class": CLASS}, "invalid"),
        ({"parent_run": parent, "task_class": CLASS}, "invalid"),
        ({"parent_run": parent, "key": "a", "task_class": CLASS, "extra": 1}, "invalid"),
        (
            {"parent_run": parent, "key": "a", "task_class": CLASS, "on_parent_cancel": "x"},
            "invalid",
        ),
        ({"parent_run": "not a run", "key": "a", "task_class": CLASS}, "invalid"),
        ({"parent_run": unknown_parent, "key": "a", "task_class": CLASS}, "not_found"),
    ]
    for payload, code in cases:
        with pytest.raises(RemoteError) as refused:
            await runner.client.ask("scheduler.exec.spawn", payload, timeout=10)
        assert refused.value.code == code, (payload, refused.value)
    asks: list[tuple[str, dict[str, Any]]] = [
        ("scheduler.run.tree", {"run": 3}),
        ("scheduler.run.query", {"run": parent}),
        ("scheduler.run.query", {"run": parent, "name": ""}),
    ]
    for topic, payload in asks:
        assert (await rig.caller.refused(topic, **payload)).code == "invalid"
    assert await rig.caller.ask("store.task.list") == before
    assert (await rig.caller.ask("store.run.children", parent_key=parent))["runs"] == []
