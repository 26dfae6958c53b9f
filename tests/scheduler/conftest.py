"""Fixtures of the scheduler actor tests: an embedded system with the store and scheduler actors
on a real encrypted database, a caller and a test executor for the ``user`` category."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.scheduling import SchedulerActor
from actors.scheduling.owners import Owners
from actors.store import LibsqlStore, StoreActor
from bus import KeysDirectory
from bus.acl import Roles
from config import BusSettings
from config.actors import ActorSettings
from config.sections import SchedulerSettings
from scheduler import FakeClock
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL, TEST_ROLES
from tests.scheduler.rig import Caller, RecordingExecutor, Rig, Scheduling


@pytest.fixture
def scheduler_settings() -> SchedulerSettings:
    return SchedulerSettings(lease_ttl_s=2.0, default_retry_delay_s=0.05)


@asynccontextmanager
async def store_system(
    keys: KeysDirectory, tmp_path: Path, **actor_settings: Any
) -> AsyncIterator[ActorSystem]:
    """Broker and store actor (fast restarts; ``actor_settings`` override ActorSettings)."""
    system = await ActorSystem.embedded(
        settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=2.0, **actor_settings),
        bus_settings=BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL),
        keys=keys,
        name="scheduling",
    )
    store = LibsqlStore(tmp_path / "data" / "taskbus.db", environ={})
    await system.spawn(lambda: StoreActor(store))
    yield system
    await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


@pytest.fixture
async def system(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[ActorSystem]:
    """Broker and store actor; the scheduler is spawned by ``start_scheduler``."""
    async with store_system(keys, tmp_path) as system:
        yield system


@pytest.fixture
async def start_scheduler(system: ActorSystem, scheduler_settings: SchedulerSettings) -> Scheduling:
    """``await start_scheduler(name=...)``: a scheduler, its first instance returned once it
    leads (``lead=False``: as soon as it started, on standby or leading)."""

    async def start(
        name: str = "scheduler", *, lead: bool = True, **options: Any
    ) -> SchedulerActor:
        instances: list[SchedulerActor] = []

        def factory() -> SchedulerActor:
            options.setdefault("owners", Owners(Roles(TEST_ROLES)))
            instances.append(SchedulerActor(scheduler_settings, **options))
            return instances[-1]

        await system.spawn(factory, name=name, identity="scheduler")
        if lead:
            await eventually(
                lambda: system.status()[name]["state"] == ActorState.RUNNING, f"{name} leads", 10
            )
        return instances[0]

    return start


@pytest.fixture
async def caller(system: ActorSystem) -> AsyncIterator[Caller]:
    client = await system.client("tester")
    events = await client.subscribe("scheduler.")
    yield Caller(client, events)
    await client.stop()


@pytest.fixture
async def executor(system: ActorSystem) -> AsyncIterator[RecordingExecutor]:
    client = await system.client("executor-test")
    runner = RecordingExecutor(client, "scheduler.task.dispatch.user")
    await runner.start()
    yield runner
    await runner.stop()
    await client.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A day ago, on a whole minute (the executor stamps completions with the real clock, which
    must not be before the fake one)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return FakeClock(now - timedelta(days=1))


@pytest.fixture
def rig(
    start_scheduler: Scheduling,
    caller: Caller,
    executor: RecordingExecutor,
    system: ActorSystem,
    clock: FakeClock,
) -> Rig:
    return Rig(start_scheduler, caller, executor, system, clock)
