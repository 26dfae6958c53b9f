"""Many tasks due at the same instant, far more than the store's mailbox holds: the scheduler
records them in batches (each fire and its task's last run in one fenced write), dispatches each
once, and never floods the store into refusing it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors import ActorState, ActorSystem
from actors.scheduling import SchedulerActor
from bus import KeysDirectory
from config.sections import SchedulerSettings
from tests.bus.waits import eventually
from tests.scheduler.conftest import store_system
from tests.scheduler.rig import Caller, RecordingExecutor

TASKS = 200
MAILBOX = 20  # the store takes at most this many requests waiting: far fewer than the fires


@pytest.fixture
async def small_mailboxes(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[ActorSystem]:
    async with store_system(keys, tmp_path, mailbox_size=MAILBOX) as system:
        yield system


async def test_fires_due_together_are_recorded_marked_and_dispatched_once_each(
    small_mailboxes: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    system = small_mailboxes
    client = await system.client("tester")
    caller = Caller(client, await client.subscribe("scheduler.task.status"))
    due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    for n in range(TASKS):
        await caller.ask(
            "store.task.put",
            task_id=f"user.t{n:03d}",
            task_class="noop:Noop",
            schedule=f"at:{due.isoformat()}",
        )
    executor_client = await system.client("executor-test")
    executor = RecordingExecutor(executor_client, "scheduler.task.dispatch.user")
    await executor.start()
    instances: list[SchedulerActor] = []

    def factory() -> SchedulerActor:
        instances.append(SchedulerActor(SchedulerSettings(lease_ttl_s=5.0)))
        return instances[-1]

    caplog.set_level(logging.WARNING, logger="taskbus")
    await system.spawn(factory, name="scheduler", identity="scheduler")
    await eventually(
        lambda: system.status()["scheduler"]["state"] == ActorState.RUNNING, "scheduler leads", 10
    )
    try:
        runs = await executor.until(TASKS, timeout=60)
        assert sorted(r.task_id for r in runs) == [f"user.t{n:03d}" for n in range(TASKS)]
        assert {r.scheduled_at for r in runs} == {due}
        scheduler = instances[0]
        await eventually(
            lambda: scheduler.counters["succeeded"] == TASKS, "every result handled", 30
        )
        assert (scheduler.counters["fires"], scheduler.counters["dispatched"]) == (TASKS, TASKS)
        assert "duplicate_fires" not in scheduler.counters
        for run in runs[:: TASKS // 10]:
            execution = (await caller.ask("store.execution.get", execution_id=run.execution_id))[
                "execution"
            ]
            assert execution["success"] is True
            task = (await caller.ask("store.task.get", task_id=run.task_id))["task"]
            assert (task["last_run"], task["next_run"]) == (due.isoformat(), None)
        queued: set[str] = set()
        while len(queued) < TASKS:
            event = await caller.events.get(timeout=10)
            if event.payload.get("state") == "queued":
                queued.add(str(event.payload["task_id"]))
        refused = [r.getMessage() for r in caplog.records if "busy" in r.getMessage()]
        assert refused == []
    finally:
        await executor.stop()
        await executor_client.stop()
        await client.stop()
