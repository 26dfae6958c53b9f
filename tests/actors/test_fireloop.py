"""The timing engine's asyncio driver: fires in order, wakes on changes, never polls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from actors.fireloop import FireLoop
from scheduler import MisfirePolicy, TaskPlan, TimingEngine, compile_schedule

POLICY = MisfirePolicy(mode="run_once", grace_s=60.0)


def _at(delay_s: float) -> tuple[datetime, str]:
    instant = datetime.now(UTC) + timedelta(seconds=delay_s)
    return instant, f"at:{instant.isoformat()}"


class Recorder:
    def __init__(self) -> None:
        self.fired: list[tuple[str, datetime]] = []
        self.changed = asyncio.Event()

    async def __call__(self, plans: list[TaskPlan], now: datetime) -> None:
        for plan in plans:
            self.fired.extend((plan.task_id, run.instant) for run in plan.plan.runs)
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
