"""What a host application imports is one package with an ``__all__``, and ``python -m taskbus``
is the ``taskbus`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import taskbus
from bus import Refused
from taskbus.client import TaskbusClient
from taskbus.embedding import Taskbus
from tasks import BaseTask, TaskContext, TaskResult

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_exported_and_is_the_one_class() -> None:
    for name in taskbus.__all__:
        assert hasattr(taskbus, name), name
    assert taskbus.Taskbus is Taskbus
    assert taskbus.TaskbusClient is TaskbusClient
    assert (taskbus.BaseTask, taskbus.TaskContext, taskbus.TaskResult) == (
        BaseTask,
        TaskContext,
        TaskResult,
    )
    assert taskbus.Refused is Refused  # one refusal family, not a second class of that name
    assert sorted(taskbus.__all__) == taskbus.__all__


def test_python_m_taskbus_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskbus", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: taskbus ")
    for noun in ("up", "actor", "keys", "task", "stats", "health", "watch", "store"):
        assert noun in result.stdout
