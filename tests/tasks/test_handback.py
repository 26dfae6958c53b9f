"""A dispatch for an execution the store does not know (never recorded by a scheduler, or
deleted by retention while queued) can never be settled: the executor drops it, reports it on
``scheduler.error``, and keeps its slot for other work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from actors.executing import actor as executing
from actors.scheduling.protocol import Dispatch, dispatch_queue, work_id
from tests.tasks import gates
from tests.tasks.gates import Gated
from tests.tasks.rig import Start


async def test_a_dispatch_of_an_unknown_execution_is_dropped_and_reported(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executing, "HANDBACK_PAUSE_S", 0.05)  # were it handed back instead
    rig = await start(concurrency=1)
    gates.GATES.opened.set()
    await rig.create("user.ok", Gated)
    errors = await rig.client.subscribe("scheduler.error")
    unknown = str(uuid.uuid4())
    scheduler = await rig.system.client("scheduler")  # only this identity may dispatch
    await scheduler.enqueue(
        dispatch_queue("user.ghost"),
        Dispatch(
            execution_id=unknown,
            task_id="user.ghost",
            task_class=Gated.key(),
            scheduled_at=datetime.now(UTC),
            attempt=1,
            timeout_s=10.0,
            allow_overlap=False,
        ).payload(),
        5.0,
        message_id=work_id(unknown),
    )
    error = await errors.get(timeout=10)
    assert error.payload["topic"] == "scheduler.task.dispatch.user"
    assert error.payload["sender"] == "scheduler"
    assert f"execution {unknown!r} not found" in error.payload["reason"]
    execution_id = await rig.trigger("user.ok")  # the single slot is free
    assert (await rig.finished(execution_id))["success"] is True
    assert rig.executor.counters["unknown_execution"] == 1
    assert rig.executor.counters["handed_back"] == 0
    assert gates.GATES.started == [execution_id]  # the ghost never ran
