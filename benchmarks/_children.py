"""The child processes a benchmark starts (not a benchmark itself): a free port for them, the
wait for the line a child prints once it is ready, and its stop. ``peers.py`` and ``http.py``
import it as ``benchmarks._children`` (see ``_measure.py`` for how the scripts find it)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

from benchmarks._measure import BenchError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def await_line(child: subprocess.Popen[str], needle: str, timeout_s: float, failed: str) -> None:
    """Reads ``child``'s stderr (a text pipe) until a line contains ``needle``, then goes on
    reading it in a daemon thread, so that a full pipe never blocks the child.

    If stderr ends first, or ``timeout_s`` has passed when a line arrives (the deadline is
    checked between lines), stops the child and raises BenchError: ``failed``, then the last
    2,000 characters it printed."""
    assert child.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = child.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            threading.Thread(target=child.stderr.read, daemon=True).start()
            return
    stop(child)
    raise BenchError(f"{failed} within {timeout_s:g} s: {''.join(seen)[-2000:]}")


def stop(child: subprocess.Popen[Any] | None, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``grace_s``; nothing if it has ended."""
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)
