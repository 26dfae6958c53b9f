"""A poison task kills its executor process on every run (real processes, SIGKILL): after
``poison_after`` deaths the next executor quarantines it (dead letter, task disabled) instead of
running it again, and keeps serving."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import KeysDirectory
from config import load_settings
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.procs import free_port, running_up, start_taskbus, wait_for_line

POISON_AFTER = 2
pytestmark = pytest.mark.timeout(120)


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_executor_left_behind() -> Iterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def _executor(env: dict[str, str]) -> subprocess.Popen[str]:
    process = start_taskbus(
        {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"},
        "actor",
        "executor-user",
        "--connect",
        env["TASKBUS_ENDPOINT"],
    )
    STARTED.append(process)
    wait_for_line(process, "connected to", 30)
    return process


def test_a_task_that_kills_its_executor_is_quarantined(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_CATEGORIES__USER__ENABLED": "false",  # the user executor runs apart
        "TASKBUS_SCHEDULER__TASK_MODULES": '["tests.tasks.poison"]',
        "TASKBUS_SCHEDULER__POISON_AFTER": str(POISON_AFTER),
        "TASKBUS_BUS__HEARTBEAT_INTERVAL_S": "0.2",
    }
    with running_up(env):
        keys = KeysDirectory(tmp_path / "home" / "keys")
        keys.identity_keypair("executor-user", create=True)
        settings = load_settings(environ=env)

        async def create_and_trigger() -> None:
            async with TaskbusClient.connect(settings) as taskbus:
                await taskbus.stats(wait_s=30)  # the scheduler leads
                await taskbus.ask(
                    "scheduler.task.create",
                    {
                        "task_id": "user.poison",
                        "task_class": "tests.tasks.poison:KillsItsExecutor",
                        "schedule": "@yearly",
                    },
                )
                await taskbus.ask("scheduler.task.trigger", {"task_id": "user.poison"})

        deaths = []
        executor = _executor(env)
        asyncio.run(create_and_trigger())
        for _ in range(POISON_AFTER):
            executor.communicate(timeout=60)
            deaths.append(executor.returncode)
            executor = _executor(env)  # as a service manager would restart it
        assert deaths == [-9] * POISON_AFTER

        async def quarantined() -> dict[str, object]:
            async with TaskbusClient.connect(settings) as taskbus:

                async def lettered() -> bool:
                    reply = await taskbus.ask("store.dead_letters", {"task_id": "user.poison"})
                    return bool(reply["dead_letters"])

                await eventually(lettered, "the poison dead-lettered", 60)
                letters = await taskbus.ask("store.dead_letters", {"task_id": "user.poison"})
                task = await taskbus.ask("scheduler.task.get", {"task_id": "user.poison"})
                return {"letter": letters["dead_letters"][0], "task": task["task"]}

        found = asyncio.run(quarantined())
        letter, task = found["letter"], found["task"]
        assert isinstance(letter, dict)
        assert isinstance(task, dict)
        assert letter["error_type"] == "Poison"
        assert letter["attempts"] == POISON_AFTER + 1
        assert "each run ended its executor" in letter["reason"]
        assert task["enabled"] is False
        assert executor.poll() is None  # the last executor quarantined it and lives on
        executor.terminate()
        executor.communicate(timeout=30)
        assert executor.returncode == 0
