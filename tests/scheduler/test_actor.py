"""The scheduler actor over the bus, on a real broker and a real encrypted store: task requests
good and bad, firing recorded before dispatch, results driving retries and dead letters, missed
runs after downtime recorded with their reasons, and a standby taking over the lease."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from bus import Envelope
from scheduler import ScheduleError
from store.records import TaskSpec
from tests.bus.waits import eventually
from tests.scheduler.rig import Caller, RecordingExecutor, Rig, Scheduling

HOURLY: dict[str, Any] = {
    "task_id": "user.report",
    "task_class": "reports:Report",
    "schedule": "@hourly",
}


async def test_create_replies_with_the_stored_task_and_its_next_run(
    start_scheduler: Scheduling, caller: Caller
) -> None:
    await start_scheduler()
    reply = await caller.ask(
        "scheduler.task.create",
        **HOURLY,
        timezone="Europe/Berlin",
        config={"recipients": ["a@example.org"]},
        misfire_policy={"mode": "skip"},
        run_policy={"dst_fold": "both", "timeout_s": 30},
    )
    task = reply["task"]
    assert task["task_id"] == "user.report"
    assert task["version"] == 1
    assert task["owner"] == "tester"  # the authenticated sender, not a field of the request
    assert task["timezone"] == "Europe/Berlin"
    assert task["config"] == {"recipients": ["a@example.org"]}
    next_run = datetime.fromisoformat(task["next_run"])
    now = datetime.now(UTC)
    assert now < next_run <= now + timedelta(hours=1)
    assert (next_run.minute, next_run.second) == (0, 0)
    defined = await caller.event("scheduler.task.status", lambda e: e.payload["state"] == "defined")
    assert defined.payload["task_id"] == "user.report"

    again = await caller.ask("scheduler.task.get", task_id="user.report")
    assert again["task"] == task


BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("no id", {"task_class": "x:Y", "schedule": "@daily"}, "task_id: is required"),
    ("no category", {**HOURLY, "task_id": "report"}, "task_id"),
    ("unknown category", {**HOURLY, "task_id": "admin.report"}, "task_id"),
    ("id of the wrong type", {**HOURLY, "task_id": 7}, "task_id"),
    ("no schedule", {"task_id": "user.a", "task_class": "x:Y"}, "schedule: is required"),
    ("bad cron field", {**HOURLY, "schedule": "61 * * * *"}, "schedule"),
    ("cron of four fields", {**HOURLY, "schedule": "* * * *"}, "schedule"),
    ("bad interval", {**HOURLY, "schedule": "interval:0"}, "schedule"),
    ("at without offset", {**HOURLY, "schedule": "at:2030-01-01T00:00:00"}, "schedule"),
    ("unknown zone", {**HOURLY, "timezone": "Mars/Olympus"}, "timezone"),
    ("enabled as text", {**HOURLY, "enabled": "yes"}, "enabled"),
    ("config not a map", {**HOURLY, "config": [1, 2]}, "config"),
    ("bad misfire mode", {**HOURLY, "misfire_policy": {"mode": "later"}}, "misfire_policy.mode"),
    ("unknown misfire key", {**HOURLY, "misfire_policy": {"grace": 5}}, "misfire_policy.grace"),
    ("retry attempts as text", {**HOURLY, "retry_policy": {"max_attempts": "3"}}, "max_attempts"),
    ("negative jitter", {**HOURLY, "run_policy": {"jitter_s": -1}}, "run_policy.jitter_s"),
    ("bad DST rule", {**HOURLY, "run_policy": {"dst_gap": "never"}}, "run_policy.dst_gap"),
    ("unknown field", {**HOURLY, "owner": "root"}, "owner: is not a field"),
]


@pytest.mark.parametrize(
    ("payload", "names"), [case[1:] for case in BAD_CREATES], ids=[c[0] for c in BAD_CREATES]
)
async def test_a_bad_create_is_refused_naming_the_field_and_stores_nothing(
    start_scheduler: Scheduling, caller: Caller, payload: dict[str, Any], names: str
) -> None:
    await start_scheduler()
    await caller.ask("scheduler.task.create", **{**HOURLY, "task_id": "user.kept"})
    refused = await caller.refused("scheduler.task.create", **payload)
    assert refused.code == "invalid"
    assert names in refused.reason
    listed = await caller.ask("scheduler.task.list")
    assert [t["task_id"] for t in listed["tasks"]] == ["user.kept"]
    assert listed["tasks"][0]["version"] == 1


async def test_update_enable_disable_reset_delete_and_their_errors(
    start_scheduler: Scheduling, caller: Caller
) -> None:
    scheduler = await start_scheduler()
    await caller.ask("scheduler.task.create", **HOURLY)
    duplicate = await caller.refused("scheduler.task.create", **HOURLY)
    assert (duplicate.code, duplicate.reason) == (
        "exists",
        "task 'user.report' already exists; use task update",
    )

    updated = await caller.ask("scheduler.task.update", task_id="user.report", schedule="@daily")
    assert (updated["task"]["schedule"], updated["task"]["version"]) == ("@daily", 2)
    next_run = datetime.fromisoformat(updated["task"]["next_run"])
    assert (next_run.hour, next_run.minute) == (0, 0)
    assert scheduler.loop.engine.next_fire("user.report") == next_run

    stale = await caller.refused(
        "scheduler.task.update", task_id="user.report", schedule="@weekly", expected_version=1
    )
    assert stale.code == "conflict"
    bad = await caller.refused("scheduler.task.update", task_id="user.report", schedule="@often")
    assert (bad.code, "schedule" in bad.reason) == ("invalid", True)
    empty = await caller.refused("scheduler.task.update", task_id="user.report")
    assert empty.code == "invalid"
    missing = await caller.refused("scheduler.task.update", task_id="user.nothing", enabled=False)
    assert missing.code == "not_found"

    disabled = await caller.ask("scheduler.task.disable", task_id="user.report")
    assert disabled["task"]["enabled"] is False
    assert disabled["task"]["next_run"] is None
    assert scheduler.loop.engine.next_fire("user.report") is None
    enabled = await caller.ask("scheduler.task.enable", task_id="user.report")
    assert enabled["task"]["next_run"] == updated["task"]["next_run"]

    reset = await caller.ask("scheduler.task.reset", task_id="user.report")
    assert reset["task"]["last_run"] is None
    status = await caller.ask("scheduler.task.status", task_id="user.report")
    assert status["next_fire"] == updated["task"]["next_run"]
    assert status["status"]["runs"] == 0

    assert await caller.ask("scheduler.task.delete", task_id="user.report") == {
        "deleted": "user.report"
    }
    assert scheduler.loop.engine.next_fire("user.report") is None
    gone = await caller.refused("scheduler.task.delete", task_id="user.report")
    assert gone.code == "not_found"
    unknown = await caller.refused("scheduler.task.frobnicate", task_id="user.report")
    assert unknown.code == "unknown_topic"


async def test_due_fires_are_recorded_then_dispatched_and_results_land_in_the_store(
    start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor
) -> None:
    await start_scheduler()
    await caller.ask(
        "scheduler.task.create", task_id="user.tick", task_class="ticks:Tick", schedule="interval:1"
    )
    runs = await executor.until(2)
    assert [r.task_id for r in runs] == ["user.tick", "user.tick"]
    assert runs[1].scheduled_at - runs[0].scheduled_at == timedelta(seconds=1)
    assert all(r.scheduled_at.microsecond == 0 and r.attempt == 1 for r in runs)
    assert runs[0].timeout_s == 300.0  # [scheduler] default_timeout_s
    for run in runs:
        execution = (await caller.ask("store.execution.get", execution_id=run.execution_id))[
            "execution"
        ]
        assert execution["scheduled_at"] == run.scheduled_at.isoformat()
        assert execution["success"] is True

    async def marked() -> bool:
        task = (await caller.ask("scheduler.task.get", task_id="user.tick"))["task"]
        return task["last_run"] is not None and task["last_run"] >= runs[1].scheduled_at.isoformat()

    await eventually(marked, "last_run stored")


async def test_trigger_runs_now_even_a_disabled_task(
    start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor
) -> None:
    await start_scheduler()
    await caller.ask("scheduler.task.create", **HOURLY, enabled=False)
    reply = await caller.ask("scheduler.task.trigger", task_id="user.report")
    (run,) = await executor.until(1)
    assert run.execution_id == reply["execution_id"]
    assert abs((run.scheduled_at - datetime.now(UTC)).total_seconds()) < 60
    missing = await caller.refused("scheduler.task.trigger", task_id="user.nothing")
    assert missing.code == "not_found"


def retry_scheduled(attempt: int) -> Callable[[Envelope], bool]:
    return lambda e: e.payload["state"] == "retry_scheduled" and e.payload["attempt"] == attempt


async def test_failures_are_retried_with_backoff_then_dead_lettered(rig: Rig) -> None:
    """On the fake clock: each backoff passes when the test advances it."""
    caller, executor = rig.caller, rig.executor
    await rig.leads("scheduler")
    executor.outcome = lambda d: RuntimeError(f"attempt {d.attempt} broke")
    await caller.ask(
        "scheduler.task.create",
        **HOURLY,
        retry_policy={"base_delay_s": 0.05, "factor": 2.0, "max_attempts": 3},
    )
    await caller.ask("scheduler.task.trigger", task_id="user.report")
    for attempt, backoff_s in ((2, 0.05), (3, 0.1)):
        await caller.event("scheduler.task.status", retry_scheduled(attempt))
        await rig.advance(backoff_s)
    runs = await executor.until(3)
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert len({r.scheduled_at for r in runs}) == 1  # one fire, three attempts
    assert len({r.execution_id for r in runs}) == 3  # each attempt recorded once
    dead = await caller.event("scheduler.task.dead")
    assert dead.payload["task_id"] == "user.report"
    assert dead.payload["attempts"] == 3
    assert dead.payload["reason"] == "exhausted after 3 attempts"
    assert dead.payload["last_error"] == "attempt 3 broke"
    letters = await caller.ask("store.dead_letters", task_id="user.report")
    assert [d["error_type"] for d in letters["dead_letters"]] == ["RuntimeError"]
    history = await caller.ask("store.execution.history", task_id="user.report")
    assert sorted(e["retry_count"] for e in history["executions"]) == [0, 1, 2]


async def test_a_non_retryable_error_is_dead_lettered_at_once(
    start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor
) -> None:
    await start_scheduler()
    executor.outcome = lambda d: ScheduleError("bad input")  # a ValueError subclass
    await caller.ask("scheduler.task.create", **HOURLY)
    await caller.ask("scheduler.task.trigger", task_id="user.report")
    dead = await caller.event("scheduler.task.dead")
    assert dead.payload["reason"] == "non-retryable ScheduleError (a ValueError)"
    assert len(executor.runs) == 1


async def test_fires_missed_while_down_follow_the_misfire_policy_and_are_recorded(
    start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor
) -> None:
    """The task's last run was five hours ago (it is older than that): run_once runs the latest
    missed fire and records the four others as coalesced into it."""
    now = datetime.now(UTC)
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    created = (last - timedelta(days=1)).isoformat()
    await caller.ask(
        "store.task.put", **HOURLY, misfire_policy={"mode": "run_once"}, accounted_through=created
    )
    await caller.ask("store.task.mark_run", task_id="user.report", last_run=last.isoformat())
    await start_scheduler()
    (run,) = await executor.until(1)
    assert run.scheduled_at == last + timedelta(hours=5)
    missed = await caller.ask("store.missed.list", task_id="user.report")
    assert sorted(m["first_at"] for m in missed["missed"]) == [
        (last + timedelta(hours=h)).isoformat() for h in (1, 2, 3, 4)
    ]
    assert {m["reason"] for m in missed["missed"]} == {
        f"coalesced into {run.scheduled_at.isoformat()}"
    }


async def test_a_standby_takes_over_when_the_leader_stops(
    system: ActorSystem, start_scheduler: Scheduling, caller: Caller, executor: RecordingExecutor
) -> None:
    leader = await start_scheduler(name="scheduler-a")
    standby = await start_scheduler(name="scheduler-b", lead=False)
    assert system.status()["scheduler-a"]["state"] == ActorState.RUNNING
    assert system.status()["scheduler-b"]["state"] == ActorState.STANDBY
    await caller.ask("scheduler.task.create", **HOURLY)
    assert standby.lease is not None
    assert leader.lease is not None
    assert standby.lease.current_holder == leader.lease.holder

    supervised = system._actors["scheduler-a"]  # stop only the leader
    assert supervised.cell is not None
    await supervised.cell.stop(1.0)  # releases the lease: no need to wait for the TTL
    await eventually(
        lambda: system.status()["scheduler-b"]["state"] == ActorState.RUNNING, "standby leads", 10
    )
    assert standby.loop.engine.next_fire("user.report") is not None
    assert standby.lease.token > 1
    reply = await caller.ask("scheduler.task.trigger", task_id="user.report")
    (run,) = await executor.until(1)
    assert run.execution_id == reply["execution_id"]


async def test_code_defined_tasks_are_put_at_takeover_and_cannot_be_created_or_deleted(
    start_scheduler: Scheduling, caller: Caller
) -> None:
    cleanup = TaskSpec(
        task_id="maintenance.log_cleanup",
        task_class="tasks.builtin.maintenance:LogCleanup",
        schedule="0 3 * * *",
        config={"retention_days": 7.0},
    )
    await start_scheduler(builtin=[cleanup])
    stored = (await caller.ask("scheduler.task.get", task_id="maintenance.log_cleanup"))["task"]
    assert (stored["schedule"], stored["config"], stored["enabled"]) == (
        "0 3 * * *",
        {"retention_days": 7.0},
        True,
    )
    assert stored["next_run"] is not None

    created = await caller.refused(
        "scheduler.task.create", task_id="security.mine", task_class="x:Y", schedule="@daily"
    )
    assert created.code == "denied"
    assert "only user.* tasks can be created" in created.reason
    deleted = await caller.refused("scheduler.task.delete", task_id="maintenance.log_cleanup")
    assert (deleted.code, "can be disabled, not deleted" in deleted.reason) == ("denied", True)
    swapped = await caller.refused(
        "scheduler.task.update", task_id="maintenance.log_cleanup", task_class="evil:Task"
    )
    assert swapped.code == "denied"
    disabled = await caller.ask("scheduler.task.disable", task_id="maintenance.log_cleanup")
    assert disabled["task"]["enabled"] is False


async def test_an_unreadable_result_is_reported_and_the_scheduler_keeps_serving(
    start_scheduler: Scheduling, caller: Caller
) -> None:
    await start_scheduler()
    await caller.client.enqueue("scheduler.task.result", {"execution_id": 7, "bogus": True}, 10)
    error = await caller.event("scheduler.error")
    assert error.payload["topic"] == "scheduler.task.result"
    assert error.payload["sender"] == "tester"
    assert "execution_id" in error.payload["reason"]
    created = await caller.ask("scheduler.task.create", **HOURLY)
    assert created["task"]["version"] == 1


async def test_a_create_is_one_store_write_carrying_its_next_run(rig: Rig) -> None:
    """Compiled once and stored in one write (``store.task.put`` with the next run): two bus
    round trips in all, the client's and the write. An update reads the task, then writes once."""
    await rig.leads("scheduler")

    cell = rig.system._actors["store"].cell
    assert cell is not None

    def store_handled() -> int:
        """The task requests the store answered (the lease keeper may renew meanwhile)."""
        return sum(n for topic, n in cell.stats.by_topic.items() if topic.startswith("store.task."))

    before = store_handled()
    created = (await rig.caller.ask("scheduler.task.create", **HOURLY))["task"]
    assert store_handled() - before == 1
    assert (
        created["next_run"] == (rig.clock.wall() + timedelta(hours=1)).replace(minute=0).isoformat()
    )
    before = store_handled()
    updated = await rig.caller.ask(
        "scheduler.task.update", task_id="user.report", schedule="@daily"
    )
    assert store_handled() - before == 2
    assert (
        updated["task"]["next_run"]
        == (rig.clock.wall() + timedelta(days=1)).replace(hour=0, minute=0).isoformat()
    )
