"""Misfire policies after a simulated outage: an hourly task, last fired at 00:00, taskbus down
from 00:30 until 05:30, so the fires of 01:00 to 05:00 were missed."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from config import ConfigError
from scheduler.clock import FakeClock
from scheduler.errors import ScheduleError
from scheduler.misfire import (
    MisfirePlan,
    MisfirePolicy,
    MissedRange,
    MissedRun,
    PlannedRun,
    plan_missed,
    plan_window,
)

from .fakes import Every, at

HOURLY = Every(3600)
SKIPPED = "skipped: missed while down (grace 60s exceeded)"


def outage(until: datetime) -> datetime:
    """The wall time when taskbus comes back, down since 00:30 (monotonic time passes too)."""
    clock = FakeClock(at(0, 30), monotonic=100.0)
    clock.advance((until - clock.wall()).total_seconds())
    return clock.wall()


def plans(policy: MisfirePolicy, now: datetime) -> list[MisfirePlan]:
    """The same window planned from a list of instants and from the schedule."""
    due = HOURLY.fires_between(at(0), now, 1000)
    return [plan_missed(due, now, policy), plan_window(HOURLY, at(0), now, policy)]


def late(instant: datetime, now: datetime) -> float:
    return (now - instant).total_seconds()


def test_skip_records_every_missed_fire_and_runs_none() -> None:
    now = outage(at(5, 30))
    for plan in plans(MisfirePolicy(mode="skip"), now):
        assert plan.runs == ()
        assert plan.missed == tuple(
            MissedRun(at(h), SKIPPED, late(at(h), now)) for h in (1, 2, 3, 4, 5)
        )
        assert plan.unlisted is None
        assert plan.through == at(5)


def test_run_once_coalesces_the_missed_fires_into_the_latest() -> None:
    now = outage(at(5, 30))
    for plan in plans(MisfirePolicy(mode="run_once"), now):
        assert plan.runs == (PlannedRun(at(5), 1800.0, coalesced=4),)
        reason = "coalesced into 2025-01-01T05:00:00+00:00"
        assert plan.missed == tuple(
            MissedRun(at(h), reason, late(at(h), now)) for h in (1, 2, 3, 4)
        )
        assert plan.through == at(5)


def test_catch_up_runs_the_latest_fires_up_to_the_limit() -> None:
    now = outage(at(5, 30))
    for plan in plans(MisfirePolicy(mode="catch_up", catch_up_limit=3), now):
        assert [r.instant for r in plan.runs] == [at(3), at(4), at(5)]
        assert all(r.coalesced == 0 for r in plan.runs)
        assert plan.missed == tuple(
            MissedRun(at(h), "beyond catch_up_limit (3)", late(at(h), now)) for h in (1, 2)
        )


def test_catch_up_within_the_limit_runs_every_missed_fire_in_order() -> None:
    now = outage(at(5, 30))
    for plan in plans(MisfirePolicy(mode="catch_up", catch_up_limit=10), now):
        assert [r.instant for r in plan.runs] == [at(h) for h in (1, 2, 3, 4, 5)]
        assert plan.missed == ()


# Back at 05:00:30: the 05:00 fire is 30 s late, within the 60 s grace.
@pytest.mark.parametrize(
    ("policy", "runs", "missed"),
    [
        (MisfirePolicy(mode="skip"), [(5, 0)], [(h, SKIPPED) for h in (1, 2, 3, 4)]),
        (
            MisfirePolicy(mode="run_once"),
            [(5, 4)],
            [(h, "coalesced into 2025-01-01T05:00:00+00:00") for h in (1, 2, 3, 4)],
        ),
        (
            MisfirePolicy(mode="catch_up", catch_up_limit=3),
            [(2, 0), (3, 0), (4, 0), (5, 0)],
            [(1, "beyond catch_up_limit (3)")],
        ),
    ],
    ids=["skip", "run_once", "catch_up"],
)
def test_a_fire_within_grace_runs_normally_under_every_policy(
    policy: MisfirePolicy, runs: list[tuple[int, int]], missed: list[tuple[int, str]]
) -> None:
    now = outage(at(5, 0, 30))
    for plan in plans(policy, now):
        assert [(r.instant, r.coalesced) for r in plan.runs] == [(at(h), n) for h, n in runs]
        assert [(m.instant, m.reason) for m in plan.missed] == [(at(h), r) for h, r in missed]
        assert plan.runs[-1] == PlannedRun(at(5), 30.0, coalesced=runs[-1][1])


@pytest.mark.parametrize("mode", ["skip", "run_once", "catch_up"])
def test_grace_boundary_late_by_exactly_grace_is_on_time(mode: str) -> None:
    policy = MisfirePolicy(mode=mode, grace_s=60)  # type: ignore[arg-type]
    on_time = plan_missed([at(5)], at(5, 1), policy)
    assert on_time == MisfirePlan(runs=(PlannedRun(at(5), 60.0),))
    just_late = plan_missed([at(5)], at(5, 1) + timedelta(microseconds=1), policy)
    if mode == "skip":
        assert just_late.runs == ()
        assert [m.reason for m in just_late.missed] == [SKIPPED]
    else:  # a lone missed fire runs under run_once and catch_up
        assert [r.instant for r in just_late.runs] == [at(5)]
        assert just_late.missed == ()


def test_grace_zero_and_the_reason_names_it() -> None:
    plan = plan_missed([at(1)], at(1, seconds=0.5), MisfirePolicy(mode="skip", grace_s=0))
    assert [m.reason for m in plan.missed] == ["skipped: missed while down (grace 0s exceeded)"]
    plan = plan_missed([at(1)], at(1), MisfirePolicy(mode="skip", grace_s=0))
    assert [r.instant for r in plan.runs] == [at(1)]


@pytest.mark.parametrize("mode", ["skip", "run_once", "catch_up"])
def test_every_due_fire_is_run_or_recorded_exactly_once(mode: str) -> None:
    rng = random.Random(7)
    for _ in range(200):
        now = at(10)
        due = [now - timedelta(seconds=rng.randrange(0, 7200)) for _ in range(rng.randrange(30))]
        policy = MisfirePolicy(
            mode=mode,  # type: ignore[arg-type]
            grace_s=rng.choice([0, 60, 600]),
            catch_up_limit=rng.randrange(1, 5),
        )
        plan = plan_missed(due, now, policy)
        seen = [r.instant for r in plan.runs] + [m.instant for m in plan.missed]
        assert sorted(seen) == sorted(set(due))
        assert [r.instant for r in plan.runs] == sorted(r.instant for r in plan.runs)
        on_time = {t for t in due if late(t, now) <= policy.grace_s}
        assert on_time <= {r.instant for r in plan.runs}
        assert sum(r.coalesced for r in plan.runs) == sum(
            m.reason.startswith("coalesced") for m in plan.missed
        )
        if mode == "run_once":
            assert len(plan.runs) == len(on_time) or len(plan.runs) == 1


def test_plan_missed_sorts_and_merges_duplicates_and_converts_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    due = [at(3), at(1), at(3), at(2).astimezone(paris)]
    plan = plan_missed(due, at(4), MisfirePolicy(mode="skip"))
    assert [m.instant for m in plan.missed] == [at(1), at(2), at(3)]
    assert all(m.instant.utcoffset() == timedelta(0) for m in plan.missed)
    assert plan_missed([], at(4), MisfirePolicy()) == MisfirePlan()
    assert MisfirePlan().through is None


def test_plan_missed_refuses_future_and_naive_instants() -> None:
    with pytest.raises(ScheduleError, match="is not due"):
        plan_missed([at(5)], at(4), MisfirePolicy())
    with pytest.raises(ScheduleError, match="naive"):
        plan_missed([datetime(2025, 1, 1)], at(4), MisfirePolicy())
    with pytest.raises(ScheduleError, match="naive"):
        plan_missed([], datetime(2025, 1, 1), MisfirePolicy())


class Counting:
    """A schedule that counts how often it is asked, to show the window is read in pages."""

    def __init__(self, inner: Every) -> None:
        self.inner = inner
        self.calls = 0

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        self.calls += 1
        return self.inner.fires_between(start, end, limit)


@pytest.mark.parametrize(
    ("policy", "reason", "runs"),
    [
        (MisfirePolicy(mode="skip"), SKIPPED, []),
        (MisfirePolicy(mode="run_once"), "coalesced into 2025-01-02T01:00:00+00:00", [(25, 24)]),
        (
            MisfirePolicy(mode="catch_up", catch_up_limit=3),
            "beyond catch_up_limit (3)",
            [(23, 0), (24, 0), (25, 0)],
        ),
    ],
    ids=["skip", "run_once", "catch_up"],
)
def test_a_long_window_lists_the_latest_fires_and_summarises_older_ones(
    policy: MisfirePolicy, reason: str, runs: list[tuple[int, int]]
) -> None:
    schedule = Counting(HOURLY)
    plan = plan_window(schedule, at(0), at(25, 30), policy, max_listed=10)
    assert schedule.calls == 3  # 10 + 10 + 5 fires
    assert plan.unlisted == MissedRange(first=at(1), last=at(15), count=15, reason=reason)
    listed = [r.instant for r in plan.runs] + [m.instant for m in plan.missed]
    assert sorted(listed) == [at(h) for h in range(16, 26)]
    assert [(r.instant, r.coalesced) for r in plan.runs] == [(at(h), n) for h, n in runs]
    assert {m.reason for m in plan.missed} == {reason}
    assert plan.through == at(25)


def test_plan_window_of_an_empty_or_exhausted_window() -> None:
    assert plan_window(HOURLY, at(1), at(1, 59), MisfirePolicy()) == MisfirePlan()
    assert plan_window(HOURLY, at(2), at(1), MisfirePolicy()) == MisfirePlan()


def test_plan_window_refuses_a_schedule_that_answers_outside_the_window() -> None:
    class Broken:
        def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
            return [start]

    with pytest.raises(ScheduleError, match="outside the window"):
        plan_window(Broken(), at(0), at(5), MisfirePolicy())


def test_plan_window_lists_at_least_the_catch_up_limit() -> None:
    with pytest.raises(ConfigError, match=r"misfire\.max_listed"):
        plan_window(HOURLY, at(0), at(5), MisfirePolicy(catch_up_limit=20), max_listed=10)


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("mode", "latest", "misfire.mode"),
        ("mode", None, "misfire.mode"),
        ("grace_s", -1, "misfire.grace_s"),
        ("grace_s", float("nan"), "misfire.grace_s"),
        ("grace_s", "60", "misfire.grace_s"),
        ("catch_up_limit", 0, "misfire.catch_up_limit"),
        ("catch_up_limit", 2.0, "misfire.catch_up_limit"),
        ("catch_up_limit", True, "misfire.catch_up_limit"),
    ],
)
def test_misfire_policy_refuses_bad_values(field: str, value: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MisfirePolicy(**{field: value})  # type: ignore[arg-type]
    assert caught.value.key == key


def test_misfire_policy_defaults() -> None:
    assert MisfirePolicy() == MisfirePolicy(mode="run_once", grace_s=60.0, catch_up_limit=10)
