"""Every due instant is accounted for across a gap in leadership: a task's fires after the instant
it is accounted for through (its creation, for a task that never fired) go through its misfire
policy when a scheduler takes over, after a clean stop as after a kill. Driven by a fake clock:
the schedules' time passes only when the test says so.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.bus.waits import eventually
from tests.scheduler.rig import STOPS, Caller, Rig, Stop, kill, stop_cleanly


async def create(caller: Caller, task_id: str, schedule: str, **fields: Any) -> dict[str, Any]:
    reply = await caller.ask(
        "scheduler.task.create",
        task_id=task_id,
        task_class="ticks:Tick",
        schedule=schedule,
        **fields,
    )
    return dict(reply["task"])


async def missed(caller: Caller, task_id: str) -> list[dict[str, Any]]:
    return list((await caller.ask("store.missed.list", task_id=task_id))["missed"])


@pytest.mark.parametrize("stop", STOPS)
async def test_a_one_shot_due_while_no_scheduler_leads_runs_late_within_its_grace(
    rig: Rig,
    stop: Stop,
) -> None:
    await rig.leads("scheduler-1")
    due = rig.clock.wall() + timedelta(seconds=12)
    await create(rig.caller, "user.once", f"at:{due.isoformat()}")
    await stop(rig.system, "scheduler-1")
    await rig.advance(20)  # its instant passes while nobody leads
    await rig.leads("scheduler-2")
    (run,) = await rig.executor.until(1)
    assert run.scheduled_at == due
    assert await missed(rig.caller, "user.once") == []


@pytest.mark.parametrize("stop", STOPS)
async def test_a_one_shot_past_its_grace_is_recorded_as_missed_with_the_reason(
    rig: Rig,
    stop: Stop,
) -> None:
    await rig.leads("scheduler-1")
    due = rig.clock.wall() + timedelta(seconds=12)
    await create(
        rig.caller,
        "user.once",
        f"at:{due.isoformat()}",
        misfire_policy={"mode": "skip", "grace_s": 5},
    )
    await stop(rig.system, "scheduler-1")
    await rig.advance(20)
    await rig.leads("scheduler-2")

    async def recorded() -> bool:
        return bool(await missed(rig.caller, "user.once"))

    await eventually(recorded, "the missed fire recorded", 10)
    (entry,) = await missed(rig.caller, "user.once")
    assert (entry["first_at"], entry["count"]) == (due.isoformat(), 1)
    assert entry["reason"] == "skipped: missed while down (grace 5s exceeded)"
    assert rig.executor.runs == []


@pytest.mark.parametrize(
    ("policy", "runs", "coalesced"),
    [
        pytest.param({"mode": "catch_up", "grace_s": 2}, [10, 20, 30], [], id="catch_up"),
        pytest.param({"mode": "run_once", "grace_s": 2}, [30], [10, 20], id="run_once"),
        pytest.param({"mode": "skip", "grace_s": 2}, [], [10, 20, 30], id="skip"),
    ],
)
@pytest.mark.parametrize("stop", STOPS)
async def test_the_first_instants_of_a_new_recurring_task_follow_its_misfire_policy(
    rig: Rig,
    stop: Stop,
    policy: dict[str, Any],
    runs: list[int],
    coalesced: list[int],
) -> None:
    """Created at :01, every 10 s; nobody leads from :01 to :35, so all three instants, :10, :20
    and :30, are late beyond the grace. Each is run or recorded as missed; none twice."""
    start = rig.clock.wall()
    await rig.leads("scheduler-1")
    await rig.advance(1)
    await create(rig.caller, "user.tick", "every 10s", misfire_policy=policy)
    await stop(rig.system, "scheduler-1")
    await rig.advance(34)
    await rig.leads("scheduler-2")
    ran = await rig.executor.until(len(runs)) if runs else []

    async def accounted() -> bool:
        entries = await missed(rig.caller, "user.tick")
        return sum(int(e["count"]) for e in entries) == len(coalesced)

    await eventually(accounted, "the fires not run recorded", 10)
    assert sorted(r.scheduled_at for r in ran) == [start + timedelta(seconds=s) for s in runs]
    assert sorted(e["first_at"] for e in await missed(rig.caller, "user.tick")) == [
        (start + timedelta(seconds=s)).isoformat() for s in coalesced
    ]
    assert len(rig.executor.runs) == len(runs)  # nothing more, nothing twice


async def test_a_jittered_fire_is_recorded_before_its_delay_and_survives_a_kill(
    rig: Rig,
) -> None:
    """The leader dies while jitter holds a due fire back; the next leader dispatches it."""
    await rig.leads("scheduler-1")
    due = rig.clock.wall() + timedelta(seconds=10)
    await create(rig.caller, "user.jittered", f"at:{due.isoformat()}", run_policy={"jitter_s": 600})

    async def recorded() -> bool:
        history = await rig.caller.ask("store.execution.history", task_id="user.jittered")
        return len(history["executions"]) == 1

    await rig.advance(10)  # due: recorded now, dispatched after its jitter (up to 10 minutes)
    await eventually(recorded, "the fire recorded", 10)
    assert rig.executor.runs == []
    await kill(rig.system, "scheduler-1")
    await rig.leads("scheduler-2")
    (run,) = await rig.executor.until(1)
    assert run.scheduled_at == due


async def test_a_disabled_period_and_a_schedule_change_owe_nothing(
    rig: Rig,
) -> None:
    start = rig.clock.wall()
    top = (start + timedelta(hours=1)).replace(minute=0)  # user.moved's next :00
    await rig.leads("scheduler-1")
    await create(rig.caller, "user.off", "every 10s", misfire_policy={"mode": "catch_up"})
    await create(rig.caller, "user.moved", "0 * * * *", misfire_policy={"mode": "catch_up"})
    await rig.caller.ask("scheduler.task.disable", task_id="user.off")
    await stop_cleanly(rig.system, "scheduler-1")
    await rig.advance(
        (top - start).total_seconds() + 5
    )  # :00 passes, nobody leads, user.off is off
    await rig.leads("scheduler-2")
    (late,) = await rig.executor.until(1)
    assert (late.task_id, late.scheduled_at) == ("user.moved", top)
    following = top + timedelta(seconds=10)
    enabled = (await rig.caller.ask("scheduler.task.enable", task_id="user.off"))["task"]
    assert enabled["next_run"] == following.isoformat()  # not the instants while disabled
    changed = await rig.caller.ask(
        "scheduler.task.update", task_id="user.moved", schedule="every 10s"
    )
    assert changed["task"]["next_run"] == following.isoformat()
    await rig.advance(5)
    ran = await rig.executor.until(3)
    assert sorted((r.task_id, r.scheduled_at) for r in ran[1:]) == [
        ("user.moved", following),
        ("user.off", following),
    ]
    assert await missed(rig.caller, "user.off") == []
    assert await missed(rig.caller, "user.moved") == []


async def test_a_one_shot_in_the_past_is_refused_and_nothing_is_stored(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    past = rig.clock.wall() - timedelta(minutes=1)
    refused = await rig.caller.refused(
        "scheduler.task.create",
        task_id="user.late",
        task_class="ticks:Tick",
        schedule=f"at:{past.isoformat()}",
    )
    assert refused.code == "invalid"
    assert refused.reason == (
        f"schedule: 'at:{past.isoformat()}' has no fire after now "
        f"({rig.clock.wall().isoformat(timespec='seconds')}): a one-shot's instant must be in the "
        "future"
    )
    assert (await rig.caller.ask("scheduler.task.list"))["tasks"] == []
