"""Fires recorded ahead, dispatched on time (docs/scheduling.md, "What a task owes"): the
scheduler records a fire up to ``FIRE_LEAD_S`` before its instant, but no run begins before its
instant, each fire runs once, and its history says it was recorded no later than it began."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config import load_settings
from taskbus import Taskbus
from tests.e2e import ahead_tasks
from tests.e2e.system import until

pytestmark = pytest.mark.timeout(120)

FIRES = 20
SPACING = timedelta(milliseconds=7)  # not a multiple of the lead: fires land inside it too


@pytest.fixture
def began() -> Iterator[dict[str, tuple[float, float]]]:
    ahead_tasks.BEGAN.clear()
    yield ahead_tasks.BEGAN
    ahead_tasks.BEGAN.clear()


async def test_no_run_begins_before_its_instant_and_each_runs_once(
    tmp_path: Path, began: dict[str, tuple[float, float]]
) -> None:
    settings = load_settings(
        environ={"TASKBUS_HOME": str(tmp_path / "home")},
        overrides={
            "scheduler.task_modules": ["tests.e2e.ahead_tasks"],
            "resources.max_cpu_percent": 100,
            "resources.max_memory_percent": 100,
        },
    )
    async with Taskbus(settings, endpoints=()) as taskbus:
        client = await taskbus.client("app")
        await client.stats(wait_s=30.0)
        first = datetime.now(UTC) + timedelta(seconds=2)
        ids = [f"user.ahead_{i:02d}" for i in range(FIRES)]
        for i, task_id in enumerate(ids):
            at = (first + i * SPACING).isoformat()
            await client.create(task_id, "tests.e2e.ahead_tasks:Stamp", f"at:{at}")

        async def all_ran() -> bool:
            return len(began) == FIRES

        await until(all_ran, f"{FIRES} fires ran")

        async def all_stored() -> bool:
            runs = [await client.history(task_id) for task_id in ids]
            return all(len(r) == 1 and r[0]["success"] is not None for r in runs)

        await until(all_stored, f"{FIRES} outcomes stored")
        for task_id in ids:
            started, instant = began[task_id]
            assert started >= instant, f"{task_id} began {instant - started:.6f}s early"
            (run,) = await client.history(task_id)
            assert datetime.fromisoformat(run["scheduled_at"]).timestamp() == instant
            assert run["success"] is True
            recorded = datetime.fromisoformat(run["started_at"])
            assert recorded <= datetime.fromisoformat(run["run_started_at"])  # recorded, begun
