"""The executor actor on a real embedded system (broker, encrypted store, scheduler): timeouts,
concurrency limits, overlap, deferral by load and idleness, results stored before the dispatch
is acknowledged, and the permission check at execution."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.executing import ExecutorActor
from actors.executing.resources import Load
from actors.scheduling import SchedulerActor
from actors.store import LibsqlStore, StoreActor
from bus import BusClient, Envelope, KeysDirectory, Subscription
from config import BusSettings
from config.actors import ActorSettings
from config.sections import CategorySettings, ResourceSettings, SchedulerSettings
from tasks import TaskRegistry
from tests.actors.kit import queue_stats
from tests.bus.waits import eventually
from tests.tasks import gates
from tests.tasks.gates import Forever, Gated, IdleWork

QUIET = Load(cpu_percent=5.0, memory_percent=10.0)


@dataclass
class FixedProbe:
    load_now: Load = QUIET

    def load(self) -> Load:
        return self.load_now


@dataclass
class Rig:
    system: ActorSystem
    client: BusClient
    events: Subscription
    probe: FixedProbe
    executor: ExecutorActor

    async def ask(self, topic: str, **payload: Any) -> dict[str, Any]:
        return dict((await self.client.ask(topic, payload, timeout=10)).payload)

    async def create(self, task_id: str, cls: type, **fields: Any) -> None:
        await self.ask(
            "scheduler.task.create",
            task_id=task_id,
            task_class=cls.key(),
            schedule="@yearly",
            **fields,
        )

    async def trigger(self, task_id: str) -> str:
        return str((await self.ask("scheduler.task.trigger", task_id=task_id))["execution_id"])

    async def status(
        self, state: str, predicate: Callable[[Envelope], bool] = lambda e: True
    ) -> Envelope:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            event = await self.events.get(timeout=max(0.01, deadline - loop.time()))
            if event.payload.get("state") == state and predicate(event):
                return event

    async def finished(self, execution_id: str) -> dict[str, Any]:
        async def done() -> bool:
            reply = await self.ask("store.execution.get", execution_id=execution_id)
            return reply["execution"]["success"] is not None

        await eventually(done, f"execution {execution_id} finished", 10)
        return (await self.ask("store.execution.get", execution_id=execution_id))["execution"]


Start = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[Start]:
    systems: list[ActorSystem] = []
    gates.GATES = gates.Gates()  # a fresh set of gates per test

    async def make(concurrency: int = 2, **resources: Any) -> Rig:
        system = await ActorSystem.embedded(
            settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=1.0),
            bus_settings=BusSettings(ask_timeout_s=5.0),
            keys=keys,
            name="executing",
        )
        systems.append(system)
        store = LibsqlStore(tmp_path / "data" / "taskbus.db", environ={})
        await system.spawn(lambda: StoreActor(store))
        scheduler_settings = SchedulerSettings(lease_ttl_s=2.0, default_retry_count=0)
        await system.spawn(lambda: SchedulerActor(scheduler_settings))
        await eventually(
            lambda: system.status()["scheduler"]["state"] == ActorState.RUNNING, "leads", 10
        )
        registry = TaskRegistry()
        for cls in (Gated, Forever, IdleWork):
            registry.register(cls)
        probe = FixedProbe()
        executors: list[ExecutorActor] = []

        def factory() -> ExecutorActor:
            executors.append(
                ExecutorActor(
                    CategorySettings(name="user", concurrency=concurrency),
                    registry,
                    scheduler=scheduler_settings,
                    resources=ResourceSettings(check_interval_s=0.1, **resources),
                    probe=probe,
                )
            )
            return executors[-1]

        await system.spawn(factory, name="executor-user")
        client = await system.client("tester")
        events = await client.subscribe("scheduler.task.status")
        return Rig(system, client, events, probe, executors[0])

    yield make
    for system in systems:
        await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


def _global() -> gates.Gates:
    return gates.GATES


async def test_a_run_over_its_timeout_is_cancelled_and_recorded_as_timed_out(start: Start) -> None:
    rig = await start()
    await rig.create("user.stuck", Forever, run_policy={"timeout_s": 0.3})
    execution_id = await rig.trigger("user.stuck")
    event = await rig.status("timed_out")
    assert event.payload["execution_id"] == execution_id
    execution = await rig.finished(execution_id)
    assert execution["success"] is False
    assert execution["error_message"] == "timed out after 0.3s"
    assert execution["result"]["error_type"][0] == "TimeoutError"
    assert _global().running == set()  # the task itself was cancelled, not left running


async def test_the_category_limit_holds_under_a_burst_and_later_runs_are_deferred(
    start: Start,
) -> None:
    rig = await start(concurrency=2)
    for n in range(6):
        await rig.create(f"user.burst_{n}", Gated)
    ids = [await rig.trigger(f"user.burst_{n}") for n in range(6)]
    await _global().until(lambda: len(_global().running) == 2)

    async def four_held_back() -> bool:  # by the executor's credit, in the broker's queue
        return (await queue_stats(rig.client, "scheduler.task.dispatch.user"))["pending"] == 4

    await eventually(four_held_back, "the other four wait in the queue")
    assert len(_global().running) == 2
    _global().opened.set()
    for execution_id in ids:
        assert (await rig.finished(execution_id))["success"] is True
    assert _global().most_at_once == 2


async def test_a_second_run_of_the_same_task_waits_for_the_first(start: Start) -> None:
    rig = await start(concurrency=4)
    await rig.create("user.single", Gated)
    first = await rig.trigger("user.single")
    await _global().until(lambda: first in _global().running)
    second = await rig.trigger("user.single")
    deferred = await rig.status("deferred", lambda e: e.payload["execution_id"] == second)
    assert deferred.payload["reason"] == "the previous run of this task is still running"
    assert _global().running == {first}
    _global().opened.set()
    await rig.finished(second)
    assert _global().most_at_once == 1


async def test_starts_are_deferred_while_the_machine_is_busy_then_run(start: Start) -> None:
    rig = await start(max_cpu_percent=80.0)
    rig.probe.load_now = Load(cpu_percent=95.0, memory_percent=10.0)
    await rig.create("user.later", Gated)
    execution_id = await rig.trigger("user.later")
    deferred = await rig.status("deferred")
    assert deferred.payload["reason"] == "cpu 95% > 80%"
    assert _global().started == []
    rig.probe.load_now = Load(cpu_percent=10.0, memory_percent=10.0)
    _global().opened.set()
    assert (await rig.finished(execution_id))["success"] is True


async def test_an_idle_only_task_waits_for_idle(start: Start) -> None:
    rig = await start(idle_cpu_percent=20.0)
    rig.probe.load_now = Load(cpu_percent=50.0, memory_percent=10.0)
    await rig.create("user.dream", IdleWork)
    execution_id = await rig.trigger("user.dream")
    deferred = await rig.status("deferred")
    assert deferred.payload["reason"] == "waiting for the system to be idle"
    assert _global().started == []
    rig.probe.load_now = Load(cpu_percent=5.0, memory_percent=10.0)
    assert (await rig.finished(execution_id))["success"] is True


async def test_a_user_task_cannot_run_a_code_defined_class(start: Start) -> None:
    rig = await start()
    await rig.ask(
        "scheduler.task.create",
        task_id="user.sneaky",
        task_class="tests.tasks.gates:Gated",
        schedule="@yearly",
    )
    rig.executor.registry.register(_code_defined())
    await rig.ask(
        "scheduler.task.update",
        task_id="user.sneaky",
        task_class="tests.tasks.test_executor:Rotation",
    )
    execution_id = await rig.trigger("user.sneaky")
    execution = await rig.finished(execution_id)
    assert execution["success"] is False
    assert "that class is the code-defined task 'security.rotation'" in execution["error_message"]
    dead = await rig.ask("store.dead_letters", task_id="user.sneaky")
    assert dead["dead_letters"][0]["reason"].startswith("non-retryable")


def _code_defined() -> type:
    return Rotation


class Rotation(Forever):
    task_id = "security.rotation"
    category = "security"
    default_schedule = "@monthly"
