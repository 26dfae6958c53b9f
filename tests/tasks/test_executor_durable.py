"""Durable runs on a real executor, broker and encrypted store, the executor on a FakeClock and
the test in the scheduler's place (it records the executions, queues the dispatches, reads the
results and pushes signals and controls): a sleeping run's attempt settles as suspended with its
wake instant in the store and gives its slot back; a wake dispatch replays it to its end; a
cancel reaches a running step; a signal reaches a run waiting for it without the store being
read again; a cancel that came before the run's start refuses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.executing import ExecutorActor
from actors.scheduling.protocol import Dispatch, RunPush, RunResult
from actors.storing import StoreActor
from actors.storing.client import StoreClient
from bus import BusClient, Consumer, Envelope, KeysDirectory, Subscription
from config import BusSettings, topics
from config.actors import ActorSettings
from config.sections import CategorySettings, ResourceSettings
from scheduler import FakeClock
from store import LibsqlStore, run_key
from store.records import NewExecution, NewSignal, TaskSpec
from tasks import BaseTask, TaskRegistry
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL
from tests.tasks import durable_tasks
from tests.tasks.durable_tasks import CALLS, Approval, Held, Napping
from tests.tasks.rig import FixedProbe

PUSHES = topics.RUN_DELIVER + "user"


@dataclass
class Durable:
    """The system of one test; ``clock`` is the executor's."""

    system: ActorSystem
    client: BusClient
    store: StoreClient
    events: Subscription
    results: Consumer
    executor: ExecutorActor
    clock: FakeClock

    async def task(self, task_id: str, cls: type[BaseTask], **config: Any) -> None:
        spec = TaskSpec(task_id=task_id, task_class=cls.key(), schedule="@yearly", config=config)
        await self.store.put_task(spec)

    async def dispatch(
        self,
        task_id: str,
        cls: type[BaseTask],
        scheduled_at: datetime,
        *,
        attempt: int = 1,
        wakes: int = 0,
        **config: Any,
    ) -> str:
        """Record an attempt of the fire as the scheduler would, and queue its dispatch."""
        recorded = await self.store.record_execution(
            NewExecution(
                task_id=task_id,
                scheduled_at=scheduled_at,
                started_at=self.clock.wall(),
                retry_count=attempt - 1,
                trigger="wake" if wakes else "trigger",
            )
        )
        execution_id = recorded.record.execution_id
        dispatch = Dispatch(
            execution_id=execution_id,
            task_id=task_id,
            task_class=cls.key(),
            scheduled_at=scheduled_at,
            attempt=attempt,
            timeout_s=3600.0,
            allow_overlap=False,
            config=config,
            wakes=wakes,
        )
        await self.client.enqueue(topics.DISPATCH_QUEUES + "user", dispatch.payload(), 10)
        return execution_id

    async def result(self) -> RunResult:
        delivery = await self.results.get(timeout=10)
        delivery.ack()
        return RunResult.read(delivery.envelope.payload)

    async def status(self, state: str) -> Envelope:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            event = await self.events.get(timeout=max(0.01, deadline - loop.time()))
            if event.payload.get("state") == state:
                return event

    async def push(self, key: str, kind: str, **fields: Any) -> None:
        await self.client.publish(PUSHES, RunPush(run_key=key, kind=kind, **fields).payload())


Make = Callable[..., Awaitable[Durable]]


@pytest.fixture
async def durable(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[Make]:
    systems: list[ActorSystem] = []
    durable_tasks.reset()

    async def make(**options: Any) -> Durable:
        system = await ActorSystem.embedded(
            settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=1.0),
            bus_settings=BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL),
            keys=keys,
            name="durable",
        )
        systems.append(system)
        store = LibsqlStore(
            tmp_path / "data" / "taskbus.db", key_file=tmp_path / "data" / "master.key", environ={}
        )
        await system.spawn(lambda: StoreActor(store))
        registry = TaskRegistry.with_builtins()
        for cls in (Napping, Approval, Held):
            registry.register(cls)
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        executors: list[ExecutorActor] = []

        def factory() -> ExecutorActor:
            executors.append(
                ExecutorActor(
                    CategorySettings(name="user", concurrency=2),
                    registry,
                    resources=ResourceSettings(check_interval_s=0.1),
                    probe=FixedProbe(),
                    clock=clock,
                    data_dir=tmp_path / "data",
                    **options,
                )
            )
            return executors[-1]

        client = await system.client("tester")
        results = await client.consume(topics.RESULT_QUEUE, credit=10)
        events = await client.subscribe(topics.STATUS_EVENTS)
        await system.spawn(factory, name="executor-user")
        await eventually(lambda: bool(executors), "the executor runs", 10)
        return Durable(
            system=system,
            client=client,
            store=StoreClient(client.ask, timeout_s=10.0),
            events=events,
            results=results,
            executor=executors[0],
            clock=clock,
        )

    yield make
    for system in systems:
        await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


async def test_a_sleeping_run_suspends_with_its_wake_in_the_store_and_frees_its_slot(
    durable: Make,
) -> None:
    rig = await durable()
    fire = rig.clock.wall()
    await rig.task("user.nap", Napping)
    execution_id = await rig.dispatch("user.nap", Napping, fire)
    result = await rig.result()
    wake_at = rig.clock.wall() + timedelta(hours=1)
    assert result.execution_id == execution_id
    assert (result.success, result.suspended, result.wake_now) == (True, True, False)
    assert result.wake_at == wake_at
    event = await rig.status("suspended")
    assert event.payload["wake_at"] == wake_at.isoformat()
    assert event.payload["waiting"] is None
    row = await rig.store.get_run(run_key("user.nap", fire))
    assert (row.state, row.wake_at, row.attempt, row.paused) == ("sleeping", wake_at, 1, False)
    execution = await rig.store.get_execution(execution_id)
    assert execution.success is True
    assert execution.result == {
        "suspended": {"wake_at": wake_at.isoformat(), "waiting": None, "paused": False}
    }
    assert rig.executor.running == {}  # its slot is given back
    assert dict(CALLS) == {"before": 1}


async def test_a_wake_dispatch_replays_the_run_to_its_end(durable: Make) -> None:
    rig = await durable()
    fire = rig.clock.wall()
    await rig.task("user.nap", Napping)
    await rig.dispatch("user.nap", Napping, fire, nap_s=2.0)
    assert (await rig.result()).suspended
    rig.clock.advance(2.0)  # the nap is over on the run's clock
    woken = await rig.dispatch("user.nap", Napping, fire, attempt=2, wakes=1, nap_s=2.0)
    result = await rig.result()
    assert (result.execution_id, result.success, result.suspended) == (woken, True, False)
    assert result.wakes == 1
    execution = await rig.store.get_execution(woken)
    assert execution.result == {"steps": ["before", "after"]}
    assert dict(CALLS) == {"before": 1, "after": 1}  # the kept step is not run again
    row = await rig.store.get_run(run_key("user.nap", fire))
    assert row.state == "succeeded"
    await rig.status("succeeded")


async def test_a_cancel_reaches_a_running_step(durable: Make) -> None:
    rig = await durable()
    fire = rig.clock.wall()
    key = run_key("user.held", fire)
    await rig.task("user.held", Held)
    execution_id = await rig.dispatch("user.held", Held, fire)
    await eventually(lambda: CALLS["hold"] == 1, "the run is inside its step", 10)
    await rig.store.control_run(
        key, task_id="user.held", scheduled_at=fire, action="cancel", reason="not needed"
    )
    await rig.push(key, "cancel", reason="not needed")
    result = await rig.result()
    assert (result.execution_id, result.success, result.cancelled) == (execution_id, False, True)
    assert "RunCancelled" in result.error_type
    event = await rig.status("cancelled")
    assert event.payload["execution_id"] == execution_id
    assert (await rig.store.get_run(key)).state == "cancelled"
    assert rig.executor.running == {}


async def test_a_signal_reaches_a_waiting_run_without_reading_the_store_again(
    durable: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await durable(suspend_after_s=3600.0)  # it waits in place: the clock never moves
    reads: list[str] = []
    listing = rig.executor._store.run_signals

    async def counted(key: str) -> Any:
        reads.append(key)
        return await listing(key)

    monkeypatch.setattr(rig.executor._store, "run_signals", counted)
    fire = rig.clock.wall()
    key = run_key("user.approval", fire)
    await rig.task("user.approval", Approval)
    execution_id = await rig.dispatch("user.approval", Approval, fire)
    await eventually(lambda: reads == [key] and key in rig.executor.live, "the run waits", 10)
    signal, _ = await rig.store.put_signal(
        NewSignal(run_key=key, name="approve", payload={"ok": 1}, sender="tester", sent_at=fire),
        task_id="user.approval",
        scheduled_at=fire,
    )
    await rig.push(
        key,
        "signal",
        seq=signal.seq,
        name="approve",
        value={"ok": 1},
        sender="tester",
        sent_at=signal.sent_at,
    )
    result = await rig.result()
    assert (result.execution_id, result.success, result.suspended) == (execution_id, True, False)
    assert (await rig.store.get_execution(execution_id)).result == {"approval": {"ok": 1}}
    assert reads == [key]  # read once, at the start: the signal came as a push
    assert (await rig.store.get_run(key)).state == "succeeded"


async def test_a_cancel_before_the_start_refuses_the_run(durable: Make) -> None:
    rig = await durable()
    fire = rig.clock.wall()
    key = run_key("user.held", fire)
    await rig.task("user.held", Held)
    await rig.push(key, "cancel", reason="changed my mind")
    await eventually(lambda: rig.executor.live.refused(key) is not None, "remembered", 10)
    execution_id = await rig.dispatch("user.held", Held, fire)
    result = await rig.result()
    assert (result.execution_id, result.success, result.cancelled) == (execution_id, False, True)
    assert result.error_message == "RunCancelled: run cancelled: changed my mind"
    assert CALLS["hold"] == 0  # never started
    await rig.status("cancelled")
