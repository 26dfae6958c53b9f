"""Durable runs from the scheduler's side, on a real bus, a real store actor over a real encrypted
file and the schedulers' fake clock: a suspended attempt's wake fires a ``wake`` attempt at its
instant (and is armed again by a new leader), signals wake a waiting run at once, cancel drops a
wake, pause holds it and resume releases it, a start key starts one run; a requester who does not
own the task is denied every ask, and bad input is refused precisely. Whatever is refused stores
nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling import RESULT_QUEUE, Dispatch, RunResult
from actors.scheduling.protocol import RunPush
from actors.storing import StoreActor
from actors.storing.client import StoreClient
from bus import BusClient, KeysDirectory, RemoteError
from config import BusSettings
from config.actors import ActorSettings
from config.sections import SchedulerSettings
from scheduler import FakeClock
from store import LibsqlStore
from store.records import RunSuspension, run_key
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL
from tests.scheduler.rig import (
    Caller,
    RecordingExecutor,
    Rig,
    Scheduling,
    StoreClock,
    stop_cleanly,
)

TASK: dict[str, Any] = {
    "task_id": "user.report",
    "task_class": "reports:Daily",
    "schedule": "0 3 * * *",  # never due during a test: runs are triggered
}


@dataclass(frozen=True)
class Suspend:
    """How a test attempt suspends its run: a sleep until ``wake_in_s`` from now, or a wait for
    the signal ``waiting`` (with an optional timeout ``wake_in_s``)."""

    wake_in_s: float | None = None
    waiting: str | None = None


Plan = Callable[[Dispatch], Suspend | None]  # None: the attempt succeeds


@dataclass
class DurableExecutor(RecordingExecutor):
    """Runs dispatches as an executor settles them: a suspension is stored (``suspend_run``)
    before the attempt is finished, and its result says when the store will have it woken."""

    plan: Plan = lambda dispatch: None
    store: StoreClient | None = None
    rows: list[Any] = field(default_factory=list)

    async def _run(self, delivery: Any) -> None:
        dispatch = Dispatch.read(delivery.envelope.payload)
        suspend = self.plan(dispatch)
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
        if suspend is not None:
            assert self.store is not None
            wake_at = (
                None if suspend.wake_in_s is None else now + timedelta(seconds=suspend.wake_in_s)
            )
            row = await self.store.suspend_run(
                RunSuspension(
                    run_key=run_key(dispatch.task_id, dispatch.scheduled_at),
                    task_id=dispatch.task_id,
                    scheduled_at=dispatch.scheduled_at,
                    attempt=dispatch.attempt,
                    wake_at=wake_at,
                    waiting=suspend.waiting,
                    at=now,
                )
            )
            self.rows.append(row)
            result = replace(
                result, suspended=True, wake_at=row.wake_at, wake_now=row.state == "running"
            )
        await self.client.ask(
            "store.execution.finish",
            {
                "execution_id": dispatch.execution_id,
                "completed_at": now.isoformat(),
                "success": True,
                "result": {"suspended": {"waiting": suspend.waiting}} if suspend else {"ok": 1},
                "error_message": None,
                "retry_count": dispatch.attempt - 1,
            },
            timeout=10,
        )
        await self.client.enqueue(RESULT_QUEUE, result.payload(), 10)
        delivery.ack()
        self.runs.append(dispatch)
        self.ran.set()


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def store_clock() -> StoreClock:
    return StoreClock()


@pytest.fixture
async def system(
    keys: KeysDirectory, tmp_path: Path, store_clock: StoreClock
) -> AsyncIterator[ActorSystem]:
    """Broker and store actor on an encrypted file, the store keeping the schedulers' time."""
    system = await ActorSystem.embedded(
        settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=2.0),
        bus_settings=BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL),
        keys=keys,
        name="runs",
    )
    store = LibsqlStore(tmp_path / "data" / "taskbus.db", environ={})
    await system.spawn(lambda: StoreActor(store, clock=store_clock))
    yield system
    await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


@pytest.fixture
async def caller(system: ActorSystem) -> AsyncIterator[Caller]:
    client = await system.client("tester")  # an admin (TEST_ROLES)
    events = await client.subscribe("scheduler.")
    yield Caller(client, events)
    await client.stop()


@pytest.fixture
def clock() -> FakeClock:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return FakeClock(now - timedelta(days=1))


@pytest.fixture
async def executor(system: ActorSystem, clock: FakeClock) -> AsyncIterator[DurableExecutor]:
    client = await system.client("executor-test")

    async def ask(topic: str, payload: Any, timeout: float | None) -> Any:
        return await client.ask(topic, payload, timeout=timeout or 10)

    runner = DurableExecutor(client, "scheduler.task.dispatch.user", clock=clock)
    runner.store = StoreClient(ask)
    await runner.start()
    yield runner
    await runner.stop()
    await client.stop()


@pytest.fixture
async def rig(
    system: ActorSystem,
    caller: Caller,
    executor: DurableExecutor,
    clock: FakeClock,
    store_clock: StoreClock,
) -> Rig:
    store_clock.read = clock.wall
    settings = SchedulerSettings(lease_ttl_s=30.0, default_retry_delay_s=0.05)
    return Rig(Scheduling(system, settings), caller, executor, system, clock)


async def started(rig: Rig, plan: Plan, **task: Any) -> tuple[Dispatch, str]:
    """A leading scheduler, the task, and its triggered first attempt (run by ``plan``)."""
    await rig.leads("scheduler")
    assert isinstance(rig.executor, DurableExecutor)
    rig.executor.plan = plan
    await rig.caller.ask("scheduler.task.create", **(TASK | task))
    reply = await rig.caller.ask("scheduler.task.trigger", task_id="user.report")
    (first,) = await rig.executor.until(1)
    assert reply["run"] == run_key(first.task_id, first.scheduled_at)
    assert reply["duplicate"] is False
    return first, reply["run"]


async def stored_run(caller: Caller, key: str) -> dict[str, Any]:
    return dict((await caller.ask("store.run.get", run_key=key))["run"])


async def executions(caller: Caller) -> list[dict[str, Any]]:
    reply = await caller.ask("store.execution.history", task_id="user.report")
    return list(reply["executions"])


async def settled(rig: Rig, key: str, state: str) -> None:
    """The run's row reached ``state`` (the scheduler acted on the last result)."""

    async def reached() -> bool:
        return bool((await stored_run(rig.caller, key))["state"] == state)

    await eventually(reached, f"run {key} {state}", 10)


def first_sleeps(seconds: float) -> Plan:
    return lambda dispatch: Suspend(wake_in_s=seconds) if dispatch.attempt == 1 else None


# ------------------------------------------------------------------ waking


async def test_a_suspended_run_wakes_at_its_instant_as_a_wake_attempt(rig: Rig) -> None:
    first, key = await started(rig, first_sleeps(10.0))
    await settled(rig, key, "sleeping")
    scheduler = rig.start_scheduler.made[0]
    await eventually(lambda: key in scheduler._sleepers, "the wake armed", 10)
    await rig.advance(9.0)
    await rig.caller.ask("scheduler.stats")  # a round trip: a due wake would have fired
    assert len(rig.executor.runs) == 1
    await rig.advance(1.5)
    _, wake = await rig.executor.until(2)
    assert (wake.scheduled_at, wake.attempt, wake.wakes) == (first.scheduled_at, 2, 1)
    assert wake.execution_id != first.execution_id
    history = await executions(rig.caller)
    assert {e["trigger"] for e in history} == {"trigger", "wake"}
    await settled(rig, key, "succeeded")  # the wake's success closed the run's row
    row = await stored_run(rig.caller, key)
    assert (row["attempt"], row["wakes"]) == (2, 1)
    assert key not in scheduler._sleepers


async def test_a_new_leader_arms_the_wakes_the_store_holds(rig: Rig) -> None:
    first, key = await started(rig, first_sleeps(10.0))
    await settled(rig, key, "sleeping")
    await stop_cleanly(rig.system, "scheduler")
    second = await rig.leads("second")
    await eventually(lambda: key in second._sleepers, "the wake armed again", 10)
    await rig.advance(11.0)
    _, wake = await rig.executor.until(2)
    assert (wake.scheduled_at, wake.attempt, wake.wakes) == (first.scheduled_at, 2, 1)


async def test_a_signal_wakes_a_run_waiting_for_it_at_once(rig: Rig) -> None:
    pushes = await rig.caller.client.subscribe("scheduler.run.deliver.")
    plan: Plan = lambda d: Suspend(waiting="approve") if d.attempt == 1 else None  # noqa: E731
    first, key = await started(rig, plan)
    await settled(rig, key, "waiting")
    reply = await rig.caller.ask(
        "scheduler.run.signal", run=first.execution_id, name="approve", payload={"ok": True}
    )
    assert reply["seq"] >= 1
    assert reply["run"]["run_key"] == key
    _, wake = await rig.executor.until(2)  # no time passed
    assert (wake.attempt, wake.wakes) == (2, 1)
    push = RunPush.read((await pushes.get(timeout=10)).payload)
    assert (push.run_key, push.kind, push.name, push.value) == (key, "signal", "approve", {"ok": 1})
    signals = await rig.caller.ask("store.run.signal.list", run_key=key)
    assert [s["name"] for s in signals["signals"]] == ["approve"]


async def test_cancel_drops_the_wake_of_a_sleeping_run(rig: Rig) -> None:
    pushes = await rig.caller.client.subscribe("scheduler.run.deliver.")
    _, key = await started(rig, first_sleeps(10.0))
    await settled(rig, key, "sleeping")
    scheduler = rig.start_scheduler.made[0]
    await eventually(lambda: key in scheduler._sleepers, "the wake armed", 10)
    reply = await rig.caller.ask("scheduler.run.cancel", run=key, reason="not wanted")
    assert (reply["run"]["state"], reply["run"]["reason"]) == ("cancelled", "not wanted")
    assert key not in scheduler._sleepers
    push = RunPush.read((await pushes.get(timeout=10)).payload)
    assert (push.kind, push.reason) == ("cancel", "not wanted")
    await rig.advance(11.0)
    await rig.caller.ask("scheduler.stats")
    assert len(rig.executor.runs) == 1
    assert len(await executions(rig.caller)) == 1
    # cancelling again is idempotent; any other control of a cancelled run conflicts
    again = await rig.caller.ask("scheduler.run.cancel", run=key)
    assert again["run"]["state"] == "cancelled"
    refused = await rig.caller.refused("scheduler.run.resume", run=key)
    assert (refused.code, refused.reason) == ("conflict", f"run {key} is cancelled")


async def test_pause_holds_a_wake_and_resume_releases_it(rig: Rig) -> None:
    first, key = await started(rig, first_sleeps(10.0))
    await settled(rig, key, "sleeping")
    paused = await rig.caller.ask("scheduler.run.pause", run=key)
    assert paused["run"]["paused"] is True
    await rig.advance(11.0)
    await rig.caller.ask("scheduler.stats")
    assert len(rig.executor.runs) == 1
    assert (await stored_run(rig.caller, key))["state"] == "sleeping"
    resumed = await rig.caller.ask("scheduler.run.resume", run=first.execution_id)
    assert resumed["run"]["paused"] is False
    _, wake = await rig.executor.until(2)
    assert (wake.attempt, wake.wakes) == (2, 1)


# ------------------------------------------------------------------ start keys


async def test_a_start_key_starts_one_run(rig: Rig) -> None:
    await rig.leads("scheduler")
    await rig.caller.ask("scheduler.task.create", **TASK)
    first = await rig.caller.ask("scheduler.task.trigger", task_id="user.report", key="order-7")
    await rig.executor.until(1)
    rig.clock.advance(1.0)
    again = await rig.caller.ask("scheduler.task.trigger", task_id="user.report", key="order-7")
    assert first["duplicate"] is False
    assert again == first | {"duplicate": True}
    other = await rig.caller.ask("scheduler.task.trigger", task_id="user.report", key="order-8")
    assert other["run"] != first["run"]
    await rig.executor.until(2)
    await rig.caller.ask("scheduler.stats")
    assert len(rig.executor.runs) == 2
    assert len(await executions(rig.caller)) == 2


# ------------------------------------------------------------------ refusals


async def test_a_requester_who_does_not_own_the_task_is_denied_and_nothing_is_stored(
    rig: Rig, system: ActorSystem
) -> None:
    first, key = await started(rig, first_sleeps(10.0))
    await settled(rig, key, "sleeping")
    before = await stored_run(rig.caller, key)
    mallory: BusClient = await system.client("mallory")
    try:
        asks: list[tuple[str, dict[str, Any]]] = [
            ("scheduler.run.signal", {"run": key, "name": "go", "payload": 1}),
            ("scheduler.run.signal", {"run": first.execution_id, "name": "cancel"}),
            ("scheduler.run.cancel", {"run": key}),
            ("scheduler.run.pause", {"run": key}),
            ("scheduler.run.resume", {"run": first.execution_id}),
        ]
        for topic, payload in asks:
            with pytest.raises(RemoteError) as refused:
                await mallory.ask(topic, payload, timeout=10)
            assert refused.value.code == "denied", topic
        listed = await mallory.ask("scheduler.run.list", {}, timeout=10)
        assert listed.payload["runs"] == []
        with pytest.raises(RemoteError) as refused:
            await mallory.ask("scheduler.task.trigger", {"task_id": "user.report", "key": "k"})
        assert refused.value.code == "denied"
    finally:
        await mallory.stop()
    assert await stored_run(rig.caller, key) == before
    signals = await rig.caller.ask("store.run.signal.list", run_key=key)
    assert signals["signals"] == []
    assert len(await executions(rig.caller)) == 1
    admin = await rig.caller.ask("scheduler.run.list", task_id="user.report")
    assert [r["run_key"] for r in admin["runs"]] == [key]


async def test_bad_input_is_refused_precisely_and_stores_nothing(rig: Rig) -> None:
    first, key = await started(rig, lambda dispatch: None)  # succeeds: no row
    caller = rig.caller
    unknown_key = run_key("user.report", first.scheduled_at + timedelta(seconds=1))
    unknown_id = str(uuid.uuid4())
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("scheduler.run.signal", {"run": unknown_key, "name": "go"}, "not_found"),
        ("scheduler.run.cancel", {"run": unknown_id}, "not_found"),
        ("scheduler.run.pause", {"run": run_key("user.gone", first.scheduled_at)}, "not_found"),
        ("scheduler.run.signal", {"run": 5, "name": "go"}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": 5}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": ""}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": "a\nb"}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": "x" * 101}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": "child:a", "payload": {}}, "invalid"),
        ("scheduler.run.signal", {"run": "not a run", "name": "go"}, "invalid"),
        ("scheduler.run.signal", {"run": "user.report@soon", "name": "go"}, "invalid"),
        ("scheduler.run.signal", {"run": key, "name": "go", "extra": 1}, "invalid"),
        ("scheduler.run.cancel", {"run": key, "reason": 7}, "invalid"),
        ("scheduler.run.pause", {}, "invalid"),
        ("scheduler.run.resume", {"run": key, "reason": "no such field"}, "invalid"),
        ("scheduler.run.list", {"state": "asleep"}, "invalid"),
        ("scheduler.run.list", {"limit": "ten"}, "invalid"),
        ("scheduler.run.list", {"task_id": "nocategory"}, "invalid"),
        ("scheduler.task.trigger", {"task_id": "user.report", "key": ""}, "invalid"),
        ("scheduler.task.trigger", {"task_id": "user.report", "key": 3}, "invalid"),
        ("scheduler.task.trigger", {"task_id": "user.report", "key": "k" * 201}, "invalid"),
        # the run succeeded: a signal or a control of it conflicts
        ("scheduler.run.signal", {"run": key, "name": "go"}, "conflict"),
        ("scheduler.run.cancel", {"run": first.execution_id}, "conflict"),
        ("scheduler.run.pause", {"run": key}, "conflict"),
    ]
    for topic, payload, code in cases:
        refused = await caller.refused(topic, **payload)
        assert refused.code == code, (topic, payload, refused.reason)
    refused = await caller.refused("scheduler.run.signal", run=key, name="go")
    assert refused.reason == f"run {key} is succeeded"
    # an oversize payload, to a run that may take signals
    plan: Plan = lambda d: Suspend(waiting="approve")  # noqa: E731
    assert isinstance(rig.executor, DurableExecutor)
    rig.executor.plan = plan
    rig.clock.advance(1.0)  # a fire of its own, not the first one's again
    waiting = await caller.ask("scheduler.task.trigger", task_id="user.report")
    await rig.executor.until(2)
    await settled(rig, waiting["run"], "waiting")
    refused = await caller.refused(
        "scheduler.run.signal", run=waiting["run"], name="approve", payload="x" * 70_000
    )
    assert refused.code == "invalid"
    assert (await caller.ask("store.run.signal.list", run_key=waiting["run"]))["signals"] == []
    # nothing stored for any refusal: no row for the succeeded run, no other execution
    gone = await caller.refused("store.run.get", run_key=key)
    assert gone.code == "not_found"
    assert len(await executions(caller)) == 2
    listed = await caller.ask("scheduler.run.list")
    assert [r["run_key"] for r in listed["runs"]] == [waiting["run"]]
