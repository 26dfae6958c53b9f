"""Pause with a note, limited runs and describe, on the embedded system (broker, store actor on a
real encrypted file, scheduler, a recording executor), all on one fake clock: a paused task does
not fire and its passed instants are recorded as one missed range on unpause; a task with
``max_runs`` disables itself after its last fire and a plan with more runs than remain is
trimmed; describe lists the next fires and the recent actions; every bad request is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling.limits import trimmed
from bus import Envelope, RemoteError
from scheduler import MisfirePlan, MissedRun, PlannedRun
from tests.scheduler.conftest import (  # the scheduler actor's rig and its fixtures
    caller,
    clock,
    executor,
    rig,
    scheduler_settings,
    start_scheduler,
    store_clock,
    system,
)
from tests.scheduler.rig import Rig, stop_cleanly

__all__ = [
    "caller",
    "clock",
    "executor",
    "rig",
    "scheduler_settings",
    "start_scheduler",
    "store_clock",
    "system",
]


async def create(rig: Rig, task_id: str, **fields: Any) -> dict[str, Any]:
    payload = {"task_id": task_id, "task_class": "ticks:Tick", "schedule": "every 10s", **fields}
    return (await rig.caller.ask("scheduler.task.create", **payload))["task"]  # type: ignore[no-any-return]


def state(name: str, task_id: str) -> Any:
    def match(envelope: Envelope) -> bool:
        payload = envelope.payload
        return bool(payload.get("state") == name and payload.get("task_id") == task_id)

    return match


async def enabled_in_roster(rig: Rig) -> int:
    return int((await rig.caller.ask("scheduler.stats"))["enabled"])


async def test_a_paused_task_does_not_fire_and_its_instants_are_missed_on_unpause(
    rig: Rig,
) -> None:
    await rig.leads("scheduler-1")
    start = rig.clock.wall()
    await create(rig, "user.tick")
    await rig.advance(10)
    (first,) = await rig.executor.until(1)
    assert first.scheduled_at == start + timedelta(seconds=10)

    reply = await rig.caller.ask("scheduler.task.pause", task_id="user.tick", note="vendor down")
    assert (reply["task"]["paused"], reply["task"]["note"]) == (True, "vendor down")
    assert reply["task"]["next_run"] is None
    event = await rig.caller.event("scheduler.task.status", state("paused", "user.tick"))
    assert event.payload["note"] == "vendor down"
    assert await enabled_in_roster(rig) == 0  # nothing of it is left to fire
    shown = (await rig.caller.ask("scheduler.task.get", task_id="user.tick"))["task"]
    assert (shown["paused"], shown["note"], shown["enabled"]) == (True, "vendor down", True)
    listed = (await rig.caller.ask("scheduler.task.list"))["tasks"]
    assert [(t["task_id"], t["paused"], t["note"]) for t in listed] == [
        ("user.tick", True, "vendor down")
    ]

    await rig.advance(35)  # +20, +30 and +40 pass while paused
    assert len(rig.executor.runs) == 1
    reply = await rig.caller.ask("scheduler.task.unpause", task_id="user.tick")
    assert (reply["task"]["paused"], reply["task"]["note"]) == (False, None)
    at = [(start + timedelta(seconds=s)).isoformat() for s in (20, 40, 50)]
    missed = reply["missed"]
    assert (missed["first_at"], missed["last_at"], missed["count"], missed["reason"]) == (
        at[0],
        at[1],
        3,
        "paused: vendor down",
    )
    assert reply["task"]["next_run"] == at[2]
    await rig.caller.event("scheduler.task.status", state("unpaused", "user.tick"))
    stored = (await rig.caller.ask("scheduler.task.missed", task_id="user.tick"))["missed"]
    assert [(m["first_at"], m["count"], m["reason"]) for m in stored] == [
        (at[0], 3, "paused: vendor down")
    ]
    await rig.advance(5)
    runs = await rig.executor.until(2)
    assert runs[1].scheduled_at == start + timedelta(seconds=50)
    # unpaused again: nothing changes, nothing is recorded
    again = await rig.caller.ask("scheduler.task.unpause", task_id="user.tick")
    assert again["missed"] is None

    described = await rig.caller.ask("scheduler.task.describe", task_id="user.tick", count=3)
    assert [n["at"] for n in described["next"]] == [
        (start + timedelta(seconds=s)).isoformat() for s in (60, 70, 80)
    ]
    assert all(n["note"] is None for n in described["next"])
    actions = [(a["action"], a["at"]) for a in described["actions"]]
    assert actions == [("ran", at[2]), ("paused", at[1]), ("ran", first.scheduled_at.isoformat())]
    assert described["actions"][1]["count"] == 3
    assert described["actions"][0]["reason"] == "schedule: succeeded"


async def test_a_task_disables_itself_after_max_runs(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    await create(rig, "user.twice", run_policy={"max_runs": 2})
    await rig.advance(10)
    await rig.executor.until(1)
    await rig.advance(10)
    await rig.executor.until(2)
    event = await rig.caller.event("scheduler.task.status", state("max_runs_reached", "user.twice"))
    assert (event.payload["max_runs"], event.payload["note"]) == (2, "reached max_runs 2")
    task = (await rig.caller.ask("scheduler.task.get", task_id="user.twice"))["task"]
    assert (task["enabled"], task["note"], task["fire_count"], task["next_run"]) == (
        False,
        "reached max_runs 2",
        2,
        None,
    )
    assert await enabled_in_roster(rig) == 0
    described = await rig.caller.ask("scheduler.task.describe", task_id="user.twice")
    assert (described["next"], described["max_runs"], described["fire_count"]) == ([], 2, 2)
    # a trigger runs it, and does not count
    await rig.advance(1)  # a trigger's instant is now: not the last fire's
    await rig.caller.ask("scheduler.task.trigger", task_id="user.twice")
    await rig.executor.until(3)
    task = (await rig.caller.ask("scheduler.task.get", task_id="user.twice"))["task"]
    assert task["fire_count"] == 2
    # raised and enabled: the note of why it was disabled goes, and it fires once more
    await rig.caller.ask("scheduler.task.update", task_id="user.twice", run_policy={"max_runs": 3})
    enabled = (await rig.caller.ask("scheduler.task.enable", task_id="user.twice"))["task"]
    assert (enabled["enabled"], enabled["note"]) == (True, None)
    await rig.advance(10)
    await rig.executor.until(4)
    await rig.caller.event("scheduler.task.status", state("max_runs_reached", "user.twice"))
    task = (await rig.caller.ask("scheduler.task.get", task_id="user.twice"))["task"]
    assert (task["enabled"], task["note"], task["fire_count"]) == (False, "reached max_runs 3", 3)


async def test_a_plan_with_more_runs_than_remain_is_trimmed(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    start = rig.clock.wall()
    await create(
        rig,
        "user.burst",
        run_policy={"max_runs": 3, "overlap": "allow_all"},  # the catch-up runs at once
        misfire_policy={"mode": "catch_up", "grace_s": 5, "catch_up_limit": 10},
    )
    await rig.advance(10)
    await rig.executor.until(1)
    await stop_cleanly(rig.system, "scheduler-1")
    await rig.advance(40)  # +20, +30, +40 and +50 are owed: 2 runs remain
    await rig.leads("scheduler-2")
    runs = await rig.executor.until(3)
    assert [r.scheduled_at - start for r in runs] == [timedelta(seconds=s) for s in (10, 20, 30)]
    await rig.caller.event("scheduler.task.status", state("max_runs_reached", "user.burst"))
    missed = (await rig.caller.ask("scheduler.task.missed", task_id="user.burst"))["missed"]
    assert sorted((m["first_at"], m["reason"]) for m in missed) == [
        ((start + timedelta(seconds=s)).isoformat(), "max_runs reached") for s in (40, 50)
    ]
    task = (await rig.caller.ask("scheduler.task.get", task_id="user.burst"))["task"]
    assert (task["enabled"], task["fire_count"]) == (False, 3)
    assert len(rig.executor.runs) == 3


async def _refusal(
    rig: Rig, system: ActorSystem, who: str | None, topic: str, payload: dict[str, Any]
) -> RemoteError:
    if who is None:
        return await rig.caller.refused(topic, **payload)
    client = await system.client(who)
    try:
        with pytest.raises(RemoteError) as caught:
            await client.ask(topic, payload, timeout=10)
        return caught.value
    finally:
        await client.stop()


PAUSE = "scheduler.task.pause"
UNPAUSE = "scheduler.task.unpause"
DESCRIBE = "scheduler.task.describe"
CASES: list[tuple[str | None, str, dict[str, Any], str, str]] = [
    (None, PAUSE, {"task_id": "user.mine", "note": "x" * 501}, "invalid", "more than 500"),
    (None, PAUSE, {"task_id": "user.mine", "note": "a\nb"}, "invalid", "note: must be printable"),
    (None, PAUSE, {"task_id": "user.mine", "note": 7}, "invalid", "note: expected a string"),
    (None, PAUSE, {"task_id": "user.mine", "note": ""}, "invalid", "note: must not be empty"),
    (None, PAUSE, {"task_id": "user.mine", "why": "x"}, "invalid", "why: is not a field"),
    (None, PAUSE, {"task_id": "user.nobody"}, "not_found", "user.nobody"),
    (None, PAUSE, {"task_id": "nocategory"}, "invalid", "task_id"),
    ("intruder", PAUSE, {"task_id": "user.mine"}, "denied", "may not pause"),
    (None, UNPAUSE, {"task_id": "user.nobody"}, "not_found", "user.nobody"),
    (None, UNPAUSE, {"task_id": "user.mine", "note": "x"}, "invalid", "note: is not a field"),
    ("intruder", UNPAUSE, {"task_id": "user.mine"}, "denied", "may not unpause"),
    (None, DESCRIBE, {"task_id": "user.mine", "count": 0}, "invalid", "count: 0 is outside 1..100"),
    (None, DESCRIBE, {"task_id": "user.mine", "count": 101}, "invalid", "outside 1..100"),
    (None, DESCRIBE, {"task_id": "user.mine", "count": "5"}, "invalid", "count: expected an int"),
    (None, DESCRIBE, {"task_id": "user.mine", "actions": 101}, "invalid", "outside 0..100"),
    (None, DESCRIBE, {"task_id": "user.mine", "actions": -1}, "invalid", "actions"),
    (None, DESCRIBE, {"task_id": "user.nobody"}, "not_found", "user.nobody"),
    ("intruder", DESCRIBE, {"task_id": "user.mine"}, "denied", "may not read"),
]


async def test_bad_requests_are_refused_and_change_nothing(rig: Rig, system: ActorSystem) -> None:
    await rig.leads("scheduler-1")
    owner = await system.client("someone")
    try:
        await owner.ask(
            "scheduler.task.create",
            {"task_id": "user.mine", "task_class": "ticks:Tick", "schedule": "every 1h"},
            timeout=10,
        )
        for who, topic, payload, code, words in CASES:
            error = await _refusal(rig, system, who, topic, payload)
            assert error.code == code, (topic, payload, error)
            assert words in error.reason, (topic, payload, error.reason)
        task = (await owner.ask("scheduler.task.get", {"task_id": "user.mine"}, timeout=10)).payload
        assert (task["task"]["paused"], task["task"]["note"], task["task"]["version"]) == (
            False,
            None,
            1,
        )
        # the owner may pause and describe its own task
        paused = await owner.ask(PAUSE, {"task_id": "user.mine"}, timeout=10)
        assert (paused.payload["task"]["paused"], paused.payload["task"]["note"]) == (True, None)
        described = await owner.ask(DESCRIBE, {"task_id": "user.mine"}, timeout=10)
        assert (described.payload["paused"], described.payload["next"]) == (True, [])
    finally:
        await owner.stop()


def test_trimming_keeps_the_oldest_runs_and_misses_the_rest() -> None:
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    runs = tuple(PlannedRun(t0 + timedelta(seconds=s), 1.0) for s in (10, 20, 30))
    earlier = MissedRun(t0, "skipped", 20.0)
    plan = MisfirePlan(runs, (earlier,))
    assert trimmed(plan, 3) is plan
    cut = trimmed(plan, 1)
    assert cut.runs == runs[:1]
    assert cut.missed == (
        earlier,
        MissedRun(runs[1].instant, "max_runs reached", 1.0),
        MissedRun(runs[2].instant, "max_runs reached", 1.0),
    )
    assert cut.through == runs[2].instant  # the task is accounted through all of them
    assert trimmed(plan, 0).runs == ()
