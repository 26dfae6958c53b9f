"""``taskbus up`` runs every actor in one process: the built-in tasks are scheduled at start and
run for real when triggered, with their results in the encrypted store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from config import load_settings
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.procs import free_port, running_up


async def _run(taskbus: TaskbusClient, task_id: str) -> dict[str, Any]:
    trigger = await taskbus.ask("scheduler.task.trigger", {"task_id": task_id})
    execution_id = trigger["execution_id"]

    async def finished() -> bool:
        reply = await taskbus.ask("store.execution.get", {"execution_id": execution_id})
        return reply["execution"]["success"] is not None

    await eventually(finished, f"{task_id} finished", 60)
    reply = await taskbus.ask("store.execution.get", {"execution_id": execution_id})
    return dict(reply["execution"])


def test_builtin_tasks_are_scheduled_and_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
    }
    with running_up(env):
        settings = load_settings(environ=env)

        async def check() -> None:
            async with TaskbusClient.connect(settings) as taskbus:
                await taskbus.stats(wait_s=30)  # the scheduler leads
                listed = await taskbus.ask("scheduler.task.list", {})
                tasks = {t["task_id"]: t for t in listed["tasks"]}
                assert set(tasks) >= {
                    "maintenance.log_cleanup",
                    "maintenance.health_check",
                    "maintenance.database_vacuum",
                    "security.key_rotation",
                    "agency.daily_digest",
                }
                assert tasks["maintenance.log_cleanup"]["schedule"] == "0 3 * * *"
                assert all(t["next_run"] for t in tasks.values())
                cleanup = await _run(taskbus, "maintenance.log_cleanup")
                assert cleanup["success"] is True, cleanup["error_message"]
                assert "executions_expired" in cleanup["result"]
                health = await _run(taskbus, "maintenance.health_check")
                assert health["success"] is True, health["error_message"]

        asyncio.run(check())
