"""Steps with real processes (issue 15's key tests): a 3-step run whose executor process is
SIGKILLed between steps 2 and 3 finishes on a restarted executor, and steps 1 and 2 are not run
again; steps awaited together (asyncio.gather) survive a kill too and are asked for in the other
order by the re-run. Each step leaves a file per process that ran it, outside any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_settings
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.step_tasks import AFTER_TWO, RELEASE
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    actor,
    environment,
    execution,
    sigkill,
    terminate,
    until,
    up,
)

STEP_TASKS = "tests.e2e.step_tasks"
pytestmark = pytest.mark.timeout(180)


async def test_a_run_killed_between_steps_finishes_without_running_them_again(
    tmp_path: Path,
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = environment(
        tmp_path / "home",
        TASKBUS_CATEGORIES__USER__ENABLED="false",
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{STEP_TASKS}"]',
    )
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    system = await up(env)
    first = await actor(run_here, "executor-user")

    def ran(prefix: str) -> list[str]:
        return sorted(p.name for p in markers.glob(f"{prefix}-*"))

    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create(
            "user.steps",
            f"{STEP_TASKS}:ThreeSteps",
            "@yearly",
            config={"marker_dir": str(markers)},
        )
        execution_id = await taskbus.trigger("user.steps")
        await eventually(lambda: bool(ran(AFTER_TWO)), "steps one and two done in A", DEADLINE_S)
        assert ran(AFTER_TWO) == [f"{AFTER_TWO}-{first.pid}"]

        await sigkill(first)
        second = await actor(run_here, "executor-user")  # as a service manager would
        await eventually(
            lambda: f"{AFTER_TWO}-{second.pid}" in ran(AFTER_TWO),
            "the run started again in B and passed steps one and two",
            DEADLINE_S,
        )
        (markers / RELEASE).touch()

        async def stored() -> bool:
            return (await execution(taskbus, execution_id))["success"] is not None

        await until(stored, "the run's result stored")
        run = await execution(taskbus, execution_id)

    assert run["success"] is True, run
    assert ran("one") == [f"one-{first.pid}"]  # run once, by A, and not again by B
    assert ran("two") == [f"two-{first.pid}"]
    assert ran("three") == [f"three-{second.pid}"]
    assert run["result"] == {
        "steps": [f"one by {first.pid}", f"two by {first.pid}", f"three by {second.pid}"],
        "pid": second.pid,
    }
    await terminate(second)
    await terminate(system)


async def test_steps_gathered_survive_a_kill_and_rerun_in_another_order(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = environment(
        tmp_path / "home",
        TASKBUS_CATEGORIES__USER__ENABLED="false",
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{STEP_TASKS}"]',
    )
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    system = await up(env)
    first = await actor(run_here, "executor-user")

    def ran(prefix: str) -> list[str]:
        return sorted(p.name for p in markers.glob(f"{prefix}-*"))

    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create(
            "user.gathered",
            f"{STEP_TASKS}:GatheredSteps",
            "@yearly",
            config={"marker_dir": str(markers)},
        )
        execution_id = await taskbus.trigger("user.gathered")
        await eventually(
            lambda: bool(ran(AFTER_TWO)) and bool(ran("a")) and bool(ran("b")),
            "a and b kept while c is held in A",
            DEADLINE_S,
        )
        await sigkill(first)
        second = await actor(run_here, "executor-user")
        await eventually(
            lambda: f"{AFTER_TWO}-{second.pid}" in ran(AFTER_TWO),
            "the run started again in B and is holding c",
            DEADLINE_S,
        )
        (markers / RELEASE).touch()

        async def stored() -> bool:
            return (await execution(taskbus, execution_id))["success"] is not None

        await until(stored, "the run's result stored")
        run = await execution(taskbus, execution_id)

    assert run["success"] is True, run
    assert run["result"]["order"] == ["c", "b", "a"]  # B asked in the reverse order
    assert ran("a") == [f"a-{first.pid}"]  # kept by A, not run again by B
    assert ran("b") == [f"b-{first.pid}"]
    assert ran("c") == [f"c-{second.pid}"]
    await terminate(second)
    await terminate(system)
