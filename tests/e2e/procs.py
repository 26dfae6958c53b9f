"""Helpers of the end-to-end tests (not collected): running ``taskbus`` and reading what a child
process prints."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wait_for_line(process: subprocess.Popen[str], needle: str, deadline_s: float) -> list[str]:
    """The child's stderr lines up to the first one containing ``needle``, which ends the list.

    Fails, quoting every line read, if stderr ends first or ``deadline_s`` has passed when a line
    arrives (the deadline is checked between lines: a silent child blocks the read).
    """
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not printed; got: {''.join(seen)}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def taskbus(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``taskbus <args>`` run to completion, as a user would from a shell."""
    return subprocess.run(
        [sys.executable, "-m", "taskbus", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def start_taskbus(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``taskbus <args>`` as a child process; its stderr is piped for ``wait_for_line``."""
    return subprocess.Popen(
        [sys.executable, "-m", "taskbus", *args],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


@contextlib.contextmanager
def running_up(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``taskbus up`` until the block ends, then SIGTERM; fails if it did not stop cleanly."""
    up = start_taskbus(env, "up")
    try:
        wait_for_line(up, "actors running:", 30)
        yield up
    finally:
        up.send_signal(signal.SIGTERM)
        remaining = up.communicate(timeout=30)[1]
    assert up.returncode == 0, remaining


def up_environment(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a test's own ``taskbus up``: its home, a free tcp port, UTC, the load
    gate off (the suite loads both cores; the executors' gate would hold runs back meanwhile),
    and ``settings`` (``TASKBUS_...`` variables) on top."""
    return {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        **settings,
    }


Run = Callable[..., subprocess.CompletedProcess[str]]


def checked_cli(env: dict[str, str]) -> Run:
    """``run(*args, expect=0)``: the CLI against ``env``'s taskbus, its exit code checked and no
    traceback on stderr."""

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = taskbus(env, *args)
        assert result.returncode == expect, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run


def until(check: Callable[[], bool], what: str, deadline_s: float = 30) -> None:
    """Return once ``check()`` holds; fail naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {deadline_s}s: {what}")
        time.sleep(0.1)


def until_ran(env: dict[str, str], task_id: str, deadline_s: float = 30) -> None:
    """Return once ``task logs`` shows a successful run of ``task_id``."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = taskbus(env, "task", "logs", task_id, "--json")
        if found.returncode == 0 and any(run["success"] for run in json.loads(found.stdout)):
            return
        assert time.monotonic() < deadline, f"{task_id} did not run: {found.stderr}"
        time.sleep(0.2)
