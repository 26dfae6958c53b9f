"""``taskbus up --http`` as a user runs it: the shell example of docs/http.md against it, as
written; a remote address refused before anything starts; a taken port one line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import ROOT, free_port, start_taskbus, taskbus, wait_for_line
from tests.e2e.system import READY_S, environment

pytestmark = pytest.mark.timeout(120)

DOC_PORT = "7421"


def shell_example() -> str:
    """The ```sh block of docs/http.md that talks to the API with curl."""
    text = (ROOT / "docs" / "http.md").read_text()
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "curl" in b]
    return str(block)


def json_values(text: str) -> list[Any]:
    """The JSON values ``curl -s`` printed one after another."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


@pytest.fixture
def up_http(tmp_path: Path) -> Iterator[tuple[dict[str, str], int, subprocess.Popen[str]]]:
    env = environment(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    port = free_port()
    child = start_taskbus(env, "up", "--http", f"127.0.0.1:{port}")
    try:
        lines = wait_for_line(child, "http API on", READY_S)
        assert lines[-1].strip() == (
            f"taskbus: http API on http://127.0.0.1:{port} (a token: taskbus keys token <identity>)"
        )
        yield env, port, child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        remaining = child.communicate(timeout=60)[1]
        assert child.returncode == 0, remaining
        assert "Traceback" not in remaining, remaining


async def test_the_docs_shell_example_runs_against_up_http(
    up_http: tuple[dict[str, str], int, subprocess.Popen[str]],
) -> None:
    env, port, _ = up_http
    script = "set -eu\n" + shell_example().replace(DOC_PORT, str(port))
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    created, triggered, got = json_values(result.stdout)
    assert (created["task_id"], created["owner"]) == ("user.reflect", "cli")
    assert triggered["run"].startswith("user.reflect@")
    assert got["task_id"] == "user.reflect"
    assert got["version"] == created["version"]


def test_up_refuses_a_remote_http_address_before_starting(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    result = taskbus(env, "up", "--http", "0.0.0.0:7421")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "taskbus: --http 0.0.0.0: not a loopback address; the API is plain HTTP, so tokens "
        "would cross the network readable. Serve it on 127.0.0.1 behind a TLS proxy, or pass "
        "--http-allow-remote if the network is trusted"
    ]
    assert not (tmp_path / "home" / "taskbus.db").exists()  # nothing started


def test_up_on_a_taken_http_port_stops_with_one_line(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        result = taskbus(env, "up", "--http", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last == f"taskbus: cannot listen on http://127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in result.stderr
