"""Helpers of the end-to-end tests (not collected): reading what a child process prints."""

from __future__ import annotations

import subprocess
import time


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
