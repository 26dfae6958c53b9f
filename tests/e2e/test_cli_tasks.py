"""Every CLI command that talks to a running system, run as a subprocess against one live
``taskbus up`` (real CURVE over tcp, a real encrypted store), including the error paths: each
failure is one line on stderr with its exit code, never a traceback."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import (
    ROOT,
    Run,
    checked_cli,
    free_port,
    running_up,
    taskbus,
    until,
    up_environment,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("cli") / "home"
    environment = up_environment(home)
    with running_up(environment):
        yield environment


@pytest.fixture
def cli(env: dict[str, str]) -> Run:
    return checked_cli(env)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: "), line
    for fragment in fragments:
        assert fragment in line, line


def test_create_then_see_it_run_in_list_show_and_logs(cli: Run) -> None:
    created = cli(
        "task",
        "create",
        "user.reflect",
        "--class",
        "tasks.reminders:Reminder",
        "--schedule",
        "every 1s",
        "--tz",
        "Europe/Berlin",
        "--option",
        "message=time to reflect",
        "--misfire",
        "skip",
        "--retries",
        "2",
        "--run-timeout",
        "30",
        "--overlap",  # a run slowed past the next second by a loaded machine is not skipped
        "buffer_all",
    )
    assert re.fullmatch(r"created user\.reflect: next run (now|in \ds)\n", created.stdout)

    def ran_twice() -> bool:
        runs = _json(cli("task", "logs", "user.reflect", "--json"))
        return sum(run["success"] is True for run in runs) >= 2

    until(ran_twice, "user.reflect ran twice")
    logs = cli("task", "logs", "user.reflect").stdout.splitlines()
    assert logs[0].split() == [
        "RUN",
        "TRIGGER",
        "SCHEDULED",
        "STARTED",
        "WAITED",
        "ATTEMPT",
        "STATE",
        "DURATION",
        "RESULT",
        "/",
        "ERROR",
    ]
    succeeded = [line for line in logs[1:] if " succeeded " in line]
    assert len(succeeded) >= 2
    assert all('"message": "time to reflect"' in line for line in succeeded)
    assert cli("task", "missed", "user.reflect").stdout == "user.reflect has missed no fire\n"
    assert _json(cli("task", "missed", "user.reflect", "--json")) == []

    listing = cli("task", "list").stdout.splitlines()
    assert listing[0].split()[:7] == [
        "ID",
        "SCHEDULE",
        "TIMEZONE",
        "ENABLED",
        "LAST",
        "RUN",
        "NEXT",
    ]
    [row] = [line for line in listing if line.startswith("user.reflect ")]
    assert re.search(
        r"every 1s\s+Europe/Berlin\s+yes\s+(\d+s ago|now)\s+(now|in \ds)\s+\d+\s+-$", row
    ), row
    builtins = {line.split()[0] for line in listing[1:]} - {"user.reflect"}
    assert builtins == {
        "agency.daily_digest",
        "maintenance.database_vacuum",
        "maintenance.health_check",
        "maintenance.log_cleanup",
        "security.key_rotation",
    }

    shown = dict(
        re.split(r"\s{2,}", line, maxsplit=1)
        for line in cli("task", "show", "user.reflect").stdout.splitlines()
    )
    assert shown["class"] == "tasks.reminders:Reminder"
    assert shown["schedule"] == "every 1s  (Europe/Berlin)"
    assert shown["enabled"] == "yes"
    # the effective policies, * marking what the task sets over the defaults
    assert shown["misfire policy"] == "mode=skip* grace_s=60.0 catch_up_limit=10"
    assert "max_attempts=3*" in shown["retry policy"]
    assert "timeout_s=30.0*" in shown["run policy"]
    assert shown["options"] == '{"message": "time to reflect"}'
    assert shown["owner"] == "cli"
    assert re.match(r"\d+ \(\d+ succeeded, 0 failed, [01] running\)", shown["runs"])

    as_json = _json(cli("task", "show", "user.reflect", "--json"))
    assert as_json["task"]["task_id"] == "user.reflect"
    assert as_json["next_fire"] is not None
    cli("task", "delete", "user.reflect")


def test_update_enable_disable_reset_trigger_delete(cli: Run) -> None:
    cli(
        "task",
        "create",
        "user.note",
        "--class",
        "tasks.reminders:Reminder",
        "--schedule",
        "@yearly",
        "--option",
        "message=a",
    )
    # Daily at the hour half a day from now (UTC), so its next run is always 11-12 hours away
    # whatever the time of day the suite runs at (a fixed 23:00 read "52m" at 22:08).
    daily = f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"
    updated = cli(
        "task",
        "update",
        "user.note",
        "--option",
        "topic=user.agent",
        "--schedule",
        daily,
        "--tz",
        "UTC",
    )
    assert updated.stdout == "updated user.note to version 2\n"
    task = _json(cli("task", "show", "user.note", "--json"))["task"]
    assert task["config"] == {"message": "a", "topic": "user.agent"}  # merged, not replaced
    assert task["schedule"] == daily
    cli("task", "update", "user.note", "--replace-options", "--option", "message=b")
    assert _json(cli("task", "show", "user.note", "--json"))["task"]["config"] == {"message": "b"}

    assert cli("task", "disable", "user.note").stdout == "disabled user.note\n"
    [row] = [
        line for line in cli("task", "list").stdout.splitlines() if line.startswith("user.note ")
    ]
    assert " no " in row
    in_half_a_day = r"user\.note: next run in 1[012]h( \d+m)?\n"
    assert re.fullmatch("enabled " + in_half_a_day, cli("task", "enable", "user.note").stdout)
    assert re.fullmatch("reset " + in_half_a_day, cli("task", "reset", "user.note").stdout)

    triggered = cli("task", "trigger", "user.note").stdout
    execution_id = re.fullmatch(r"triggered user\.note: execution (\S+)\n", triggered)
    assert execution_id
    until(
        lambda: any(
            run["execution_id"] == execution_id.group(1) and run["success"] is True
            for run in _json(cli("task", "logs", "user.note", "--json"))
        ),
        "the triggered run stored",
    )
    assert cli("task", "delete", "user.note").stdout == "deleted user.note\n"
    gone = cli("task", "show", "user.note", expect=1)
    _one_error_line(gone, "not_found", "'user.note'")


def test_stats_health_and_store_check(cli: Run) -> None:
    stats = cli("stats").stdout
    assert re.search(r"^leader\s+scheduler@", stats, re.M), stats
    assert re.search(r"^tasks\s+\d+ \(\d+ enabled, \d+ scheduled\)", stats, re.M), stats
    assert _json(cli("stats", "--json"))["lease_token"] >= 1
    health = cli("health")
    assert health.stdout.startswith("taskbus is healthy\n")
    actors = {line.split()[0] for line in health.stdout.splitlines()[2:]}
    assert {"store", "scheduler", "health", "executor-user"} <= actors
    assert _json(cli("health", "--json"))["status"] == "healthy"
    assert cli("store", "check").stdout == "store integrity: ok\n"


def test_watch_prints_events_until_interrupted(env: dict[str, str], cli: Run) -> None:
    cli(
        "task",
        "create",
        "user.watched",
        "--class",
        "tasks.reminders:Reminder",
        "--schedule",
        "@yearly",
    )
    watch = subprocess.Popen(
        [sys.executable, "-m", "taskbus", "watch", "--topic", "scheduler.task.status"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = _Lines(watch)
    try:
        assert watch.stderr is not None  # the banner, once subscribed, goes to stderr
        banner = iter(watch.stderr.readline, "")
        assert any(line.startswith("watching scheduler.task.status") for line in banner)
        cli("task", "trigger", "user.watched")
        states: list[str] = []
        while "succeeded" not in states:
            line = lines.next()
            if " user.watched " in line:
                states.append(line.split()[3])
        assert states[0] == "queued"
        assert "started" in states
        watch.send_signal(signal.SIGINT)
        remaining = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate(timeout=30)
    assert watch.returncode == 0, remaining
    cli("task", "delete", "user.watched")


class _Lines:
    """A child's stdout lines, read by a thread: ``next`` waits with a deadline. (select() on
    the pipe would miss lines already read into the file object's buffer.)"""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [self._lines.put(x) for x in stdout], daemon=True).start()

    def next(self, deadline_s: float = 30) -> str:
        try:
            return self._lines.get(timeout=deadline_s)
        except queue.Empty:
            raise AssertionError(f"no output within {deadline_s}s") from None


def test_watch_count_and_json(cli: Run, env: dict[str, str]) -> None:
    cli(
        "task",
        "create",
        "user.counted",
        "--class",
        "tasks.reminders:Reminder",
        "--schedule",
        "every 1s",
    )
    result = cli("watch", "--topic", "scheduler.task.status", "--count", "2", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines only
    assert len(events) == 2
    assert all(event["topic"] == "scheduler.task.status.cli" for event in events)  # the owner's
    cli("task", "delete", "user.counted")


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (
            (
                "task",
                "create",
                "user.bad",
                "--class",
                "tasks.reminders:Reminder",
                "--schedule",
                "61 * * * *",
            ),
            1,
            ("invalid", "minute '61'"),
        ),
        (
            (
                "task",
                "create",
                "user.bad",
                "--class",
                "tasks.reminders:Reminder",
                "--schedule",
                "@daily",
                "--tz",
                "Mars/Olympus",
            ),
            1,
            ("invalid", "Mars/Olympus"),
        ),
        (
            (
                "task",
                "create",
                "maintenance.mine",
                "--class",
                "tasks.reminders:Reminder",
                "--schedule",
                "@daily",
            ),
            1,
            ("denied",),
        ),
        (
            (
                "task",
                "create",
                "user.bad",
                "--class",
                "tasks.reminders:Reminder",
                "--schedule",
                "@daily",
                "--option",
                "novalue",
            ),
            1,
            ("--option 'novalue'", "KEY=VALUE"),
        ),
        (
            (
                "task",
                "create",
                "user.bad",
                "--class",
                "tasks.reminders:Reminder",
                "--schedule",
                "@daily",
                "--retries",
                "-1",
            ),
            1,
            ("--retries -1",),
        ),
        (
            ("task", "delete", "maintenance.log_cleanup"),
            1,
            ("denied", "can be disabled, not deleted"),
        ),
        (("task", "show", "user.never"), 1, ("not_found",)),
        (("task", "logs", "user.never"), 1, ("not_found",)),
        (("task", "missed", "user.never"), 1, ("not_found",)),
        (("task", "trigger", "user.never"), 1, ("not_found",)),
        (("task", "show", "NotAnId"), 1, ("invalid", "task_id")),
        (("task", "update", "maintenance.log_cleanup"), 1, ("nothing to change",)),
        (
            ("task", "update", "maintenance.log_cleanup", "--class", "tasks.reminders:Reminder"),
            1,
            ("denied", "task_class cannot change"),
        ),
    ],
    ids=lambda value: value if isinstance(value, int) else None,
)
def test_refusals_are_one_line_with_exit_code(
    cli: Run, args: tuple[str, ...], code: int, fragments: tuple[str, ...]
) -> None:
    _one_error_line(cli(*args, expect=code), *fragments)
    listed = {task["task_id"] for task in _json(cli("task", "list", "--json"))}
    assert not any(name.startswith("user.bad") or name == "maintenance.mine" for name in listed)


def test_usage_errors_exit_2(cli: Run) -> None:
    assert "invalid choice" in cli("task", "explode", expect=2).stderr
    assert "--class" in cli("task", "create", "user.x", "--schedule", "@daily", expect=2).stderr


def test_unreachable_and_unauthorised_exit_5(env: dict[str, str], cli: Run, tmp_path: Path) -> None:
    elsewhere = cli(
        "task", "list", "--connect", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1", expect=5
    )
    _one_error_line(elsewhere, "no taskbus answers")
    cli("keys", "new", "stranger")  # a keypair the broker never admitted
    refused = cli("task", "list", "--identity", "stranger", "--timeout", "1", expect=5)
    _one_error_line(refused, "not authorised or unreachable")
    fresh = taskbus({**env, "TASKBUS_HOME": str(tmp_path / "empty")}, "task", "list")
    assert fresh.returncode == 5, fresh.stderr
    _one_error_line(fresh, "no keypair for identity 'cli'", "taskbus up")
