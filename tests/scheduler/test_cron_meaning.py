"""A schedule stored under the old cron reading (croniter's own, before taskbus followed Vixie
cron) whose meaning changed: the scheduler logs it once per task when it loads the task, with the
old and the new fire, and the task's status (``task show``) carries the note until the task is
written again. Against the real store: the row is set back to the old rules as a store from
before schema version 5 would have it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from actors.scheduling import definitions
from config.sections import SchedulerSettings
from store import LibsqlStore
from store.records import TaskRecord
from tests.scheduler.rig import Rig, stop_cleanly

MONDAYS = "0 9 * * 1-1"  # croniter read an equal range as the whole field: every day


def record(schedule: str, cron_rules: int) -> TaskRecord:
    at = datetime(2026, 8, 7, tzinfo=UTC)  # a Friday
    return TaskRecord(
        task_id="user.weekly",
        task_class="ticks:Tick",
        schedule=schedule,
        config={},
        enabled=True,
        timezone="UTC",
        misfire_policy=None,
        retry_policy=None,
        run_policy=None,
        owner="tester",
        created_at=at,
        updated_at=at,
        last_run=None,
        next_run=None,
        version=1,
        accounted_through=at,
        cron_rules=cron_rules,
    )


def note(schedule: str, cron_rules: int) -> str | None:
    task = definitions.compile_task(record(schedule, cron_rules), SchedulerSettings())
    return definitions.meaning_note(task, datetime(2026, 8, 7, tzinfo=UTC))


def test_the_note_names_the_first_fire_that_differs_old_and_new() -> None:
    assert note(MONDAYS, 1) == (
        "schedule '0 9 * * 1-1' now reads as Vixie cron does (docs/scheduling.md#cron-semantics): "
        "its first fire that differs is 2026-08-10T09:00:00+00:00, which was "
        "2026-08-07T09:00:00+00:00 when the schedule was stored; any update of the task clears "
        "this note"
    )


@pytest.mark.parametrize(
    ("schedule", "cron_rules"),
    [
        (MONDAYS, 2),  # written under today's rules: it means what it says
        ("0 9 * * 1", 1),  # the same under both readings
        ("@daily", 1),
        ("every 5m", 1),  # not cron
    ],
)
def test_no_note_where_nothing_changed(schedule: str, cron_rules: int) -> None:
    assert note(schedule, cron_rules) is None


async def _set_old_rules(rig: Rig, task_id: str) -> None:
    store = rig.system.instance("store").store  # type: ignore[union-attr]
    assert isinstance(store, LibsqlStore)
    await store._running.write(
        lambda connection: connection.execute(
            "UPDATE scheduled_tasks SET cron_rules = 1 WHERE task_id = ?", (task_id,)
        )
    )


async def test_a_changed_meaning_is_logged_once_at_load_and_shown_until_the_task_is_written(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await rig.leads("scheduler-1")
    await rig.caller.ask(
        "scheduler.task.create", task_id="user.weekly", task_class="ticks:Tick", schedule=MONDAYS
    )
    status = await rig.caller.ask("scheduler.task.status", task_id="user.weekly")
    assert status["schedule_note"] is None
    await _set_old_rules(rig, "user.weekly")
    await stop_cleanly(rig.system, "scheduler-1")

    with caplog.at_level(logging.WARNING):
        await rig.leads("scheduler-2")
        status = await rig.caller.ask("scheduler.task.status", task_id="user.weekly")
        await rig.caller.ask("scheduler.task.disable", task_id="user.weekly")
    logged = [r.getMessage() for r in caplog.records if "now reads as Vixie cron" in r.getMessage()]
    assert len(logged) == 1, logged  # once, though the task was loaded and written since
    assert logged[0].startswith("user.weekly: schedule '0 9 * * 1-1' now reads as Vixie cron")
    assert "its first fire that differs is" in status["schedule_note"]

    status = await rig.caller.ask("scheduler.task.status", task_id="user.weekly")
    assert status["schedule_note"] is None  # the disable wrote the definition: today's rules
