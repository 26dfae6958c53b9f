"""One taskbus per data directory, and a start that cannot listen stops at once (issue 14, points
1 and 2): a second ``taskbus up`` or ``Taskbus.start`` exits with one line naming what is in the
way, and leaves the running instance, its ipc socket and its store alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_settings
from taskbus import Taskbus
from taskbus.cli.exits import EXIT_IN_USE
from taskbus.client import TaskbusClient
from taskbus.instance import InstanceLock, InUse
from tests.e2e.procs import ROOT, free_port, taskbus
from tests.e2e.system import DEADLINE_S, environment, terminate, up

pytestmark = pytest.mark.timeout(120)

AT_ONCE_S = 5.0  # "at once": the interpreter's start-up alone takes ~0.4 s on a busy machine


@pytest.mark.parametrize("endpoint", ["same", "other"])
async def test_a_second_up_on_a_data_directory_exits_at_once_naming_the_first(
    tmp_path: Path, endpoint: str
) -> None:
    home = tmp_path / "home"
    env = environment(home)
    first = await up(env)
    sock = home / "run" / "broker.sock"
    before = (sock.stat().st_ino, (home / "taskbus.db").stat().st_mtime_ns)
    second_env = dict(env)
    if endpoint == "other":
        second_env["TASKBUS_ENDPOINT"] = f"tcp://127.0.0.1:{free_port()}"

    second = await asyncio.to_thread(taskbus, second_env, "up", timeout=AT_ONCE_S)

    assert second.returncode == EXIT_IN_USE, second.stderr
    assert second.stderr.splitlines() == [
        f"taskbus: taskbus already runs on {home}: pid {first.pid}, listening on "
        f"{env['TASKBUS_ENDPOINT']}, ipc://{sock}; stop it first"
    ]
    assert (sock.stat().st_ino, (home / "taskbus.db").stat().st_mtime_ns) == before
    over_ipc = load_settings(environ={**env, "TASKBUS_ENDPOINT": f"ipc://{sock}"})
    async with TaskbusClient.connect(over_ipc) as client:
        assert (await client.stats(wait_s=DEADLINE_S))["leader"]
    await terminate(first)


def test_up_on_an_endpoint_in_use_exits_at_once_with_one_line(
    tmp_path: Path, taken_port: int
) -> None:
    env = environment(tmp_path / "home", TASKBUS_ENDPOINT=f"tcp://127.0.0.1:{taken_port}")
    result = taskbus(env, "up", timeout=AT_ONCE_S)
    assert result.returncode == EXIT_IN_USE, result.stderr
    assert result.stderr.splitlines() == [
        f"taskbus: cannot listen on tcp://127.0.0.1:{taken_port}: Address already in use"
    ]


async def test_the_embedding_raises_at_once_when_its_endpoint_is_in_use(
    tmp_path: Path, taken_port: int
) -> None:
    endpoint = f"tcp://127.0.0.1:{taken_port}"
    settings = load_settings(environ={"TASKBUS_HOME": str(tmp_path / "home")})
    with pytest.raises(InUse, match=f"cannot listen on {endpoint}: Address already in use"):
        await asyncio.wait_for(Taskbus(settings, endpoints=[endpoint]).start(), AT_ONCE_S)
    # nothing left open: the same data directory starts (and stops) at once
    async with asyncio.timeout(DEADLINE_S):
        async with Taskbus(settings, endpoints=()) as again:
            assert again.system.status()["store"]["state"] == "running"


async def test_a_second_embedding_on_a_data_directory_is_refused(tmp_path: Path) -> None:
    settings = load_settings(environ={"TASKBUS_HOME": str(tmp_path / "home")})
    async with Taskbus(settings, endpoints=()) as first:
        with pytest.raises(InUse, match=r"already runs on .*: pid \d+, listening on inproc only"):
            await asyncio.wait_for(Taskbus(settings, endpoints=()).start(), AT_ONCE_S)
        assert first.system.status()["store"]["state"] == "running"


def test_a_lock_left_by_a_killed_process_does_not_block_a_start(tmp_path: Path) -> None:
    """The kernel drops a flock with its process: a lock file whose holder was SIGKILLed, still
    naming it, is taken at once."""
    script = (
        "import sys, pathlib; from taskbus.instance import InstanceLock; "
        "InstanceLock(pathlib.Path(sys.argv[1])).acquire(['tcp://127.0.0.1:1']); "
        "print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(InUse, match=f"pid {holder.pid}, listening on tcp://127.0.0.1:1"):
            InstanceLock(tmp_path).acquire([])
        holder.kill()
    assert (tmp_path / "taskbus.lock").read_text()  # still names the dead holder
    lock = InstanceLock(tmp_path)
    lock.acquire([])
    assert lock.held
    lock.release()
