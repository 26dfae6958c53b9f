"""Dependencies between tasks through the CLI against one live ``taskbus up`` (real processes,
real CURVE over tcp, a real encrypted store, the executors of the ``user`` category): a chain
and a diamond run each fire of a task only after its dependencies' runs for the same instant
ended succeeded; a failed dependency blocks the fire, naming it; cycles, unknown dependencies
and the delete of a task others depend on are refused in one line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.procs import Run, checked_cli, running_up, until, up_environment

pytestmark = pytest.mark.timeout(240)

WORK = "tests.e2e.dependency_tasks:Work"
EVERY = "every 5s"  # every task fires at the same instants (the epoch anchors intervals)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("dependencies") / "home"
    environment = up_environment(
        home, TASKBUS_SCHEDULER__TASK_MODULES='["tests.e2e.dependency_tasks"]'
    )
    with running_up(environment):
        yield environment


@pytest.fixture
def cli(env: dict[str, str]) -> Run:
    return checked_cli(env)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def create(cli: Run, task_id: str, *deps: str, seconds: float = 1.0, fail: bool = False) -> None:
    flags = [f"--depends-on={dep}" for dep in deps]
    options = [f"--option=seconds={seconds}", f"--option=fail={json.dumps(fail)}"]
    cli(
        "task",
        "create",
        task_id,
        "--class",
        WORK,
        "--schedule",
        EVERY,
        "--retries",
        "0",
        *options,
        *flags,
    )


def runs_by_instant(cli: Run, task_id: str) -> dict[str, dict[str, Any]]:
    """The task's finished runs, by their scheduled instant."""
    runs = _json(cli("task", "logs", task_id, "--json", "--limit", "100"))
    return {run["scheduled_at"]: run for run in runs if run["success"] is not None}


def common_instant(cli: Run, *task_ids: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The earliest instant at which every task has a finished run, and those runs."""
    found: list[tuple[str, dict[str, dict[str, Any]]]] = []

    def done() -> bool:
        runs = {task_id: runs_by_instant(cli, task_id) for task_id in task_ids}
        common = set.intersection(*(set(by) for by in runs.values()))
        if not common:
            return False
        instant = min(common)
        found.append((instant, {task_id: runs[task_id][instant] for task_id in task_ids}))
        return True

    until(done, f"{', '.join(task_ids)} all ran for one instant", 90)
    return found[-1]


def at(run: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(run[field])


def stop(cli: Run, *task_ids: str) -> None:
    for task_id in task_ids:
        cli("task", "disable", task_id)


def test_a_chain_runs_each_task_after_its_dependency_succeeded(cli: Run) -> None:
    create(cli, "user.chain_a")
    create(cli, "user.chain_b", "user.chain_a")
    create(cli, "user.chain_c", "user.chain_b")
    try:
        _, runs = common_instant(cli, "user.chain_a", "user.chain_b", "user.chain_c")
    finally:
        stop(cli, "user.chain_a", "user.chain_b", "user.chain_c")
    a, b, c = runs["user.chain_a"], runs["user.chain_b"], runs["user.chain_c"]
    assert [run["success"] for run in (a, b, c)] == [True, True, True], runs
    assert at(b, "run_started_at") >= at(a, "completed_at")  # b waited for a's 1 s of work
    assert at(c, "run_started_at") >= at(b, "completed_at")


def test_a_diamond_runs_the_join_after_both_branches(cli: Run) -> None:
    create(cli, "user.dia_a")
    create(cli, "user.dia_b", "user.dia_a")
    create(cli, "user.dia_c", "user.dia_a", seconds=2.0)
    create(cli, "user.dia_d", "user.dia_b", "user.dia_c", seconds=0.1)
    names = ("user.dia_a", "user.dia_b", "user.dia_c", "user.dia_d")
    try:
        _, runs = common_instant(cli, *names)
    finally:
        stop(cli, *names)
    a, b, c, d = (runs[name] for name in names)
    assert all(run["success"] for run in (a, b, c, d)), runs
    for branch in (b, c):
        assert at(branch, "run_started_at") >= at(a, "completed_at")
    assert at(d, "run_started_at") >= max(at(b, "completed_at"), at(c, "completed_at"))


def test_a_failed_dependency_blocks_the_fire_naming_it(cli: Run) -> None:
    create(cli, "user.fails", seconds=0.1, fail=True)
    create(cli, "user.after", "user.fails", seconds=0.1)
    try:
        instant, runs = common_instant(cli, "user.fails", "user.after")
    finally:
        stop(cli, "user.fails", "user.after")
    assert runs["user.fails"]["success"] is False
    blocked = runs["user.after"]
    assert blocked["success"] is False
    assert blocked["run_started_at"] is None  # it never ran
    reason = blocked["error_message"]
    assert reason.startswith(f"blocked: dependency user.fails failed for {instant}: "), reason
    assert "the work failed on purpose" in reason


def test_cycles_unknown_dependencies_and_deletes_are_refused_in_one_line(cli: Run) -> None:
    create(cli, "user.ref_a")
    create(cli, "user.ref_b", "user.ref_a")
    stop(cli, "user.ref_a", "user.ref_b")
    cycle = cli("task", "update", "user.ref_a", "--depends-on", "user.ref_b", expect=1)
    [line] = cycle.stderr.splitlines()
    assert "closes a cycle: user.ref_a -> user.ref_b -> user.ref_a" in line, line
    unknown = cli(
        "task",
        "create",
        "user.ref_x",
        "--class",
        WORK,
        "--schedule",
        EVERY,
        "--depends-on",
        "user.nope",
        expect=1,
    )
    [line] = unknown.stderr.splitlines()
    assert "'user.nope': no such task" in line, line
    refused = cli("task", "delete", "user.ref_a", expect=1)
    [line] = refused.stderr.splitlines()
    assert "user.ref_b depends on it" in line, line
    shown = _json(cli("task", "show", "user.ref_b", "--json"))
    assert shown["task"]["run_policy"]["depends_on"] == ["user.ref_a"]
    cli("task", "update", "user.ref_b", "--no-depends-on")
    cli("task", "delete", "user.ref_a")
