"""The README, followed as a newcomer would: `taskbus up`, the tour's commands one by one, and the
embedding snippet run exactly as printed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq.auth

from tests.e2e.procs import (
    ROOT,
    free_port,
    running_up,
    start_taskbus,
    taskbus,
    until_ran,
    wait_for_line,
)

pytestmark = pytest.mark.timeout(120)


def _block(language: str, after: str) -> str:
    """The first ``language`` code block after the heading ``after``."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(after) :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"README has no {language} block after {after!r}"
    return match.group(1)


def _tour_commands() -> list[list[str]]:
    lines = _block("sh", "## A five-minute tour").splitlines()
    assert lines[0] == ". .venv/bin/activate"
    return [shlex.split(line)[1:] for line in lines[1:]]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        # The suite loads both cores; the executors' load gate would hold runs back meanwhile.
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
    }


def test_the_tour_creates_a_task_watches_it_run_and_shows_its_history(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with running_up(env) as up:
        outputs: dict[str, str] = {}
        for printed in _tour_commands():
            # The README's reader stops `watch` with Ctrl-C; here it stops after 3 events.
            command = ["watch", "--count", "3"] if printed == ["watch"] else printed
            if command[:2] == ["task", "logs"]:
                until_ran(env, command[2])
            result = taskbus(env, *command)
            assert result.returncode == 0, (command, result.stderr)
            outputs[" ".join(printed[:2])] = result.stdout
        assert "maintenance.log_cleanup" in outputs["task list"]
        assert outputs["task create"].startswith("created user.reflect: next run")
        assert len(outputs["watch"].splitlines()) == 3  # the events; the banner is on stderr
        assert " succeeded " in outputs["task logs"]
        assert "time to reflect" in outputs["task logs"]
        assert "tasks.reminders:Reminder" in outputs["task show"]
        assert outputs["health"].startswith("taskbus is healthy")
        assert outputs["stats"].startswith("leader")
        assert up.poll() is None


def test_the_up_command_creates_keys_and_an_encrypted_store(tmp_path: Path) -> None:
    env = _env(tmp_path)
    home = tmp_path / "home"
    with running_up(env) as up:
        assert (home / "keys" / "identities" / "cli.key_secret").stat().st_mode & 0o777 == 0o600
        assert (home / "keys").stat().st_mode & 0o777 == 0o700
        assert (home / "master.key").stat().st_mode & 0o777 == 0o600
        assert up.poll() is None
    header = (home / "taskbus.db").read_bytes()[:16]
    assert header != b"SQLite format 3\x00"  # encrypted: not a plain SQLite file


def test_the_embedding_snippet_runs_as_printed_twice_in_a_row(tmp_path: Path) -> None:
    snippet = _block("python", "## Embedding taskbus in an application")
    env = _env(tmp_path)
    for run in ("first", "second"):  # the second finds user.reflect stored by the first
        result = subprocess.run(
            [sys.executable, "-c", snippet],
            env=env,
            cwd=tmp_path,  # as in the host application's own directory
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, (run, result.stderr)
        assert result.stdout == "time to reflect\n", run
        assert "Traceback" not in result.stderr
    assert (tmp_path / "home" / "taskbus.db").exists()


def test_the_client_snippet_runs_as_printed_against_a_running_taskbus(tmp_path: Path) -> None:
    snippet = _block("python", "## A client in another process or on another host")
    env = _env(tmp_path)
    with running_up(env):
        result = subprocess.run(
            [sys.executable, "-c", snippet],
            env={key: value for key, value in env.items() if key != "TASKBUS_ENDPOINT"},
            cwd=tmp_path,  # another directory: the client finds taskbus by TASKBUS_HOME
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert "scheduler.task.status.cli user.nightly succeeded" in result.stdout
    assert "True {'topic': 'user.reminder', 'message': 'nightly check'}" in result.stdout


def test_up_prints_what_the_readme_says(tmp_path: Path) -> None:
    env = _env(tmp_path)
    home = tmp_path / "home"
    up = start_taskbus(env, "up")
    try:
        printed = "".join(wait_for_line(up, "actors running:", 30))
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=30)
    assert f"taskbus: data in {home}\n" in printed
    assert f"taskbus: encrypted store at {home / 'taskbus.db'}" in printed
    assert f"{env['TASKBUS_ENDPOINT']}, ipc://{home / 'run' / 'broker.sock'}" in printed
    key_file = home / "keys" / "server" / "broker.key"
    assert f"taskbus: broker public key {key_file}\n" in printed
    public, secret = zmq.auth.load_certificate(key_file)  # the file another host trusts
    assert public
    assert secret is None
    readme = (ROOT / "README.md").read_text()
    assert "the file of the broker's public key (`keys/server/broker.key`)" in readme
