"""The CLI as a newcomer meets it, against one real ``taskbus up``: a second terminal without
``TASKBUS_ENDPOINT`` finds the running system through the ipc socket in its data directory,
global options work after the command, a system that is not running is reported at once with
a hint, and ``watch`` prints what a person or a program can read."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import free_port, running_up, taskbus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment ``taskbus up`` runs with: its own data directory and tcp endpoint."""
    home = tmp_path_factory.mktemp("first-steps") / "home"
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        # The suite loads both cores; the executors' load gate would hold runs back meanwhile.
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
    }
    with running_up(environment):
        yield environment


def _second_terminal(env: dict[str, str], **changes: str) -> dict[str, str]:
    """A terminal opened after ``scripts/up``: no ``TASKBUS_ENDPOINT`` exported."""
    terminal = {key: value for key, value in env.items() if key != "TASKBUS_ENDPOINT"}
    return {**terminal, **changes}


def test_without_an_endpoint_the_cli_uses_the_ipc_socket_in_the_data_directory(
    env: dict[str, str],
) -> None:
    home = env["TASKBUS_HOME"]
    assert (Path(home) / "run" / "broker.sock").is_socket()
    listed = taskbus(_second_terminal(env), "task", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "maintenance.log_cleanup" in {task["task_id"] for task in json.loads(listed.stdout)}


def test_global_options_are_accepted_after_the_command(env: dict[str, str]) -> None:
    terminal = _second_terminal(env, TASKBUS_HOME="")  # the data directory only from --home
    listed = taskbus(
        terminal, "task", "list", "--home", env["TASKBUS_HOME"], "--log-level", "error"
    )
    assert listed.returncode == 0, listed.stderr
    assert "maintenance.log_cleanup" in listed.stdout


def test_nothing_listening_fails_at_once_with_a_hint(tmp_path: Path) -> None:
    env = {**os.environ, "TASKBUS_HOME": str(tmp_path), "TASKBUS_ENDPOINT": ""}
    assert taskbus(env, "keys", "init").returncode == 0  # keys as a stopped taskbus left them
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = taskbus({**env, "TASKBUS_ENDPOINT": endpoint}, "task", "list")
    elapsed = time.monotonic() - began
    assert result.returncode == 5, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"taskbus: no taskbus answers at {endpoint} (connection refused)")
    assert "is taskbus running? start it with scripts/up" in line
    assert elapsed < 3, elapsed  # not the ask timeout (5 s): a refused connect is known at once


def _ticking(env: dict[str, str]) -> None:
    """A reminder that runs every second, created once for the module's watch tests."""
    listed = taskbus(env, "task", "show", "user.tick")
    if listed.returncode == 0:
        return
    created = taskbus(
        env, "task", "create", "user.tick", "--class", "tasks.reminders:Reminder",
        "--schedule", "every 1s", "--option", "message=tick",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr


def test_watch_json_prints_json_lines_only(env: dict[str, str]) -> None:
    _ticking(env)
    result = taskbus(env, "watch", "--json", "--count", "8")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 8, result.stdout
    events = [json.loads(line) for line in lines]  # every line parses on its own
    assert all(isinstance(event, dict) and event["topic"] for event in events)
    assert {"queued", "started", "succeeded"} & {event.get("state") for event in events}
    for event in events:  # the types docs/protocol.md#status-events gives
        if event.get("execution_id") is not None:
            assert isinstance(event["execution_id"], str)
            assert isinstance(event["attempt"], int)
        if event.get("state") == "queued" and event["sender"] == "scheduler":
            assert isinstance(event["coalesced"], int)
            assert event["reason"] in {"schedule", "trigger", "retry", "catch-up"}
    assert result.stderr.startswith("watching scheduler.task.status")  # the banner


def test_watch_shows_each_transition_once_and_health_only_when_it_changes(
    env: dict[str, str],
) -> None:
    _ticking(env)
    # Long enough for the health actor's periodic publication (every 5 s) to arrive unchanged.
    result = taskbus(env, "watch", "--count", "24")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 24
    health = [line for line in lines if " scheduler.health " in line]
    assert len(health) <= 1, health  # healthy throughout: shown once at most
    seen: set[tuple[str, str]] = set()
    for line in lines:
        if " scheduler.task.status." not in line:
            continue
        state = line.split()[3]
        [run] = [word for word in line.split() if word.startswith("execution_id=")]
        assert (run, state) not in seen, f"{state} twice for {run}:\n{result.stdout}"
        seen.add((run, state))
    assert any(state == "queued" for _, state in seen)
