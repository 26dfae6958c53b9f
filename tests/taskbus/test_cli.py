"""``taskbus actor`` with a bad spec or missing keys: one line on stderr, non-zero, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def taskbus(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbus", *args],
        env={**os.environ, "TASKBUS_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nosuch",
            "taskbus: unknown actor 'nosuch': use a built-in name (executor-agency, "
            "executor-agent, executor-maintenance, executor-security, executor-user, health, "
            "scheduler, store) or module:Class",
        ),
        ("nosuch.module:Thing", "taskbus: cannot load actor 'nosuch.module:Thing': No module"),
        ("tests.actors.sample:Missing", "taskbus: cannot load actor 'tests.actors.sample:Missing'"),
        ("collections:OrderedDict", "taskbus: 'collections:OrderedDict' is not an Actor subclass"),
    ],
)
def test_a_bad_actor_spec_is_one_line_and_exit_1(tmp_path: Path, spec: str, message: str) -> None:
    result = taskbus(tmp_path, "actor", spec, "--connect", "tcp://127.0.0.1:1")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(message), line


def test_a_known_actor_without_keys_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = taskbus(tmp_path, "actor", "health", "--connect", "tcp://127.0.0.1:1")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: cannot read key file ")
    assert str(tmp_path / "keys" / "server" / "broker.key") in line
    assert "Traceback" not in result.stderr
