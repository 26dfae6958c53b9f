"""``taskbus task create`` against a live ``taskbus up``: a mistyped class or option is refused
with a suggestion, a duplicate id is ``exists``; each one line on stderr, exit 1."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.procs import free_port, running_up, taskbus

pytestmark = pytest.mark.timeout(180)

REMINDER = "tasks.reminders:Reminder"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("catalogue") / "home"
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
    }
    with running_up(environment):
        yield environment


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: "), line
    return line


def _create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return taskbus(env, "task", "create", *args, "--schedule", "@yearly")


def _checked(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A create once the scheduler knows the user executors' classes: one accepted unchecked
    (the executors' announcement still on its way) is deleted and tried again."""
    deadline = time.monotonic() + 30
    while True:
        result = _create(env, *args)
        if "not checked" not in result.stderr or time.monotonic() > deadline:
            return result
        assert taskbus(env, "task", "delete", args[0]).returncode == 0
        time.sleep(0.2)


def test_a_mistyped_class_or_option_is_refused_with_a_suggestion(env: dict[str, str]) -> None:
    line = _error_line(_checked(env, "user.x", "--class", "tasks.reminders:Remindr"))
    assert line == (
        "taskbus: scheduler.task.create: invalid: task_class: 'tasks.reminders:Remindr' is not "
        "a task class of the 'user' executors; did you mean 'tasks.reminders:Reminder'?"
    )
    line = _error_line(_checked(env, "user.x", "--class", REMINDER, "--option", "mesage=hi"))
    assert line.endswith(
        f"config.mesage: {REMINDER} has no option 'mesage'; did you mean 'message'?"
    )
    assert taskbus(env, "task", "show", "user.x").returncode != 0  # nothing was stored


def test_a_duplicate_id_is_exists(env: dict[str, str]) -> None:
    assert _checked(env, "user.twice", "--class", REMINDER).returncode == 0
    line = _error_line(_create(env, "user.twice", "--class", REMINDER))
    assert line == (
        "taskbus: scheduler.task.create: exists: task 'user.twice' already exists; use task update"
    )
