"""The executor tests' system (not collected): broker, encrypted store, scheduler and one
executor with an injected load probe, on real sockets and a real database file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.executing import ExecutorActor
from actors.executing.resources import Load
from actors.scheduling import SchedulerActor
from actors.scheduling.owners import Owners
from actors.storing import StoreActor
from bus import BusClient, Envelope, KeysDirectory, Subscription
from bus.acl import Roles
from config import BusSettings
from config.actors import ActorSettings
from config.sections import CategorySettings, ResourceSettings, SchedulerSettings
from store import LibsqlStore
from store.records import TaskSpec
from tasks import BaseTask, TaskRegistry
from tests.asking import Asking
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL, TEST_ROLES
from tests.tasks import gates
from tests.tasks.gates import Forever, Gated, IdleWork

QUIET = Load(cpu_percent=5.0, memory_percent=10.0)


@dataclass
class FixedProbe:
    load_now: Load = QUIET

    def load(self) -> Load:
        return self.load_now


@dataclass
class Rig(Asking):
    system: ActorSystem
    client: BusClient
    events: Subscription
    probe: FixedProbe
    executor: ExecutorActor

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

    async def make(
        concurrency: int = 2,
        category: str = "user",
        builtin: Sequence[TaskSpec] = (),
        process_pool: ProcessPoolExecutor | None = None,
        classes: Sequence[type[BaseTask]] = (),
        **resources: Any,
    ) -> Rig:
        system = await ActorSystem.embedded(
            settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=1.0),
            bus_settings=BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL),
            keys=keys,
            name="executing",
        )
        systems.append(system)
        store = LibsqlStore(
            tmp_path / "data" / "taskbus.db", key_file=tmp_path / "data" / "master.key", environ={}
        )
        await system.spawn(lambda: StoreActor(store))
        scheduler_settings = SchedulerSettings(lease_ttl_s=2.0, default_retry_count=0)
        owners = Owners(Roles(TEST_ROLES))
        await system.spawn(
            lambda: SchedulerActor(scheduler_settings, builtin=builtin, owners=owners)
        )
        await eventually(
            lambda: system.status()["scheduler"]["state"] == ActorState.RUNNING, "leads", 10
        )
        registry = TaskRegistry.with_builtins()
        for cls in (Gated, Forever, IdleWork, *classes):
            registry.register(cls)
        probe = FixedProbe()
        executors: list[ExecutorActor] = []

        def factory() -> ExecutorActor:
            executors.append(
                ExecutorActor(
                    CategorySettings(name=category, concurrency=concurrency),
                    registry,
                    scheduler=scheduler_settings,
                    resources=ResourceSettings(check_interval_s=0.1, **resources),
                    probe=probe,
                    data_dir=tmp_path / "data",
                    process_pool=process_pool,
                )
            )
            return executors[-1]

        await system.spawn(factory, name=f"executor-{category}")
        client = await system.client("tester")
        events = await client.subscribe("scheduler.task.status")
        return Rig(system, client, events, probe, executors[0])

    yield make
    for system in systems:
        await asyncio.wait_for(system.stop(deadline_s=1.0), 10)
