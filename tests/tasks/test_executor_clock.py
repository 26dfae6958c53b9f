"""The executor takes its pauses and timeouts from its injected clock: driven by a FakeClock,
the hand-back pause, the admission's second look and a run's timeout wait for the clock to
advance, never for real time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from actors.executing import ExecutorActor
from actors.executing.actor import HANDBACK_PAUSE_S
from actors.executing.admission import Admission
from actors.executing.lag import LagMonitor
from actors.executing.resources import Load
from actors.scheduling.protocol import Dispatch
from bus import Delivery, Envelope
from config import topics
from config.sections import CategorySettings, ResourceSettings
from scheduler import FakeClock, within
from tasks import TaskRegistry
from tests.bus.waits import eventually
from tests.tasks.gates import Gated
from tests.tasks.rig import QUIET, FixedProbe

START = datetime(2024, 5, 1, 12, tzinfo=UTC)
BUSY = Load(cpu_percent=95.0, memory_percent=10.0)


def _dispatch(task_id: str = "user.clocked") -> Dispatch:
    return Dispatch(
        execution_id=str(uuid.uuid4()),
        task_id=task_id,
        task_class=Gated.key(),
        scheduled_at=START,
        attempt=1,
        timeout_s=60.0,
        allow_overlap=False,
    )


async def _turns(count: int = 5) -> None:
    """Let the event loop turn: what is due without the clock happens meanwhile."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_dispatch_that_cannot_be_handled_is_handed_back_after_the_pause() -> None:
    clock = FakeClock(START)
    executor = ExecutorActor(
        CategorySettings(name="user"), TaskRegistry.with_builtins(), clock=clock, probe=FixedProbe()
    )
    settled: list[bool | None] = []
    delivery = Delivery(
        Envelope(topics.DISPATCH_QUEUES + "user", _dispatch().payload()),
        1,
        lambda message_id, requeue: settled.append(requeue),
    )
    try:  # not connected: the store cannot be asked, so the dispatch is handed back
        handling = asyncio.create_task(executor.on_dispatch(delivery))
        await eventually(lambda: clock.next_timer_s is not None, "the hand-back pause begins")
        assert executor.counters["handed_back"] == 1
        clock.advance(HANDBACK_PAUSE_S / 2)
        await _turns()
        assert settled == []
        clock.advance(HANDBACK_PAUSE_S / 2)
        await asyncio.wait_for(handling, 5)
        assert settled == [True]  # requeued
    finally:
        await executor.on_stop()


def _admission(clock: FakeClock, probe: FixedProbe, *, limit: int = 1) -> Admission:
    return Admission(
        limit=limit,
        global_slots=asyncio.Semaphore(limit),
        probe=probe,
        resources=ResourceSettings(max_cpu_percent=80.0, check_interval_s=0.5),
        lag=LagMonitor(),
        clock=clock,
    )


async def test_a_start_deferred_by_load_looks_again_once_the_interval_has_passed() -> None:
    clock = FakeClock(START)
    probe = FixedProbe(BUSY)
    admission = _admission(clock, probe)
    reasons: list[str] = []

    async def deferred(reason: str) -> None:
        reasons.append(reason)

    dispatch = _dispatch()
    admitting = asyncio.create_task(admission.admit(dispatch, Gated, deferred))
    await eventually(lambda: clock.next_timer_s == 0.5, "the start waits for a second look")
    assert reasons == ["cpu 95% > 80%"]
    probe.load_now = QUIET
    await _turns()
    assert not admitting.done()  # nothing announces the load's change: the clock must pass
    clock.advance(0.5)
    await asyncio.wait_for(admitting, 5)
    assert admission.running == {dispatch.task_id: 1}
    admission.release(dispatch)
    assert admission.running == {}


async def test_a_run_ending_admits_a_waiting_start_at_once() -> None:
    clock = FakeClock(START)
    admission = _admission(clock, FixedProbe())
    reasons: list[str] = []

    async def deferred(reason: str) -> None:
        reasons.append(reason)

    first, second = _dispatch("user.first"), _dispatch("user.second")
    await admission.admit(first, Gated, deferred)
    admitting = asyncio.create_task(admission.admit(second, Gated, deferred))
    await eventually(lambda: reasons == ["concurrency limit reached"], "the second waits")
    admission.release(first)
    await asyncio.wait_for(admitting, 5)  # the clock never moved
    assert admission.running == {"user.second": 1}


async def test_a_run_times_out_when_the_clock_has_passed_its_timeout() -> None:
    clock = FakeClock(START)
    never = asyncio.Event()
    waiting = asyncio.create_task(within(clock, 30.0, never.wait()))
    await eventually(lambda: clock.next_timer_s == 30.0, "the timeout is set on the clock")
    clock.advance(29.0)
    await _turns()
    assert not waiting.done()
    clock.advance(1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiting, 5)
    assert clock.next_timer_s is None  # nothing left behind
