"""``taskbus task apply -f tasks.toml`` against one live ``taskbus up`` (real CURVE over tcp, a real
encrypted store): the plan printed first, a dry run that changes nothing, the apply that creates,
then a changed file applied with ``--prune`` (an update, a delete, the rest unchanged), and the
code-defined tasks never touched."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Run, checked_cli, free_port, running_up

pytestmark = pytest.mark.timeout(180)

FIRST = """\
[[task]]
task_id = "user.reflect"
task_class = "tasks.reminders:Reminder"
schedule = "0 23 * * *"
timezone = "Europe/Berlin"
config = { message = "time to reflect" }

[[task]]
task_id = "user.water"
task_class = "tasks.reminders:Reminder"
schedule = "@hourly"
config = { message = "drink water" }
"""

SECOND = """\
[[task]]
task_id = "user.reflect"
task_class = "tasks.reminders:Reminder"
schedule = "0 22 * * *"
timezone = "Europe/Berlin"
config = { message = "time to reflect" }
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("apply") / "home"
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
    }
    with running_up(environment):
        yield environment


@pytest.fixture
def cli(env: dict[str, str]) -> Run:
    return checked_cli(env)


def _tasks(cli: Run) -> dict[str, dict[str, Any]]:
    return {task["task_id"]: task for task in json.loads(cli("task", "list", "--json").stdout)}


def test_apply_creates_then_updates_and_prunes(cli: Run, tmp_path: Path) -> None:
    before = _tasks(cli)  # the code-defined tasks
    path = tmp_path / "tasks.toml"
    path.write_text(FIRST, encoding="utf-8")

    dry = cli("task", "apply", "-f", str(path), "--dry-run").stdout.splitlines()
    assert dry[0].startswith("plan: 2 to create, 0 to update, 0 to delete, 0 unchanged")
    assert [line.split()[:3] for line in dry[2:]] == [
        ["+", "user.reflect", "create"],
        ["+", "user.water", "create"],
    ]
    assert _tasks(cli).keys() == before.keys()  # nothing changed

    applied = cli("task", "apply", "-f", str(path)).stdout.splitlines()
    assert applied[-3:] == [
        "created user.reflect",
        "created user.water",
        "applied 2 of 2 changes, 0 failed",
    ]
    tasks = _tasks(cli)
    assert tasks["user.reflect"]["timezone"] == "Europe/Berlin"
    assert tasks["user.water"]["config"] == {"message": "drink water"}
    assert tasks["user.reflect"]["owner"] == "cli"

    again = cli("task", "apply", "-f", str(path)).stdout.splitlines()
    assert again[0] == (
        "plan: 0 to create, 0 to update, 0 to delete, 2 unchanged "
        "(without --prune: tasks not in the file are kept)"
    )
    assert again[-1] == "nothing to change"

    path.write_text(SECOND, encoding="utf-8")
    pruned = cli("task", "apply", "-f", str(path), "--prune").stdout.splitlines()
    assert pruned[0] == "plan: 0 to create, 1 to update, 1 to delete, 0 unchanged"
    assert pruned[-3:] == [
        "updated user.reflect to version 2",
        "deleted user.water",
        "applied 2 of 2 changes, 0 failed",
    ]
    tasks = _tasks(cli)
    assert tasks["user.reflect"]["schedule"] == "0 22 * * *"
    assert "user.water" not in tasks
    assert tasks.keys() - {"user.reflect"} == before.keys()  # code-defined tasks untouched


def test_a_bad_definition_refuses_the_file_naming_its_table(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        FIRST + '\n[[task]]\ntask_id = "user.x"\ntask_class = "a:B"\nschedule = "61 * * * *"\n',
        encoding="utf-8",
    )
    refused = cli("task", "apply", "-f", str(path), expect=1)
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"taskbus: {path}: [[task]] 3 (user.x): schedule:"), line
    assert "user.x" not in _tasks(cli)
