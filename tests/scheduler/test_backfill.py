"""Backfill: the instants of a past range (pure, ``scheduler.backfill``), and
``scheduler.task.backfill`` on the embedded system with the real store, on the fake clock: a range
where some instants already ran fires only the rest, once, and every bad request is refused with
nothing fired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors import ActorSystem
from bus import RemoteError
from scheduler import DstPolicy, compile_schedule
from scheduler.backfill import MAX_BACKFILL, BackfillError, backfill_instants
from tests.scheduler.rig import Rig

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


# ------------------------------------------------------------------ pure


def test_both_bounds_are_included() -> None:
    hourly = compile_schedule("every 1h")
    found = backfill_instants(hourly, T0, T0 + timedelta(hours=5), NOW)
    assert found.instants == tuple(T0 + timedelta(hours=h) for h in range(6))
    assert (found.first, found.last) == (T0, T0 + timedelta(hours=5))


def test_the_instants_are_the_schedules_own_in_its_zone_under_its_dst_rules() -> None:
    """A daily 02:30 in Berlin over the fall-back day with fold="both": 02:30 twice that day,
    exactly what the schedule fires; bounds with any offset."""
    schedule = compile_schedule("30 2 * * *", "Europe/Berlin", dst_policy=DstPolicy(fold="both"))
    start = datetime.fromisoformat("2024-10-26T00:00:00+02:00")
    end = datetime.fromisoformat("2024-10-28T00:00:00+01:00")
    found = backfill_instants(schedule, start, end, NOW)
    assert [i.isoformat() for i in found.instants] == [
        "2024-10-26T00:30:00+00:00",
        "2024-10-27T00:30:00+00:00",
        "2024-10-27T01:30:00+00:00",
    ]
    assert found.instants == tuple(schedule.fires_between(start, end, 100))
    assert found.start == start.astimezone(UTC)


def test_a_range_without_instants_is_no_error() -> None:
    daily = compile_schedule("0 3 * * *")
    found = backfill_instants(daily, T0 + timedelta(hours=4), T0 + timedelta(hours=5), NOW)
    assert found.instants == ()
    assert found.first is None
    assert found.last is None


@pytest.mark.parametrize(
    ("start", "end", "field", "words"),
    [
        (T0, T0, "from", "is not before to"),
        (T0 + timedelta(hours=1), T0, "from", "is not before to"),
        (T0, NOW + timedelta(seconds=1), "to", "is in the future"),
        (datetime.min.replace(tzinfo=UTC), T0, "from", "is before 1970-01-01T00:00:00+00:00"),
        (T0.replace(tzinfo=None), T0 + timedelta(hours=1), "from", "naive"),
        (T0, (T0 + timedelta(hours=1)).replace(tzinfo=None), "to", "naive"),
    ],
)
def test_a_bad_range_is_refused(start: datetime, end: datetime, field: str, words: str) -> None:
    with pytest.raises(BackfillError) as caught:
        backfill_instants(compile_schedule("every 1h"), start, end, NOW)
    assert caught.value.field == field
    assert words in caught.value.problem


def test_to_may_be_now() -> None:
    found = backfill_instants(compile_schedule("every 1h"), NOW - timedelta(hours=1), NOW, NOW)
    assert found.instants == (NOW - timedelta(hours=1), NOW)


def test_more_instants_than_the_limit_are_refused_with_the_first_one_over() -> None:
    every_second = compile_schedule("every 1s")
    end = T0 + timedelta(seconds=MAX_BACKFILL - 1)  # exactly MAX_BACKFILL instants: fine
    assert len(backfill_instants(every_second, T0, end, NOW).instants) == MAX_BACKFILL
    with pytest.raises(BackfillError) as caught:
        backfill_instants(every_second, T0, end + timedelta(seconds=1), NOW)
    assert caught.value.field == "to"
    over = (T0 + timedelta(seconds=MAX_BACKFILL)).isoformat()
    assert f"more than {MAX_BACKFILL:,} instants" in caught.value.problem
    assert over in caught.value.problem
    with pytest.raises(BackfillError, match="more than 3 instants"):
        backfill_instants(every_second, T0, T0 + timedelta(seconds=3), NOW, limit=3)


# ------------------------------------------------------------------ on the bus


async def _history(rig: Rig, task_id: str) -> list[dict[str, Any]]:
    page = await rig.caller.ask("store.execution.history", task_id=task_id, limit=100)
    return list(page["executions"])


async def test_a_range_where_some_instants_ran_fires_only_the_rest_once(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    start = rig.clock.wall()  # a whole minute: "every 10s" fires at :10, :20, :30 after it
    await rig.caller.ask(
        "scheduler.task.create",
        task_id="user.tick",
        task_class="ticks:Tick",
        schedule="every 10s",
        run_policy={"overlap": "allow_all"},
    )
    await rig.advance(30)
    scheduled = await rig.executor.until(3)
    assert sorted(d.scheduled_at for d in scheduled) == [
        start + timedelta(seconds=s) for s in (10, 20, 30)
    ]

    reply = await rig.caller.ask(
        "scheduler.task.backfill",
        task_id="user.tick",
        **{"from": (start - timedelta(seconds=60)).isoformat()},
        to=(start + timedelta(seconds=30)).isoformat(),
    )
    wanted = [start + timedelta(seconds=s) for s in range(-60, 31, 10)]
    assert reply["instants"] == len(wanted) == 10
    assert (reply["fired"], reply["already"]) == (7, 3)  # 10 s, 20 s and 30 s ran already
    assert reply["first"] == wanted[0].isoformat()
    assert reply["last"] == wanted[-1].isoformat()
    assert reply["overlap"] == "buffer_all"

    runs = await rig.executor.until(10)
    assert sorted(d.scheduled_at for d in runs) == wanted  # each instant once, none twice
    executions = await _history(rig, "user.tick")
    assert len(executions) == 10
    backfilled = sorted(e["scheduled_at"] for e in executions if e["trigger"] == "backfill")
    assert backfilled == [w.isoformat() for w in wanted[:7]]
    assert all(e["retry_count"] == 0 for e in executions)

    again = await rig.caller.ask(
        "scheduler.task.backfill",
        task_id="user.tick",
        **{"from": wanted[0].isoformat()},
        to=wanted[-1].isoformat(),
        overlap="allow_all",
    )
    assert (again["instants"], again["fired"], again["already"]) == (10, 0, 10)
    assert len(await _history(rig, "user.tick")) == 10  # nothing recorded anew
    stats = await rig.caller.ask("scheduler.stats")
    assert stats["counters"]["backfilled"] == 7


async def test_the_overlap_rule_of_the_request_rides_on_its_fires(rig: Rig) -> None:
    scheduler = await rig.leads("scheduler-1")
    start = rig.clock.wall()
    await rig.caller.ask(
        "scheduler.task.create", task_id="user.tock", task_class="ticks:Tick", schedule="every 1m"
    )
    seen: list[Any] = []
    firing = scheduler._firing
    original = firing.start_many

    async def spy(fires: Any) -> Any:
        seen.extend((fire.reason, fire.overlap, fire.attempt) for fire in fires)
        return await original(fires)

    firing.start_many = spy  # type: ignore[method-assign]
    await rig.caller.ask(
        "scheduler.task.backfill",
        task_id="user.tock",
        **{"from": (start - timedelta(minutes=2)).isoformat()},
        to=start.isoformat(),
        overlap="skip",
    )
    assert seen == [("backfill", "skip", 1)] * 3
    await rig.executor.until(1)  # skip: at least the first runs whatever the gate decides


async def _refusal(rig: Rig, client_name: str | None = None, **payload: Any) -> RemoteError:
    if client_name is None:
        return await rig.caller.refused("scheduler.task.backfill", **payload)
    client = await rig.system.client(client_name)
    try:
        with pytest.raises(RemoteError) as caught:
            await client.ask("scheduler.task.backfill", payload, timeout=10)
        return caught.value
    finally:
        await client.stop()


async def test_bad_requests_are_refused_and_fire_nothing(rig: Rig, system: ActorSystem) -> None:
    await rig.leads("scheduler-1")
    now = rig.clock.wall()
    owner = await system.client("someone")
    try:
        created = await owner.ask(
            "scheduler.task.create",
            {"task_id": "user.mine", "task_class": "ticks:Tick", "schedule": "every 1s"},
            timeout=10,
        )
        assert created.payload["task"]["owner"] == "someone"
    finally:
        await owner.stop()
    await rig.caller.ask(
        "scheduler.task.create",
        task_id="user.off",
        task_class="ticks:Tick",
        schedule="every 1s",
        enabled=False,
    )
    hour_ago = (now - timedelta(hours=1)).isoformat()
    past = {"from": hour_ago, "to": now.isoformat()}

    cases: list[tuple[str | None, dict[str, Any], str, str]] = [
        (
            None,
            {"task_id": "user.mine", "from": now.isoformat(), "to": hour_ago},
            "invalid",
            "from: ",
        ),
        (
            None,
            {
                "task_id": "user.mine",
                "from": hour_ago,
                "to": (now + timedelta(minutes=1)).isoformat(),
            },
            "invalid",
            "in the future",
        ),
        (
            None,
            {
                "task_id": "user.mine",
                "from": (now - timedelta(hours=3)).isoformat(),
                "to": now.isoformat(),
            },
            "invalid",
            f"more than {MAX_BACKFILL:,} instants",
        ),
        (None, {"task_id": "user.nobody", **past}, "not_found", "user.nobody"),
        (None, {"task_id": "user.off", **past}, "conflict", "'user.off' is disabled: enable it"),
        ("intruder", {"task_id": "user.mine", **past}, "denied", "may not backfill"),
        (
            None,
            {"task_id": "user.mine", "from": 5, "to": now.isoformat()},
            "invalid",
            "from: expected ISO 8601 text",
        ),
        (
            None,
            {"task_id": "user.mine", "from": "yesterday", "to": now.isoformat()},
            "invalid",
            "not an ISO 8601",
        ),
        (
            None,
            {"task_id": "user.mine", "from": "2026-01-01T00:00:00", "to": now.isoformat()},
            "invalid",
            "has no UTC offset",
        ),
        (
            None,
            {"task_id": "user.mine", "from": "2" * 65, "to": now.isoformat()},
            "invalid",
            "more than 64",
        ),
        (
            None,
            {"task_id": "user.mine", **past, "overlap": "sometimes"},
            "invalid",
            "overlap: 'sometimes': expected one of skip",
        ),
        (None, {"task_id": "user.mine", **past, "overlap": 3}, "invalid", "overlap"),
        (None, {"task_id": "user.mine", "to": now.isoformat()}, "invalid", "from: is required"),
        (
            None,
            {"task_id": "user.mine", **past, "attempt": 2},
            "invalid",
            "attempt: is not a field",
        ),
        (None, {"task_id": "nocategory", **past}, "invalid", "task_id"),
    ]
    for client_name, payload, code, words in cases:
        error = await _refusal(rig, client_name, **payload)
        assert error.code == code, (payload, error)
        assert words in error.reason, (payload, error.reason)
    assert await _history(rig, "user.mine") == []  # nothing was fired
    assert await _history(rig, "user.off") == []
    assert rig.executor.runs == []
