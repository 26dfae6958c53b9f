"""History that tells the truth, through the CLI against one live ``taskbus up``: a run's dispatch,
real start and end kept apart, its trigger shown, a re-created id starting an empty history,
``task show`` in the task's zone with its effective policies, one count of tasks, and what a run
logged through ``ctx.log`` kept with it (``task logs --run``), and a run's steps (``run show``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Run, checked_cli, free_port, running_up, until, wait_for_line
from tests.e2e.step_tasks import RELEASE

pytestmark = pytest.mark.timeout(180)

NAP = "tests.e2e.history_tasks:Nap"
STEPS = "tests.e2e.step_tasks:ThreeSteps"
NEVER = "0 0 1 1 *"  # fires once a year: the runs here are the triggered ones


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    home = tmp_path_factory.mktemp("history") / "home"
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_SCHEDULER__TASK_MODULES": '["tests.e2e.history_tasks", "tests.e2e.step_tasks"]',
    }
    with running_up(environment) as process:
        yield environment, process


@pytest.fixture
def cli(up: tuple[dict[str, str], Any]) -> Run:
    return checked_cli(up[0])


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _finished(cli: Run, task_id: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def done() -> bool:
        found[:] = _json(cli("task", "logs", task_id, "--json"))
        return sum(run["success"] is not None for run in found) >= count

    until(done, f"{count} runs of {task_id} finished")
    return found


def _shown(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``task show``'s ``name  value`` lines as a map."""
    lines = result.stdout.splitlines()
    return {line.split("  ", 1)[0].strip(): line.split("  ", 1)[1].strip() for line in lines}


def test_a_run_that_waited_behind_another_shows_its_own_duration_and_its_trigger(
    cli: Run,
) -> None:
    """Two manual runs of a task that may not overlap and buffers fires: the second waits
    behind the first, then runs 1.5 s of its own; its duration is its run, its wait is shown
    apart."""
    cli(
        "task", "create", "user.nap", "--class", NAP, "--schedule", NEVER, "--overlap", "buffer_all"
    )
    cli("task", "update", "user.nap", "--option", "seconds=1.5")
    cli("task", "trigger", "user.nap")
    cli("task", "trigger", "user.nap")
    first, second = sorted(_finished(cli, "user.nap", 2), key=lambda r: r["run_started_at"])
    assert {first["trigger"], second["trigger"]} == {"trigger"}
    assert first["success"]
    assert second["success"]
    started = datetime.fromisoformat(second["run_started_at"])
    dispatched = datetime.fromisoformat(second["started_at"])
    assert started >= datetime.fromisoformat(first["completed_at"])  # it waited for the first
    assert (started - dispatched).total_seconds() >= 0.3  # the second trigger came ~1 s later
    assert 1.4 <= second["duration_seconds"] < 2.5  # its own 1.5 s, not the wait too
    completed = datetime.fromisoformat(second["completed_at"])
    assert second["duration_seconds"] == pytest.approx((completed - started).total_seconds())

    table = cli("task", "logs", "user.nap").stdout.splitlines()
    assert table[0].split()[:8] == [
        "RUN",
        "TRIGGER",
        "SCHEDULED",
        "STARTED",
        "WAITED",
        "ATTEMPT",
        "STATE",
        "DURATION",
    ]
    [row] = [line for line in table if line.startswith(second["execution_id"])]
    assert re.search(r" trigger .* \d+(ms|\.\ds) +1 +succeeded +(1\.[4-9]|2\.\d)s ", row), row
    # last run counts manual runs too
    assert _shown(cli("task", "show", "user.nap"))["last run"] != "-"
    listing = [line for line in cli("task", "list").stdout.splitlines() if "user.nap" in line]
    assert " ago " in listing[0] or " now " in listing[0], listing


def test_a_deleted_and_re_created_id_starts_an_empty_history(cli: Run) -> None:
    cli("task", "create", "user.again", "--class", NAP, "--schedule", NEVER)
    cli("task", "update", "user.again", "--option", "seconds=0")
    cli("task", "trigger", "user.again")
    _finished(cli, "user.again", 1)
    cli("task", "delete", "user.again")
    cli("task", "create", "user.again", "--class", NAP, "--schedule", NEVER)
    assert cli("task", "logs", "user.again").stdout == "user.again has not run yet\n"
    assert _json(cli("task", "logs", "user.again", "--json")) == []
    shown = _shown(cli("task", "show", "user.again"))
    assert shown["runs"].startswith("0 (0 succeeded")
    assert shown["last run"] == "-"
    [row] = [line for line in cli("task", "list").stdout.splitlines() if "user.again" in line]
    assert re.search(r"\s0\s+-$", row), row  # RUNS 0, no last error


def test_show_prints_times_in_the_task_s_zone_and_the_effective_policies(cli: Run) -> None:
    cli(
        "task",
        "create",
        "user.berlin",
        "--class",
        NAP,
        "--schedule",
        "0 9 * * *",
        "--tz",
        "Europe/Berlin",
        "--misfire",
        "skip",
    )
    shown = _shown(cli("task", "show", "user.berlin"))
    assert re.match(r"\d{4}-\d\d-\d\d 09:00:00 CES?T \+0[12]00 \(in ", shown["next run"]), shown
    assert re.search(r"updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T \+0[12]00", shown["version"])
    assert "mode=skip* grace_s=60.0 catch_up_limit=10" in shown["misfire policy"]
    assert "max_attempts=" in shown["retry policy"]
    assert "base_delay_s=" in shown["retry policy"]
    assert "allow_overlap=False" in shown["run policy"]


def test_stats_counts_the_tasks_list_shows(cli: Run) -> None:
    """One definition: ``tasks`` is every stored task, enabled or not (what ``task list``
    shows an admin); the enabled ones are counted apart."""
    cli("task", "create", "user.off", "--class", NAP, "--schedule", NEVER, "--disabled")
    listed = _json(cli("task", "list", "--json"))
    stats = _json(cli("stats", "--json"))
    assert stats["tasks"] == len(listed)
    assert stats["enabled"] == sum(task["enabled"] for task in listed) < len(listed)
    line = next(ln for ln in cli("stats").stdout.splitlines() if ln.startswith("tasks"))
    assert line.split()[1] == str(len(listed))


def test_what_a_run_logs_is_kept_with_it_and_names_the_task_and_the_run(
    cli: Run, up: tuple[dict[str, str], Any]
) -> None:
    _, process = up
    cli("task", "create", "user.chatty", "--class", NAP, "--schedule", NEVER)
    cli("task", "update", "user.chatty", "--option", "seconds=0", "--option", "lines=250")
    execution_id = cli("task", "trigger", "user.chatty").stdout.split()[-1]
    # the process log names the task and the run
    wait_for_line(process, f"user.chatty [{execution_id}] step 1 of 250", 30)
    _finished(cli, "user.chatty", 1)

    run = _json(cli("task", "logs", "user.chatty", "--run", execution_id, "--json"))
    assert run["execution_id"] == execution_id
    logged = run["logs"]
    assert len(logged) == 200  # bounded per run: the first 199, then how many more
    assert [line["message"] for line in logged[:2]] == ["step 1 of 250", "step 2 of 250"]
    assert logged[-1]["message"].startswith("51 more lines not kept")
    assert {line["level"] for line in logged[:-1]} == {"INFO"}

    shown = cli("task", "logs", "user.chatty", "--run", execution_id).stdout
    assert f"run         {execution_id}" in shown
    assert "trigger     trigger" in shown
    assert "200 log lines" in shown
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} INFO    step 1 of 250$", shown, re.MULTILINE)
    # the run of another task is refused, by name
    cli("task", "create", "user.other", "--class", NAP, "--schedule", NEVER)
    wrong = cli("task", "logs", "user.other", "--run", execution_id, expect=1)
    assert "is of task 'user.chatty'" in wrong.stderr


def test_run_show_lists_a_runs_steps(cli: Run, tmp_path: Path) -> None:
    (tmp_path / RELEASE).touch()  # the run goes through its three steps at once
    cli("task", "create", "user.stepped", "--class", STEPS, "--schedule", NEVER)
    cli("task", "update", "user.stepped", "--option", f"marker_dir={tmp_path}")
    execution_id = cli("task", "trigger", "user.stepped").stdout.split()[-1]
    (run,) = _finished(cli, "user.stepped", 1)
    assert run["success"] is True, run

    shown = cli("run", "show", execution_id).stdout
    assert f"run         {execution_id}" in shown
    assert "task        user.stepped" in shown
    assert "state       succeeded" in shown
    assert "3 steps" in shown
    table = shown[shown.index("NAME") :].splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ATTEMPTS", "STARTED", "TOOK", "SIZE"]
    assert [row.split()[:3] for row in table[1:4]] == [
        ["one", "ok", "1"],
        ["two", "ok", "1"],
        ["three", "ok", "1"],
    ]
    reply = _json(cli("run", "show", execution_id, "--json"))
    assert reply["run"]["execution_id"] == execution_id
    assert [step["name"] for step in reply["steps"]] == ["one", "two", "three"]
    assert all("result" not in step for step in reply["steps"])
    # the same ask serves task logs --run
    assert (
        _json(cli("task", "logs", "user.stepped", "--run", execution_id, "--json"))
        == (reply["run"])
    )
    unknown = cli("run", "show", "00000000-0000-4000-8000-000000000000", expect=1)
    assert "not found" in unknown.stderr
