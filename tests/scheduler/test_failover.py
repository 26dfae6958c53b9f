"""Two scheduler processes, the leader SIGKILLed: the standby takes over within the lease TTL, and
no scheduled instant fires twice or is lost.

Real processes over tcp+CURVE: ``taskbus up`` with scheduling disabled holds the broker and the
encrypted store; two ``taskbus actor scheduler`` processes compete for the lease; this test runs
the executor of the ``user`` category and records every run.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bus import BusClient, KeysDirectory
from config import BusSettings
from tests.bus.waits import eventually
from tests.e2e.procs import free_port, start_taskbus, wait_for_line
from tests.scheduler.rig import RecordingExecutor

ROOT = Path(__file__).resolve().parents[2]
LEASE_TTL_S = 2.0
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_SCHEDULER__LEASE_TTL_S": str(LEASE_TTL_S),
        "TASKBUS_BUS__HEARTBEAT_INTERVAL_S": "0.2",
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def _client(keys: KeysDirectory, endpoint: str, identity: str) -> BusClient:
    client = BusClient(
        endpoint,
        identity=identity,
        keypair=keys.identity_keypair(identity, create=True),
        server_key=keys.broker_public_key(),
        settings=BusSettings(ask_timeout_s=10.0),
    )
    await client.start()
    return client


async def _leader_pid(client: BusClient) -> int:
    """The pid in the lease holder's name (``scheduler@host:pid:nonce``)."""
    reply = await client.ask("scheduler.stats", {}, timeout=10)
    return int(str(reply.payload["leader"]).split(":")[1])


async def test_the_standby_takes_over_from_a_killed_leader_without_double_or_lost_fires(
    env: dict[str, str], processes: list[subprocess.Popen[str]]
) -> None:
    endpoint = env["TASKBUS_ENDPOINT"]
    up = start_taskbus({**env, "TASKBUS_ENABLED": "false"}, "up")
    processes.append(up)
    await asyncio.to_thread(wait_for_line, up, "broker listening on", 30)
    keys = KeysDirectory(Path(env["TASKBUS_HOME"]) / "keys")
    keys.identity_keypair("scheduler", create=True)
    first = start_taskbus(env, "actor", "scheduler", "--connect", endpoint)
    processes.append(first)
    await asyncio.to_thread(wait_for_line, first, "connected to", 30)

    tester = await _client(keys, endpoint, "cli")  # an admin, as the CLI is
    runner = RecordingExecutor(  # an executor identity: the ACL lets only executors take work
        await _client(keys, endpoint, "executor-user"), "scheduler.task.dispatch.user"
    )
    try:
        await eventually(lambda: _asks_ok(tester), "the first scheduler leads", 30)
        assert await _leader_pid(tester) == first.pid
        second = start_taskbus(env, "actor", "scheduler", "--connect", endpoint)
        processes.append(second)
        await asyncio.to_thread(wait_for_line, second, "connected to", 30)
        assert await _leader_pid(tester) == first.pid  # the second one waits on standby

        await runner.start()
        await tester.ask(
            "scheduler.task.create",
            {
                "task_id": "user.tick",
                "task_class": "ticks:Tick",
                "schedule": "interval:1",
                "misfire_policy": {"mode": "catch_up", "catch_up_limit": 100},
            },
            timeout=10,
        )
        await runner.until(3, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        killed_after = len(runner.runs)

        async def second_leads() -> bool:
            try:
                return await _leader_pid(tester) == second.pid
            except Exception:  # no_responder while nobody leads
                return False

        await eventually(second_leads, "the standby leads", 4 * LEASE_TTL_S + 10)
        await runner.until(killed_after + 5, timeout=30)
    finally:
        await runner.stop()
        await runner.client.stop()

    try:
        instants = sorted({run.scheduled_at for run in runner.runs})
        fired = Counter((run.scheduled_at, run.attempt) for run in runner.runs)
        assert [key for key, count in fired.items() if count > 1] == []  # nothing ran twice
        steps = {b - a for a, b in itertools.pairwise(instants)}
        assert steps == {timedelta(seconds=1)}  # nothing lost across the handover
        history = await tester.ask(
            "store.execution.history", {"task_id": "user.tick", "limit": 1000}, timeout=10
        )
        stored = Counter(e["scheduled_at"] for e in history.payload["executions"])
        assert all(count == 1 for count in stored.values())
        assert {t.isoformat() for t in instants} <= set(stored)
    finally:
        await tester.stop()


async def _asks_ok(client: BusClient) -> bool:
    try:
        await client.ask("scheduler.stats", {}, timeout=2)
    except Exception:
        return False
    return True
