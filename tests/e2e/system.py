"""The system as real processes, for the end-to-end tests (not collected): ``taskbus up`` and
``taskbus actor ...`` children that a test starts, stops cleanly or SIGKILLs, the environment they
share, and reads of what the store holds, asked as the admin ``cli`` identity (which also works
while no scheduler leads)."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bus import KeysDirectory
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.procs import free_port, start_taskbus, wait_for_line

TASKS = "tests.e2e.crash_tasks"
LEASE_TTL_S = 2.0
READY_S = 60.0  # a child's start on a busy machine
DEADLINE_S = 60.0  # any other condition


@dataclass
class Child:
    """A ``taskbus`` child process; after its ready line a thread keeps reading its stderr, so
    that it never blocks on a full pipe and its output can be quoted."""

    process: subprocess.Popen[str]
    name: str
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return f"--- {self.name} (pid {self.pid}) ---\n" + "".join(self.lines)

    def read_on(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        self.reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.reader.start()

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout=10)
        return code


CHILDREN: list[Child] = []


def _start(env: dict[str, str], name: str, *args: str, ready: str) -> Child:
    child = Child(start_taskbus(env, *args), name)
    CHILDREN.append(child)
    try:
        child.lines.extend(wait_for_line(child.process, ready, READY_S))
    except AssertionError as failure:
        child.process.kill()
        raise AssertionError(f"{name} exited {child.wait()}: {failure}") from None
    child.read_on()
    return child


async def up(env: dict[str, str]) -> Child:
    return await asyncio.to_thread(_start, env, "up", "up", ready="actors running:")


async def actor(env: dict[str, str], spec: str) -> Child:
    return await asyncio.to_thread(
        _start, env, spec, "actor", spec, "--connect", env["TASKBUS_ENDPOINT"], ready="connected to"
    )


async def terminate(child: Child) -> None:
    """SIGTERM; it must exit cleanly."""
    child.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(child.wait)
    assert code == 0, child.output()


async def sigkill(child: Child) -> None:
    child.process.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(child.wait) == -signal.SIGKILL


# ---------------------------------------------------------------- the system


def environment(home: Path, **extra: str) -> dict[str, str]:
    keys = KeysDirectory(home / "keys")
    for identity in ("scheduler", "executor-user", "executor-maintenance"):
        keys.identity_keypair(identity, create=True)  # the actors that run as processes
    return {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_BUS__HEARTBEAT_INTERVAL_S": "0.2",
        "TASKBUS_SCHEDULER__LEASE_TTL_S": str(LEASE_TTL_S),
        "TASKBUS_SCHEDULER__TASK_MODULES": f'["{TASKS}"]',
        # Runs start however busy the machine is (the executors' admission defers them above
        # these): the tests run beside other work on two cores.
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_RESOURCES__MAX_MEMORY_PERCENT": "100",
        **extra,
    }


async def until(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    state: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """``eventually``, asking at most ten times a second (the system is not flooded); a failure
    quotes ``state()``."""

    async def paced() -> bool:
        await asyncio.sleep(0.1)
        return await condition()

    try:
        await eventually(paced, what, DEADLINE_S)
    except AssertionError as failure:
        if state is None:
            raise
        raise AssertionError(f"{failure}; state: {await state()!r}") from None


async def history(taskbus: TaskbusClient, task_id: str) -> list[dict[str, Any]]:
    """Read from the store (the ``cli`` identity is an admin, which may), so that it also works
    while no scheduler leads."""
    reply = await taskbus.ask("store.execution.history", {"task_id": task_id, "limit": 1000})
    return list(reply["executions"])


async def missed(taskbus: TaskbusClient, task_id: str, every_s: float = 1.0) -> dict[datetime, str]:
    """Every instant the scheduler recorded as not run, with its reason; a range of ``count``
    instants is of a task that fires every ``every_s`` seconds."""
    reply = await taskbus.ask("store.missed.list", {"task_id": task_id, "limit": 1000})
    assert reply["next_cursor"] is None
    found: dict[datetime, str] = {}
    for entry in reply["missed"]:
        first, last = instant(entry["first_at"]), instant(entry["last_at"])
        span = [first + timedelta(seconds=k * every_s) for k in range(int(entry["count"]))]
        assert span[-1] == last, entry
        for moment in span:
            assert moment not in found, entry
            found[moment] = entry["reason"]
    return found


async def execution(taskbus: TaskbusClient, execution_id: str) -> dict[str, Any]:
    reply = await taskbus.ask("store.execution.get", {"execution_id": execution_id})
    return dict(reply["execution"])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def first_attempts(runs: list[dict[str, Any]]) -> Counter[datetime]:
    return Counter(instant(run["scheduled_at"]) for run in runs if run["retry_count"] == 0)


def seconds_between(after: datetime, before: datetime) -> list[datetime]:
    """The whole-second instants t with after < t < before: the fires of an ``every 1s`` task."""
    first = math.floor(after.timestamp()) + 1
    last = math.ceil(before.timestamp()) - 1
    return [datetime.fromtimestamp(s, UTC) for s in range(first, last + 1)]
