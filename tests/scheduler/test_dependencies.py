"""The pure logic of dependencies: the logical instant of a dependency for a fire, what the
store's answer about its run means, and the cycles ``depends_on`` must not close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler import compile_schedule
from scheduler.dependencies import (
    blocked_reason,
    dependents,
    find_cycle,
    judge,
    logical_instant,
    spell_cycle,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("schedule", "zone", "instant", "expected"),
    [
        # B hourly at :30, A hourly at :00: B's 10:30 fire waits for A's 10:00 run
        ("0 * * * *", "UTC", "2027-03-01T10:30:00+00:00", "2027-03-01T10:00:00+00:00"),
        # at the very instant: that fire itself
        ("0 * * * *", "UTC", "2027-03-01T10:00:00+00:00", "2027-03-01T10:00:00+00:00"),
        # a microsecond before it: the one before
        ("0 * * * *", "UTC", "2027-03-01T09:59:59.999999+00:00", "2027-03-01T09:00:00+00:00"),
        # daily at 02:00 in Berlin, asked in UTC
        ("0 2 * * *", "Europe/Berlin", "2027-03-02T00:30:00+00:00", "2027-03-01T01:00:00+00:00"),
        ("0 2 * * *", "Europe/Berlin", "2027-03-02T01:00:00+00:00", "2027-03-02T01:00:00+00:00"),
        # a DST gap (02:30 does not exist on 2027-03-28 in Berlin; shifted to 03:00 CEST)
        ("30 2 * * *", "Europe/Berlin", "2027-03-28T02:00:00+00:00", "2027-03-28T01:00:00+00:00"),
        # every 15 minutes (interval, anchored at the epoch)
        ("every 15m", "UTC", "2027-03-01T02:07:00+00:00", "2027-03-01T02:00:00+00:00"),
        ("every 15m", "UTC", "2027-03-01T02:15:00+00:00", "2027-03-01T02:15:00+00:00"),
        # a one-shot before the instant, and at it
        (
            "at:2027-01-01T00:00:00+00:00",
            "UTC",
            "2027-03-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
        ),
        (
            "at:2027-03-01T00:00:00+00:00",
            "UTC",
            "2027-03-01T00:00:00+00:00",
            "2027-03-01T00:00:00+00:00",
        ),
        # a leap day, years back
        ("0 0 29 2 *", "UTC", "2027-03-01T00:00:00+00:00", "2024-02-29T00:00:00+00:00"),
        # yearly, a second before the next one
        ("0 0 1 1 *", "UTC", "2027-12-31T23:59:59+00:00", "2027-01-01T00:00:00+00:00"),
    ],
)
def test_the_logical_instant_is_the_latest_fire_at_or_before(
    schedule: str, zone: str, instant: str, expected: str
) -> None:
    compiled = compile_schedule(schedule, zone)
    assert logical_instant(compiled, utc(instant)) == utc(expected)


def test_no_logical_instant_for_a_one_shot_still_to_come() -> None:
    later = compile_schedule("at:2027-06-01T00:00:00+00:00")
    assert logical_instant(later, utc("2027-03-01T00:00:00+00:00")) is None


def test_the_logical_instant_agrees_with_walking_the_fires() -> None:
    schedule = compile_schedule("*/7 9-17 * * 1-5", "America/New_York")
    start = utc("2027-03-12T00:00:00+00:00")
    fires = schedule.fires_between(start - timedelta(days=4), start + timedelta(days=4), 2000)
    probe = start
    while probe < start + timedelta(days=4):
        expected = max((f for f in fires if f <= probe), default=None)
        assert logical_instant(schedule, probe) == expected, probe
        probe += timedelta(minutes=11, seconds=13)


# ------------------------------------------------------------------ judging

T = utc("2027-03-01T10:30:00+00:00")
L = utc("2027-03-01T10:00:00+00:00")


def test_a_succeeded_run_meets_the_dependency() -> None:
    assert judge("user.a", T, L, (True, None), retrying=False).state == "met"


@pytest.mark.parametrize(
    ("attempt", "retrying", "why"),
    [
        (None, False, "has no run for 2027-03-01T10:00:00+00:00 yet"),
        ((None, None), False, "is still running for 2027-03-01T10:00:00+00:00"),
        ((False, "boom"), True, "failed for 2027-03-01T10:00:00+00:00 and is retried"),
    ],
)
def test_a_run_not_ended_or_retried_is_waited_for(
    attempt: tuple[bool | None, str | None] | None, retrying: bool, why: str
) -> None:
    check = judge("user.a", T, L, attempt, retrying=retrying)
    assert (check.state, check.why) == ("waiting", why)


def test_a_run_failed_for_good_fails_the_fire_naming_the_dependency_and_its_error() -> None:
    check = judge("user.a", T, L, (False, "ValueError: bad input"), retrying=False)
    assert check.state == "failed"
    assert blocked_reason(check) == (
        "blocked: dependency user.a failed for 2027-03-01T10:00:00+00:00: ValueError: bad input"
    )


def test_a_long_error_is_clipped() -> None:
    check = judge("user.a", T, L, (False, "x" * 1000), retrying=False)
    assert len(blocked_reason(check)) < 300
    assert check.why.endswith("...")


def test_no_fire_to_wait_for_fails_the_fire() -> None:
    check = judge("user.a", T, None, None, retrying=False)
    assert check.state == "failed"
    assert "no fire at or before 2027-03-01T10:30:00+00:00" in blocked_reason(check)


def test_the_wait_limit_reason_says_how_long_and_why() -> None:
    check = judge("user.a", T, L, None, retrying=False)
    assert blocked_reason(check, wait_s=90) == (
        "blocked: dependency user.a had no succeeded run within the wait limit of 90s "
        "(it has no run for 2027-03-01T10:00:00+00:00 yet)"
    )


# ------------------------------------------------------------------ cycles


def test_a_chain_and_a_diamond_close_no_cycle() -> None:
    graph = {"user.b": ["user.a"], "user.c": ["user.a"], "user.a": []}
    assert find_cycle("user.d", ["user.b", "user.c"], graph) is None
    assert find_cycle("user.c", ["user.b"], graph) is None


def test_a_cycle_is_spelled_from_the_task_back_to_itself() -> None:
    graph = {"user.b": ["user.c"], "user.c": ["user.x", "user.a"], "user.x": []}
    cycle = find_cycle("user.a", ["user.b"], graph)
    assert cycle is not None
    assert spell_cycle(cycle) == "user.a -> user.b -> user.c -> user.a"


def test_a_two_task_cycle_and_the_task_own_old_edges_ignored() -> None:
    graph = {"user.b": ["user.a"], "user.a": ["user.z"]}  # a's stored edges: replaced
    assert find_cycle("user.a", ["user.b"], graph) == ("user.a", "user.b", "user.a")
    assert find_cycle("user.a", ["user.z"], {"user.b": ["user.a"], "user.z": []}) is None


def test_a_cycle_not_through_the_task_is_not_its_own() -> None:
    graph = {"user.b": ["user.c"], "user.c": ["user.b"]}  # stored data with a loop
    assert find_cycle("user.a", ["user.b"], graph) is None


def test_dependents_are_the_direct_ones_sorted() -> None:
    graph = {"user.c": ["user.a"], "user.b": ["user.a", "user.x"], "user.d": ["user.b"]}
    assert dependents("user.a", graph) == ["user.b", "user.c"]
    assert dependents("user.d", graph) == []
