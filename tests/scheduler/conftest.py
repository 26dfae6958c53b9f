"""Fixtures of the scheduler actor tests: an embedded system with the store and scheduler actors
on a real encrypted database, a caller and a test executor for the ``user`` category."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.storing import StoreActor
from bus import KeysDirectory
from config import BusSettings
from config.actors import ActorSettings
from config.sections import SchedulerSettings
from scheduler import FakeClock
from store import LibsqlStore
from tests.conftest import OPEN_ACL
from tests.scheduler.rig import Caller, RecordingExecutor, Rig, Scheduling, StoreClock, utc_now


@pytest.fixture
def scheduler_settings() -> SchedulerSettings:
    return SchedulerSettings(lease_ttl_s=2.0, default_retry_delay_s=0.05)


@asynccontextmanager
async def store_system(
    keys: KeysDirectory,
    tmp_path: Path,
    clock: Callable[[], datetime] = utc_now,
    **actor_settings: Any,
) -> AsyncIterator[ActorSystem]:
    """Broker and store actor on ``clock`` (fast restarts; ``actor_settings`` override
    ActorSettings)."""
    system = await ActorSystem.embedded(
        settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=2.0, **actor_settings),
        bus_settings=BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL),
        keys=keys,
        name="scheduling",
    )
    store = LibsqlStore(tmp_path / "data" / "taskbus.db", environ={})
    await system.spawn(lambda: StoreActor(store, clock=clock))
    yield system
    await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


@pytest.fixture
def store_clock() -> StoreClock:
    return StoreClock()


@pytest.fixture
async def system(
    keys: KeysDirectory, tmp_path: Path, store_clock: StoreClock
) -> AsyncIterator[ActorSystem]:
    """Broker and store actor; the scheduler is spawned by ``start_scheduler``."""
    async with store_system(keys, tmp_path, store_clock) as system:
        yield system


@pytest.fixture
def start_scheduler(system: ActorSystem, scheduler_settings: SchedulerSettings) -> Scheduling:
    """``await start_scheduler(name=...)``: a scheduler, its first instance returned once it
    leads (``lead=False``: as soon as it started, on standby or leading)."""
    return Scheduling(system, scheduler_settings)


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
    """A day ago, on a whole minute."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return FakeClock(now - timedelta(days=1))


@pytest.fixture
def rig(
    start_scheduler: Scheduling,
    caller: Caller,
    executor: RecordingExecutor,
    clock: FakeClock,
    store_clock: StoreClock,
) -> Rig:
    """Schedulers, the store and the executor on one fake clock."""
    store_clock.read = clock.wall
    executor.clock = clock
    return Rig(start_scheduler, caller, executor, start_scheduler.system, clock)
