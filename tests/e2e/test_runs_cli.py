"""The run-management commands against one live ``taskbus up`` (real CURVE over tcp, a real
encrypted store), as a user runs them: a task whose run waits for a signal is triggered twice
with one start key (one run), its run is seen waiting (``run list``), signalled (``run signal``)
and seen to succeed (``run show``, ``task logs``); another run is paused, signalled while paused
(held), resumed (it wakes and takes the signal); a third is cancelled, and a signal to it is
refused with one line and exit 1."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.procs import Run, checked_cli, free_port, running_up, until

pytestmark = pytest.mark.timeout(180)

CLASS = "tests.e2e.durable_tasks:AwaitApproval"
NEVER = "0 0 1 1 *"  # fires once a year: the runs here are the triggered ones
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("runs-cli") / "home"
    env = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
        "TASKBUS_SCHEDULER__TASK_MODULES": '["tests.e2e.durable_tasks"]',
        # The suite loads both cores; the executors' load gate would hold runs back meanwhile.
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_RESOURCES__MAX_MEMORY_PERCENT": "100",
    }
    with running_up(env):
        yield checked_cli(env)


def _json(result: Any) -> Any:
    return json.loads(result.stdout)


def _run(cli: Run, task_id: str, run_key: str) -> dict[str, Any]:
    """The run as ``run list --json`` shows it ({} while it has no durable record)."""
    found = _json(cli("run", "list", "--task", task_id, "--json"))
    return next((run for run in found if run["run_key"] == run_key), {})


def _until_state(cli: Run, task_id: str, run_key: str, state: str) -> dict[str, Any]:
    until(lambda: _run(cli, task_id, run_key).get("state") == state, f"{run_key} {state}", 60)
    return _run(cli, task_id, run_key)


def _attempts(cli: Run, task_id: str) -> list[dict[str, Any]]:
    """The task's executions (``task logs --json``), latest first."""
    return list(_json(cli("task", "logs", task_id, "--json")))


def _settled(cli: Run, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's executions once there are ``count``, each with its outcome stored."""

    def stored() -> bool:
        attempts = _attempts(cli, task_id)
        return len(attempts) >= count and all(a["success"] is not None for a in attempts)

    until(stored, f"{count} executions of {task_id} stored", 60)
    return _attempts(cli, task_id)


def _start(cli: Run, task_id: str, *key: str) -> tuple[str, str]:
    """``task trigger TASK_ID [--key K]``: (execution id, run key) of a new run."""
    printed = cli("task", "trigger", task_id, *(("--key", *key) if key else ())).stdout
    found = re.fullmatch(
        rf"triggered {re.escape(task_id)}: execution ({UUID}), run (\S+)\n", printed
    )
    if found is None:  # without a key the run key is not printed: the history has its instant
        [execution_id] = re.findall(UUID, printed)
        return execution_id, ""
    return found[1], found[2]


def test_a_keyed_run_waits_for_its_signal_and_succeeds(cli: Run) -> None:
    cli("task", "create", "user.approval", "--class", CLASS, "--schedule", NEVER)

    execution_id, run_key = _start(cli, "user.approval", "order-17")
    assert run_key.startswith("user.approval@"), run_key
    again = cli("task", "trigger", "user.approval", "--key", "order-17").stdout
    assert again == (
        f"duplicate user.approval: key 'order-17' already started run {run_key} "
        f"(execution {execution_id}); nothing new started\n"
    )

    waiting = _until_state(cli, "user.approval", run_key, "waiting")
    assert (waiting["waiting"], waiting["start_key"], waiting["paused"]) == (
        "approve",
        "order-17",
        False,
    )
    table = cli("run", "list", "--state", "waiting").stdout
    assert re.search(rf"^{re.escape(run_key)}\s+waiting\s+-\s+approve\s", table, re.M), table

    sent = cli("run", "signal", run_key, "approve", "--payload", '{"by": "ana"}').stdout
    assert re.fullmatch(rf"sent approve to {re.escape(run_key)} as signal \d+: \S.*\n", sent), sent

    done = _until_state(cli, "user.approval", run_key, "succeeded")
    assert done["signals"] == 1, done
    attempts = _settled(cli, "user.approval", 2)
    assert {attempt["scheduled_at"] for attempt in attempts} == {attempts[0]["scheduled_at"]}
    assert len(attempts) == 2, attempts  # one run: the keyed trigger, then the wake
    woken, first = attempts
    assert first["execution_id"] == execution_id
    assert first["success"] is True
    assert "suspended" in first["result"], first
    assert (woken["trigger"], woken["success"]) == ("wake", True), woken
    assert woken["result"]["approval"] == {"by": "ana"}, woken

    shown = cli("run", "show", woken["execution_id"]).stdout
    assert re.search(r"^state\s+succeeded$", shown, re.M), shown
    assert re.search(r"^ask\s+ok\s", shown, re.M), shown  # the step kept by the first attempt
    assert re.search(r"^signal:approve#1\s+ok\s", shown, re.M), shown  # the signal, consumed once
    first_shown = cli("run", "show", execution_id).stdout
    assert re.search(r"^state\s+suspended$", first_shown, re.M), first_shown
    logs = cli("task", "logs", "user.approval").stdout
    assert re.search(rf"^{woken['execution_id']}\s+wake\s", logs, re.M), logs

    late = cli("run", "signal", run_key, "approve", expect=1)
    assert late.stderr == (
        f"taskbus: scheduler.run.signal: conflict: run {run_key} is succeeded\n"
    ), late.stderr


def test_a_paused_run_holds_its_signal_until_resumed(cli: Run) -> None:
    cli("task", "create", "user.held", "--class", CLASS, "--schedule", NEVER)
    execution_id, run_key = _start(cli, "user.held", "held-1")
    _until_state(cli, "user.held", run_key, "waiting")

    paused = cli("run", "pause", run_key).stdout
    assert paused == f"paused {run_key}: waiting for approve, paused\n", paused
    cli("run", "signal", execution_id, "approve", "--payload", '"yes"')  # by an execution id
    held = _run(cli, "user.held", run_key)
    assert (held["state"], held["paused"], held["signals"]) == ("waiting", True, 1), held
    assert re.search(rf"^{re.escape(run_key)}\s+waiting\+paused\s", cli("run", "list").stdout, re.M)

    resumed = cli("run", "resume", run_key).stdout
    assert resumed.startswith(f"resumed {run_key}: "), resumed
    _until_state(cli, "user.held", run_key, "succeeded")
    woken = _settled(cli, "user.held", 2)[0]
    assert (woken["trigger"], woken["result"]["approval"]) == ("wake", "yes"), woken


def test_a_cancelled_run_ends_and_refuses_signals(cli: Run) -> None:
    cli("task", "create", "user.dropped", "--class", CLASS, "--schedule", NEVER)
    execution_id, _ = _start(cli, "user.dropped")

    def suspended() -> bool:
        attempts = _attempts(cli, "user.dropped")
        return bool(attempts) and "suspended" in (attempts[0]["result"] or {})

    until(suspended, "the run waiting for its signal", 60)
    cancelled = cli("run", "cancel", execution_id, "--reason", "not needed").stdout
    run_key = cancelled.split()[1].rstrip(":")
    assert cancelled == f"cancelled {run_key}: cancelled\n", cancelled
    assert run_key.startswith("user.dropped@"), run_key

    run = _run(cli, "user.dropped", run_key)
    assert (run["state"], run["reason"]) == ("cancelled", "not needed"), run
    assert cli("run", "cancel", run_key).stdout == cancelled  # again: nothing changes
    refused = cli("run", "signal", run_key, "approve", expect=1)
    assert refused.stderr == (
        f"taskbus: scheduler.run.signal: conflict: run {run_key} is cancelled\n"
    ), refused.stderr
    unknown = cli("run", "cancel", "user.dropped@1", expect=1)
    assert unknown.stderr.startswith("taskbus: scheduler.run.cancel: not_found: "), unknown.stderr
    assert len(_attempts(cli, "user.dropped")) == 1  # never woken, never retried
    cancelled_runs = _json(cli("run", "list", "--state", "cancelled", "--json"))
    assert [found["run_key"] for found in cancelled_runs] == [run_key]
