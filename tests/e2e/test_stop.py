"""Stopping ``taskbus up`` as docs/operations.md says (issue 14, points 5 and 10): SIGINT drains a
running task for ``actors.shutdown_deadline_s`` and exits 0 once it finished, 3 once it had to be
cancelled; the scheduler releases its lease before the store stops; start, a CLI call and stop
print no warning."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from config import load_settings
from taskbus import Taskbus
from taskbus.cli.exits import EXIT_UNCLEAN
from taskbus.client import TaskbusClient
from tests.e2e.procs import taskbus
from tests.e2e.stop_tasks import STARTED
from tests.e2e.system import DEADLINE_S, Child, environment, execution, until, up

LONG_LEASE_S = 60.0  # a scheduler that had to wait for the lease to expire would stand by

pytestmark = pytest.mark.timeout(120)

TASKS = "tests.e2e.stop_tasks"


def _env(home: Path, deadline_s: float) -> dict[str, str]:
    return environment(
        home,
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}"]',
        TASKBUS_ACTORS__SHUTDOWN_DEADLINE_S=str(deadline_s),
    )


async def _interrupt(child: Child) -> int:
    child.process.send_signal(signal.SIGINT)
    return await asyncio.to_thread(child.wait, DEADLINE_S)


async def _interrupted_mid_run(
    tmp_path: Path, env: dict[str, str], run_s: float
) -> tuple[Child, str, int]:
    """``up``, one Sleeper run of ``run_s`` triggered, SIGINT once it runs: the child, the run's
    execution id and the exit code."""
    markers = tmp_path / "markers"
    markers.mkdir()
    system = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as client:
        await client.stats(wait_s=DEADLINE_S)
        config = {"marker_dir": str(markers), "seconds": run_s}
        await client.create("user.sleep", f"{TASKS}:Sleeper", "@yearly", config=config)
        execution_id = await client.trigger("user.sleep")

        async def running() -> bool:
            return (markers / STARTED).exists()

        await until(running, "the Sleeper run started")
    return system, execution_id, await _interrupt(system)


async def test_sigint_mid_run_drains_it_stores_its_result_and_exits_0(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", deadline_s=30)
    stopped, execution_id, code = await _interrupted_mid_run(tmp_path, env, run_s=3)

    assert code == 0, stopped.output()
    assert not [line for line in stopped.lines if "release failed" in line], stopped.output()
    again = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as client:
        run = await execution(client, execution_id)
    assert run["success"] is True, run
    assert run["result"] == {"slept_s": 3}, run
    assert await _interrupt(again) == 0, again.output()


async def test_sigint_mid_run_past_the_deadline_cancels_it_and_exits_3(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", deadline_s=1)
    stopped, _, code = await _interrupted_mid_run(tmp_path, env, run_s=60)

    assert code == EXIT_UNCLEAN, stopped.output()
    cancelled = [line for line in stopped.lines if "shutdown cancelled in-flight work" in line]
    assert len(cancelled) == 1, stopped.output()
    assert "executor-user" in cancelled[0], stopped.output()
    assert not [line for line in stopped.lines if "release failed" in line], stopped.output()


async def _first_start_a_cli_call_and_stop(tmp_path: Path) -> Child:
    """A first ``up`` (at the default log level), ``task list``, SIGINT: the stopped child."""
    env = _env(tmp_path / "home", deadline_s=10)
    system = await up(env)
    listed = await asyncio.to_thread(taskbus, env, "task", "list")
    assert listed.returncode == 0, listed.stderr
    assert await _interrupt(system) == 0, system.output()
    return system


async def test_start_a_cli_call_and_stop_print_no_warning(tmp_path: Path) -> None:
    system = await _first_start_a_cli_call_and_stop(tmp_path)
    loud = [
        line
        for line in system.lines
        if " WARNING " in line or " ERROR " in line or "bus.peer." in line
    ]
    assert not loud, system.output()


async def test_start_a_cli_call_and_stop_print_no_refusal(tmp_path: Path) -> None:
    system = await _first_start_a_cli_call_and_stop(tmp_path)
    assert not [line for line in system.lines if " refused: " in line], system.output()


async def test_a_clean_stop_hands_the_lease_over_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler stops (releasing its lease) before the store: the next start on the data
    directory leads at once instead of standing by for the lease TTL."""
    settings = load_settings(
        environ={
            "TASKBUS_HOME": str(tmp_path / "home"),
            "TASKBUS_SCHEDULER__LEASE_TTL_S": str(LONG_LEASE_S),
        }
    )
    async with asyncio.timeout(DEADLINE_S):
        async with Taskbus(settings, endpoints=()) as first:
            assert first.system.status()["scheduler"]["state"] == "running"
        async with Taskbus(settings, endpoints=()) as second:
            assert second.system.status()["scheduler"]["state"] == "running"
    assert "release failed" not in caplog.text
