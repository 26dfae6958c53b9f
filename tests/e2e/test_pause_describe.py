"""Pause with a note, limited runs and describe through the CLI, against one live ``taskbus up``
(real processes, CURVE over tcp, a real encrypted store): a paused task does not run and its
passed fires are recorded as missed on unpause; ``--max-runs`` disables a task after its last
fire; ``task show`` marks the DST gaps and folds of the next fires in Europe/Berlin and
Australia/Lord_Howe (whose clocks move by 30 minutes)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.procs import Run, checked_cli, running_up, until, up_environment

pytestmark = pytest.mark.timeout(180)
REMINDER = "tasks.reminders:Reminder"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("pause") / "home"
    environment = up_environment(home)
    with running_up(environment):
        yield environment


@pytest.fixture
def cli(env: dict[str, str]) -> Run:
    return checked_cli(env)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _shown(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """``task show``'s lines as (name, value), in order (names repeat: next fire, action)."""
    return [
        (parts[0], parts[1] if len(parts) > 1 else "")
        for parts in (re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    ]


def _runs(cli: Run, task_id: str) -> list[dict[str, Any]]:
    return list(_json(cli("task", "logs", task_id, "--limit", "200", "--json")))


def test_a_paused_task_does_not_run_and_its_fires_are_missed_on_unpause(cli: Run) -> None:
    cli("task", "create", "user.tick", "--class", REMINDER, "--schedule", "every 1s")
    until(lambda: any(r["success"] for r in _runs(cli, "user.tick")), "user.tick ran")
    paused = cli("task", "pause", "user.tick", "--note", "vendor API down")
    assert paused.stdout == "paused user.tick: vendor API down\n"
    paused_at = datetime.now(UTC)
    [row] = [ln for ln in cli("task", "list").stdout.splitlines() if ln.startswith("user.tick ")]
    assert " paused " in row, row
    shown = _shown(cli("task", "show", "user.tick"))
    assert ("paused", "vendor API down") in shown
    assert ("next fires", "none") in shown
    assert _json(cli("task", "show", "user.tick", "--json"))["task"]["paused"] is True
    # let three instants of the schedule pass while it is paused
    until(lambda: datetime.now(UTC) > paused_at + timedelta(seconds=3), "3 s passed")
    unpaused = cli("task", "unpause", "user.tick")
    match = re.fullmatch(
        r"unpaused user\.tick: (\d+) fires passed while paused, recorded as missed "
        r"\((\S+) \.\. (\S+)\)\n",
        unpaused.stdout,
    )
    assert match, unpaused.stdout
    count, first, last = int(match[1]), datetime.fromisoformat(match[2]), match[3]
    assert count >= 3
    missed = _json(cli("task", "missed", "user.tick", "--json"))
    assert [(m["reason"], m["count"], m["last_at"]) for m in missed] == [
        ("paused: vendor API down", count, last)
    ]
    # it fires again, and nothing ran in the range it was paused for
    until(
        lambda: any(
            datetime.fromisoformat(r["scheduled_at"]) > datetime.fromisoformat(last)
            for r in _runs(cli, "user.tick")
        ),
        "user.tick ran after its unpause",
    )
    during = [
        r
        for r in _runs(cli, "user.tick")
        if first <= datetime.fromisoformat(r["scheduled_at"]) <= datetime.fromisoformat(last)
    ]
    assert during == []
    actions = [
        value for name, value in _shown(cli("task", "show", "user.tick")) if name == "action"
    ]
    assert any(f"paused: paused: vendor API down ({count} fires from" in a for a in actions), (
        actions
    )
    cli("task", "delete", "user.tick")


def test_max_runs_disables_the_task_after_its_last_fire(cli: Run) -> None:
    created = cli(
        "task", "create", "user.thrice", "--class", REMINDER, "--schedule", "every 1s",
        "--max-runs", "3",
    )  # fmt: skip
    assert created.stdout.startswith("created user.thrice: next run")

    def finished() -> bool:
        return not _json(cli("task", "show", "user.thrice", "--json"))["task"]["enabled"]

    until(finished, "user.thrice disabled itself")
    task = _json(cli("task", "show", "user.thrice", "--json"))["task"]
    assert (task["note"], task["fire_count"], task["run_policy"]) == (
        "reached max_runs 3",
        3,
        {"max_runs": 3},
    )
    shown = _shown(cli("task", "show", "user.thrice"))
    assert ("note", "reached max_runs 3") in shown
    assert ("runs left", "3 of max_runs 3 fired") in shown
    assert ("enabled", "no") in shown
    assert len(_runs(cli, "user.thrice")) == 3
    # raised: it runs again, up to the new limit (the count stays)
    cli("task", "update", "user.thrice", "--max-runs", "4")
    cli("task", "enable", "user.thrice")
    until(finished, "user.thrice disabled itself again")
    assert _json(cli("task", "show", "user.thrice", "--json"))["task"]["fire_count"] == 4
    cli("task", "delete", "user.thrice")


def _next_transition(zone: str, *, forward: bool) -> date:
    """The next day on which ``zone``'s offset grows (``forward``, a gap) or shrinks (a fold)."""
    tz = ZoneInfo(zone)
    day = datetime.now(UTC).date() + timedelta(days=1)
    for _ in range(800):
        before = datetime(day.year, day.month, day.day, tzinfo=tz).utcoffset()
        after = (datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)).utcoffset()
        assert before is not None
        assert after is not None
        if (after > before) if forward else (after < before):
            return day
        day += timedelta(days=1)
    raise AssertionError(f"{zone} has no transition in the next 800 days")


GAP, FOLD = "does not exist on {day}: fires at", "occurs twice on {day}: fires at the first"


@pytest.mark.parametrize(
    ("zone", "wall", "forward", "note"),
    [
        ("Europe/Berlin", "02:30", True, f"02:30 {GAP} 03:00 (dst_gap shift)"),
        ("Europe/Berlin", "02:30", False, f"02:30 {FOLD} (UTC+02:00) (dst_fold first)"),
        ("Australia/Lord_Howe", "02:15", True, f"02:15 {GAP} 02:30 (dst_gap shift)"),
        ("Australia/Lord_Howe", "01:45", False, f"01:45 {FOLD} (UTC+11:00) (dst_fold first)"),
    ],
)
def test_show_marks_the_dst_gaps_and_folds_of_the_next_fires(
    cli: Run, zone: str, wall: str, forward: bool, note: str
) -> None:
    day = _next_transition(zone, forward=forward)
    hour, minute = wall.split(":")
    schedule = f"{int(minute)} {int(hour)} {day.day} {day.month} *"
    task_id = f"user.dst_{zone.split('/')[1].lower()}_{'gap' if forward else 'fold'}"
    cli("task", "create", task_id, "--class", REMINDER, "--schedule", schedule, "--tz", zone)
    fires = [
        value
        for name, value in _shown(cli("task", "show", task_id, "--next", "2"))
        if name == "next fire"
    ]
    assert len(fires) == 2, fires
    assert fires[0].endswith(f"DST: {note.format(day=day.isoformat())}"), fires
    assert "DST" not in fires[1]  # a year later: an ordinary day
    described = _json(cli("task", "show", task_id, "--json", "--next", "1"))["next"]
    assert described[0]["note"] == note.format(day=day.isoformat())
    cli("task", "delete", task_id)


def test_bad_pause_and_show_requests_fail_with_one_line(cli: Run) -> None:
    cli("task", "create", "user.quiet", "--class", REMINDER, "--schedule", "every 1h")
    for args, fragments in (
        (("task", "pause", "user.quiet", "--note", "x" * 501), ("invalid", "more than 500")),
        (("task", "pause", "user.never"), ("not_found",)),
        (("task", "unpause", "user.never"), ("not_found",)),
        (("task", "show", "user.quiet", "--next", "0"), ("invalid", "count")),
        (
            (
                "task",
                "create",
                "user.zero",
                "--class",
                REMINDER,
                "--max-runs",
                "0",
                "--schedule",
                "1",
            ),
            ("--max-runs 0",),
        ),
    ):
        result = cli(*args, expect=1)
        [line] = result.stderr.splitlines()
        assert line.startswith("taskbus: "), line
        for fragment in fragments:
            assert fragment in line, (args, line)
    assert _json(cli("task", "show", "user.quiet", "--json"))["task"]["paused"] is False
    cli("task", "delete", "user.quiet")
