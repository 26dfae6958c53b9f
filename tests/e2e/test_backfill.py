"""``taskbus task backfill`` against a live ``taskbus up`` (real CURVE over tcp, the real encrypted
store, a real executor): a range where some instants already ran fires only the rest, each once;
asked again it fires nothing; another identity is refused, and so is every bad range, each in
one line on stderr with nothing fired."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus import KeysDirectory
from tests.e2e.procs import Run, checked_cli, running_up, until, up_environment

pytestmark = pytest.mark.timeout(180)

OWNER = "alice"
OTHER = "bob"  # admitted, in no role
TASK = "user.backfilled"
EVERY_S = 2


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("backfill") / "home"
    keys = KeysDirectory(home / "keys")
    keys.broker_keypair(create=True)
    for identity in (OWNER, OTHER):
        keys.identity_keypair(identity, create=True)  # as `taskbus keys init --identity` does
    environment = up_environment(home, TASKBUS_RESOURCES__MAX_MEMORY_PERCENT="100")
    with running_up(environment):
        yield environment


@pytest.fixture
def cli(env: dict[str, str]) -> Run:
    return checked_cli(env)


def _runs(cli: Run) -> list[dict[str, Any]]:
    logs = cli("task", "logs", TASK, "--limit", "200", "--json", "--identity", OWNER)
    return list(json.loads(logs.stdout))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _refused(cli: Run, task_id: str, identity: str, start: str, end: str, *words: str) -> None:
    result: subprocess.CompletedProcess[str] = cli(
        *("task", "backfill", task_id, "--from", start, "--to", end, "--identity", identity),
        expect=1,
    )
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: "), line
    for word in words:
        assert word in line, line


def test_a_range_where_some_instants_ran_fires_only_the_rest(cli: Run) -> None:
    cli(
        *("task", "create", TASK, "--class", "tasks.reminders:Reminder"),
        *("--schedule", f"every {EVERY_S}s", "--option", "message=backfilled"),
        *("--identity", OWNER),
    )
    until(lambda: sum(1 for r in _runs(cli) if r["success"]) >= 3, "three scheduled runs")
    # The range ends at the latest run that ended; the task keeps firing meanwhile, later.
    ended = [r for r in _runs(cli) if r["retry_count"] == 0 and r["success"] is not None]
    end = max(_instant(r["scheduled_at"]) for r in ended)
    start = min(_instant(r["scheduled_at"]) for r in ended) - timedelta(seconds=5 * EVERY_S)
    ran = {_instant(r["scheduled_at"]) for r in ended if start <= _instant(r["scheduled_at"])}
    count = int((end - start).total_seconds()) // EVERY_S + 1
    wanted = [start + timedelta(seconds=EVERY_S * k) for k in range(count)]
    assert ran <= set(wanted)

    bounds = ("--from", start.isoformat(), "--to", end.isoformat())
    _refused(
        cli, TASK, OTHER, *bounds[1::2], "denied", "may not backfill"
    )  # another identity's task
    reply = json.loads(cli("task", "backfill", TASK, *bounds, "--json", "--identity", OWNER).stdout)
    assert reply["instants"] == len(wanted)
    assert reply["already"] == len(ran)
    assert reply["fired"] == len(wanted) - len(ran) >= 5
    assert (reply["first"], reply["last"]) == (start.isoformat(), end.isoformat())
    assert reply["overlap"] == "buffer_all"

    def in_range() -> list[dict[str, Any]]:
        return [r for r in _runs(cli) if start <= _instant(r["scheduled_at"]) <= end]

    until(
        lambda: len(in_range()) == len(wanted) and all(r["success"] for r in in_range()),
        "every instant of the range ran",
    )
    runs = in_range()
    firsts = Counter(_instant(r["scheduled_at"]) for r in runs if r["retry_count"] == 0)
    assert sorted(firsts) == wanted
    assert set(firsts.values()) == {1}  # none twice
    backfilled = {_instant(r["scheduled_at"]) for r in runs if r["trigger"] == "backfill"}
    assert backfilled == set(wanted) - ran

    again = cli("task", "backfill", TASK, *bounds, "--identity", OWNER).stdout
    assert again == (
        f"backfilled {TASK}: {len(wanted)} instants from {start.isoformat()} to "
        f"{end.isoformat()}: 0 fired (overlap buffer_all), {len(wanted)} recorded before and "
        "not fired again\n"
    )
    assert len(in_range()) == len(wanted)


def test_bad_ranges_are_refused_in_one_line(cli: Run) -> None:
    task_id = "user.ranges"
    cli(
        *("task", "create", task_id, "--class", "tasks.reminders:Reminder"),
        *("--schedule", "every 1m"),
    )
    cli(
        *("task", "create", "user.off", "--class", "tasks.reminders:Reminder"),
        *("--schedule", "every 1m", "--disabled"),
    )
    now = datetime.now(UTC)
    hour_ago = (now - timedelta(hours=1)).isoformat()
    _refused(cli, task_id, "cli", now.isoformat(), hour_ago, "invalid", "from: ", "not before")
    later = (now + timedelta(hours=1)).isoformat()
    _refused(cli, task_id, "cli", hour_ago, later, "invalid", "to: ", "is in the future")
    long_ago = (now - timedelta(days=30)).isoformat()
    _refused(cli, task_id, "cli", long_ago, hour_ago, "invalid", "more than 10,000 instants")
    _refused(cli, "user.nobody", "cli", hour_ago, now.isoformat(), "not found")
    _refused(cli, "user.off", "cli", hour_ago, now.isoformat(), "conflict", "is disabled")
    naive = cli(
        *("task", "backfill", task_id, "--from", "2026-01-01T00:00:00", "--to", hour_ago),
        expect=2,
    )
    assert "has no UTC offset" in naive.stderr
    for refused in (task_id, "user.off"):
        logs = json.loads(cli("task", "logs", refused, "--json").stdout)
        assert [run for run in logs if run["trigger"] == "backfill"] == []  # nothing fired
