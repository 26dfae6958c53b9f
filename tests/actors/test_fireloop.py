"""The timing engine's asyncio driver: fires in order, wakes on changes, never polls, and notices
a wall-clock jump (on a fake clock: a jump is the wall clock moving alone)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from actors.fireloop import FireLoop
from scheduler import FakeClock, MisfirePolicy, TaskPlan, TimingEngine, compile_schedule
from tests.bus.waits import eventually

POLICY = MisfirePolicy(mode="run_once", grace_s=60.0)


def _at(delay_s: float) -> tuple[datetime, str]:
    instant = datetime.now(UTC) + timedelta(seconds=delay_s)
    return instant, f"at:{instant.isoformat()}"


class Recorder:
    def __init__(self) -> None:
        self.fired: list[tuple[str, datetime]] = []
        self.missed: list[tuple[str, datetime, str]] = []
        self.handed: list[tuple[datetime, float]] = []  # (the wall time handed over, late_s)
        self.changed = asyncio.Event()

    async def __call__(self, plans: list[TaskPlan], now: datetime) -> None:
        for plan in plans:
            self.fired.extend((plan.task_id, run.instant) for run in plan.plan.runs)
            self.handed.extend((now, run.late_s) for run in plan.plan.runs)
            self.missed.extend((plan.task_id, m.instant, m.reason) for m in plan.plan.missed)
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.fired) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[FireLoop, Recorder]]:
    record = Recorder()
    loop = FireLoop(record, engine=TimingEngine(max_sleep_s=3600.0))
    loop.start()
    yield loop, record
    await loop.stop()


async def test_tasks_fire_once_each_in_due_order(recorder: tuple[FireLoop, Recorder]) -> None:
    fire_loop, record = recorder
    expected = []
    for name, delay in (("c", 0.3), ("a", 0.1), ("b", 0.2)):
        instant, text = _at(delay)
        expected.append((name, instant))
        fire_loop.put(name, compile_schedule(text), POLICY)
    await record.wait_for(3)
    assert sorted(record.fired, key=lambda f: (f[1], f[0])) == sorted(
        expected, key=lambda f: (f[1], f[0])
    )
    assert record.fired == sorted(record.fired, key=lambda f: f[1])


async def test_a_new_task_wakes_a_loop_asleep_for_an_hour(
    recorder: tuple[FireLoop, Recorder],
) -> None:
    fire_loop, record = recorder
    _, far = _at(3600)
    fire_loop.put("far", compile_schedule(far), POLICY)
    await asyncio.sleep(0)  # the loop is now asleep until the far task (capped at an hour)
    soon_instant, soon = _at(0.01)
    fire_loop.put("soon", compile_schedule(soon), POLICY)
    await record.wait_for(1)  # without the wake this would take an hour, not seconds
    assert record.fired == [("soon", soon_instant)]


async def test_a_removed_task_does_not_fire(recorder: tuple[FireLoop, Recorder]) -> None:
    fire_loop, record = recorder
    _, first = _at(0.05)
    later_instant, later = _at(0.2)
    fire_loop.put("removed", compile_schedule(first), POLICY)
    fire_loop.put("kept", compile_schedule(later), POLICY)
    assert fire_loop.remove("removed")
    await record.wait_for(1)
    assert record.fired == [("kept", later_instant)]


async def test_an_interval_task_keeps_firing_at_its_instants(
    recorder: tuple[FireLoop, Recorder],
) -> None:
    fire_loop, record = recorder
    fire_loop.put("tick", compile_schedule("interval:1"), POLICY)
    await record.wait_for(2)
    first, second = record.fired[0][1], record.fired[1][1]
    assert second - first == timedelta(seconds=1)
    assert first.microsecond == 0  # anchored to whole seconds of the epoch


T0 = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)


async def _asleep(loop: FireLoop, clock: FakeClock, wakes: int) -> None:
    """Until the loop has woken ``wakes`` times and sleeps again (its timer set on ``clock``)."""
    await eventually(
        lambda: loop.wakes >= wakes and clock.next_timer_s is not None, "the loop sleeps", 5
    )


async def test_a_forward_jump_is_noticed_and_the_fires_it_passed_follow_the_misfire_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wall clock leaps from 00:30 to 06:10 while the loop sleeps: at its next wake (at most
    ``max_sleep_s`` later) it logs the jump and plans 01:00-06:00 through run_once: 06:00 runs,
    the five before it are coalesced into it."""
    clock, record = FakeClock(T0), Recorder()
    loop = FireLoop(record, clock=clock, engine=TimingEngine(max_sleep_s=60.0))
    loop.put("hourly", compile_schedule("@hourly"), POLICY)
    loop.start()
    try:
        await _asleep(loop, clock, 0)
        clock.jump(5 * 3600 + 40 * 60 - 60)
        with caplog.at_level(logging.WARNING, logger="taskbus.fireloop"):
            clock.advance(60)  # the loop's capped sleep ends
            await record.wait_for(1)
        six = datetime(2026, 3, 1, 6, tzinfo=UTC)
        assert record.fired == [("hourly", six)]
        assert [m[1].hour for m in record.missed] == [1, 2, 3, 4, 5]
        assert {m[2] for m in record.missed} == {f"coalesced into {six.isoformat()}"}
        assert loop.jumps == 1
        assert [r.getMessage() for r in caplog.records] == [
            "wall clock jumped +20340.000s; fires re-planned from 2026-03-01T06:10:00+00:00"
        ]
    finally:
        await loop.stop()


async def test_a_backward_jump_is_noticed_and_fires_nothing_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, record = FakeClock(T0), Recorder()
    loop = FireLoop(record, clock=clock, engine=TimingEngine(max_sleep_s=60.0))
    loop.put("hourly", compile_schedule("@hourly"), POLICY)
    loop.start()
    try:
        await _asleep(loop, clock, 0)
        clock.advance(30 * 60)  # 01:00 fires
        await record.wait_for(1)
        await _asleep(loop, clock, 1)
        clock.jump(-45 * 60)  # back to 00:15
        with caplog.at_level(logging.WARNING, logger="taskbus.fireloop"):
            clock.advance(60)  # the next wake sees it
            await _asleep(loop, clock, 2)
        assert loop.jumps == 1
        assert "wall clock jumped -2700.000s" in caplog.text
        clock.advance(45 * 60 - 60)  # 01:00 again on the wall clock: not fired twice
        await _asleep(loop, clock, 3)
        assert record.fired == [("hourly", datetime(2026, 3, 1, 1, tzinfo=UTC))]
    finally:
        await loop.stop()


async def test_with_a_lead_the_loop_hands_fires_over_that_long_before_their_instant() -> None:
    """The scheduler's ``lead_s``: the loop's timer ends ``lead_s`` before the fire, the fire is
    handed over then, on time (``late_s`` negative), and its next fire is planned as usual."""
    clock, record = FakeClock(T0), Recorder()
    loop = FireLoop(record, clock=clock, engine=TimingEngine(max_sleep_s=3600.0), lead_s=2.0)
    loop.put("hourly", compile_schedule("@hourly"), MisfirePolicy(mode="skip", grace_s=0.0))
    loop.start()
    try:
        await _asleep(loop, clock, 0)
        assert clock.next_timer_s == 30 * 60 - 2.0
        clock.advance(30 * 60 - 2.0)
        await record.wait_for(1)
        one = datetime(2026, 3, 1, 1, tzinfo=UTC)
        assert record.fired == [("hourly", one)]
        assert record.handed == [(one - timedelta(seconds=2), -2.0)]
        assert record.missed == []  # on time although grace_s is 0
        await _asleep(loop, clock, 1)
        assert clock.next_timer_s == 3600.0  # from 00:59:58 to 01:59:58
    finally:
        await loop.stop()
