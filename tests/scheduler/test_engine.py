"""The timing engine driven by a fake clock: precise sleeps, wake-ups on change, downtime, and
wall-clock jumps backward (no double fire) and forward (no stall, missed fires planned)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from config import ConfigError
from scheduler.clock import FakeClock, Reading, SystemClock, wall_jump_s
from scheduler.compiled import compile_schedule
from scheduler.engine import TimingEngine
from scheduler.errors import ScheduleError
from scheduler.misfire import FireTimes, MisfirePolicy

from .fakes import Driver, Every, Once, at

HOURLY = Every(3600)
RUN_ONCE = MisfirePolicy(mode="run_once")
SKIPPED = "skipped: missed while down (grace 60s exceeded)"


def started(at_wall: float = 0.0, max_sleep_s: float = 60.0) -> Driver:
    """An engine with the hourly task 'user.report' put at ``at_wall`` hours."""
    clock = FakeClock(at(at_wall), monotonic=1000.0)
    engine = TimingEngine(max_sleep_s=max_sleep_s)
    engine.put("user.report", HOURLY, RUN_ONCE, clock.wall())
    return Driver(engine, clock)


def test_the_loop_sleeps_until_the_next_fire_not_in_fixed_steps() -> None:
    driver = started(max_sleep_s=86_400)
    assert driver.engine.sleep_s(at(0, 0, 10)) == 3590.0
    driver.run_for(5 * 3600 + 1)
    assert driver.fired == [("user.report", at(h)) for h in (1, 2, 3, 4, 5)]
    assert driver.missed == []
    assert driver.wakes == 7  # start, one per fire, the end: no polling in between
    assert [mono for mono, _ in driver.plans] == [1000.0 + 3600 * h for h in (1, 2, 3, 4, 5)]


def test_long_sleeps_are_capped_so_a_jump_is_noticed() -> None:
    driver = started(max_sleep_s=60)
    assert driver.engine.sleep_s(at(0)) == 60.0
    assert driver.engine.sleep_s(at(0, 59, 30)) == 30.0
    assert driver.engine.sleep_s(at(2)) == 0.0  # overdue
    with pytest.raises(ConfigError):
        TimingEngine(max_sleep_s=0)


def test_putting_a_task_changes_the_next_wake() -> None:
    driver = started(max_sleep_s=86_400)
    now = at(0, 10)
    assert driver.engine.sleep_s(now) == 3000.0
    nxt = driver.engine.put("user.ping", Every(60), RUN_ONCE, now)
    assert nxt == at(0, 11)
    assert driver.engine.next_due() == ("user.ping", at(0, 11))
    assert driver.engine.sleep_s(now) == 60.0
    assert driver.engine.remove("user.ping") is True
    assert driver.engine.remove("user.ping") is False
    assert driver.engine.sleep_s(now) == 3000.0


def test_changing_a_schedule_creates_no_missed_fires() -> None:
    driver = started()
    driver.run_for(3600 * 1.5)  # fired 01:00, now 01:30
    driver.engine.put("user.report", Every(600), RUN_ONCE, driver.clock.wall())
    driver.run_for(1800)
    assert driver.fired == [("user.report", t) for t in (at(1), at(1, 40), at(1, 50), at(2))]
    assert driver.missed == []


def test_a_one_off_schedule_fires_once_and_then_nothing_is_pending() -> None:
    clock = FakeClock(at(0))
    engine = TimingEngine()
    assert engine.put("user.once", Once(at(0, 5)), RUN_ONCE, clock.wall()) == at(0, 5)
    driver = Driver(engine, clock)
    driver.run_for(3600)
    assert driver.fired == [("user.once", at(0, 5))]
    assert engine.sleep_s(clock.wall()) is None
    assert "user.once" in engine
    assert len(engine) == 1
    assert engine.put("user.once", Once(at(0, 5)), RUN_ONCE, clock.wall()) is None


@pytest.mark.parametrize(
    ("policy", "runs", "missed", "reason"),
    [
        (MisfirePolicy(mode="skip"), [], [1, 2, 3, 4, 5], SKIPPED),
        (MisfirePolicy(mode="run_once"), [5], [1, 2, 3, 4], "coalesced into 2025-01-01T05:00"),
        (
            MisfirePolicy(mode="catch_up", catch_up_limit=3),
            [3, 4, 5],
            [1, 2],
            "beyond catch_up_limit (3)",
        ),
    ],
    ids=["skip", "run_once", "catch_up"],
)
def test_downtime_goes_through_the_misfire_policy_on_restart(
    policy: MisfirePolicy, runs: list[int], missed: list[int], reason: str
) -> None:
    """Last fired 00:00 (from the store), back at 05:30: the first tick plans 01:00 to 05:00."""
    clock = FakeClock(at(5, 30))
    engine = TimingEngine()
    first = engine.put("user.report", HOURLY, policy, clock.wall(), last_fired=at(0))
    assert first == at(1)
    driver = Driver(engine, clock)
    driver.run_for(3600)
    assert driver.fired == [("user.report", at(h)) for h in [*runs, 6]]
    assert [(i, r[: len(reason)]) for _, i, r in driver.missed] == [(at(h), reason) for h in missed]
    assert engine.last_fired("user.report") == at(6)


def test_a_backward_jump_never_fires_an_instant_twice() -> None:
    driver = started()
    driver.jumps = {1000.0 + 3600 + 600: -1800.0}  # at 01:10 the wall clock goes back to 00:40
    driver.run_for(4 * 3600)
    counts = Counter(driver.fired)
    assert counts[("user.report", at(1))] == 1
    assert max(counts.values()) == 1
    # The wall clock reaches 02:00 again 30 minutes later than it otherwise would.
    assert driver.fired == [("user.report", at(h)) for h in (1, 2, 3)]
    assert [mono for mono, _ in driver.plans][1] == 1000.0 + 2 * 3600 + 1800
    assert driver.missed == []


def test_a_change_after_a_backward_jump_does_not_refire_the_last_fire() -> None:
    driver = started()
    driver.run_for(3600 + 60)  # fired 01:00, now 01:01
    driver.clock.jump(-3600)  # 00:01: 01:00 is "in the future" again
    now = driver.clock.wall()
    assert driver.engine.put("user.report", HOURLY, RUN_ONCE, now) == at(2)
    assert driver.engine.put("user.report", HOURLY, RUN_ONCE, now, last_fired=at(0)) == at(
        2
    )  # an older restored last fire does not move it back
    driver.run_for(3 * 3600)
    assert Counter(driver.fired)[("user.report", at(1))] == 1
    assert driver.fired == [("user.report", at(h)) for h in (1, 2, 3)]


def test_ticking_the_same_instant_twice_fires_once() -> None:
    engine = TimingEngine()
    engine.put("user.report", HOURLY, RUN_ONCE, at(0))
    assert [p.task_id for p in engine.tick(at(1))] == ["user.report"]
    assert engine.tick(at(1)) == []
    assert engine.tick(at(0, 30)) == []  # and the wall clock went back


@pytest.mark.parametrize(
    ("policy", "runs", "missed"),
    [
        (MisfirePolicy(mode="skip"), [], [1, 2, 3, 4, 5, 6]),
        (MisfirePolicy(mode="run_once"), [6], [1, 2, 3, 4, 5]),
        (MisfirePolicy(mode="catch_up", catch_up_limit=3), [4, 5, 6], [1, 2, 3]),
        (MisfirePolicy(mode="skip", grace_s=3600), [6], [1, 2, 3, 4, 5]),
    ],
    ids=["skip", "run_once", "catch_up", "skip-within-grace"],
)
def test_a_forward_jump_hands_the_skipped_fires_to_the_misfire_policy(
    policy: MisfirePolicy, runs: list[int], missed: list[int]
) -> None:
    clock = FakeClock(at(0), monotonic=1000.0)
    engine = TimingEngine(max_sleep_s=60)
    engine.put("user.report", HOURLY, policy, clock.wall())
    jump_at = 1000.0 + 1800 + 7.5  # at 00:30:07.5 the wall clock leaps to 06:10:07.5
    driver = Driver(engine, clock, jumps={jump_at: 5 * 3600 + 2400})
    driver.run_for(2 * 3600)  # the wall clock ends at 07:40

    (mono, plan), *later = driver.plans
    assert jump_at < mono <= jump_at + 60  # noticed on the next capped wake: no stall
    assert [r.instant for r in plan.plan.runs] == [at(h) for h in runs]
    assert [m.instant for m in plan.plan.missed] == [at(h) for h in missed]
    assert all(m.reason for m in plan.plan.missed)
    # Then the task carries on from the new wall time, without a burst.
    assert [(p.task_id, [r.instant for r in p.plan.runs]) for _, p in later] == [
        ("user.report", [at(7)])
    ]


def test_a_forward_jump_while_idle_for_long_is_noticed_within_max_sleep() -> None:
    clock = FakeClock(at(0), monotonic=0.0)
    engine = TimingEngine(max_sleep_s=300)
    engine.put("user.daily", Every(86_400), RUN_ONCE, clock.wall())  # next: tomorrow 00:00
    driver = Driver(engine, clock, jumps={10.0: 2 * 86_400.0})
    driver.run_for(600)
    ((mono, plan),) = driver.plans
    assert mono <= 10.0 + 300
    assert [(r.instant, r.coalesced) for r in plan.plan.runs] == [(at(48), 1)]
    assert [m.instant for m in plan.plan.missed] == [at(24)]


def test_many_tasks_each_fire_exactly_once_per_instant() -> None:
    clock = FakeClock(at(0))
    engine = TimingEngine(max_sleep_s=3600)
    periods = [60, 90, 300, 600, 900, 3600, 7200]
    for i in range(700):
        engine.put(f"user.t{i}", Every(periods[i % len(periods)]), RUN_ONCE, clock.wall())
    driver = Driver(engine, clock, jumps={5000.0: -900.0, 20_000.0: -60.0})
    driver.run_for(6 * 3600)
    fired = driver.fired
    assert max(Counter(fired).values()) == 1
    assert driver.missed == []
    per_task = Counter(task_id for task_id, _ in fired)
    elapsed_s = (clock.wall() - at(0)).total_seconds()  # 6 h less the 16 minutes jumped back
    assert per_task == {
        f"user.t{i}": int(elapsed_s // periods[i % len(periods)]) for i in range(700)
    }


def test_clock_readings_measure_a_jump() -> None:
    clock = FakeClock(at(0), monotonic=50.0)
    before = Reading.of(clock)
    clock.advance(10)
    assert wall_jump_s(before, Reading.of(clock)) == 0.0
    clock.jump(-3600)
    assert wall_jump_s(before, Reading.of(clock)) == -3600.0
    clock.jump(7200)
    assert wall_jump_s(before, Reading.of(clock)) == 3600.0
    assert clock.monotonic() == 60.0
    with pytest.raises(ScheduleError, match="advances by 0 seconds or more"):
        clock.advance(-1)
    system = Reading.of(SystemClock())
    assert system.wall.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["@hourly", "0 * * * *", "interval:3600"])
def test_compiled_schedules_plug_into_the_engine(text: str) -> None:
    """The real schedules satisfy FireTimes: downtime, then a forward jump, then steady fires."""
    schedule: FireTimes = compile_schedule(text)
    clock = FakeClock(at(5, 30), monotonic=0.0)
    engine = TimingEngine(max_sleep_s=60)
    assert engine.put("user.report", schedule, RUN_ONCE, clock.wall(), last_fired=at(0)) == at(1)
    driver = Driver(engine, clock, jumps={600.0: 3 * 3600.0})  # 05:40 -> 08:40
    driver.run_for(2 * 3600)
    assert driver.fired == [("user.report", at(h)) for h in (5, 8, 9, 10)]
    assert [i for _, i, _ in driver.missed] == [at(h) for h in (1, 2, 3, 4, 6, 7)]


def test_forgetting_a_task_drops_its_last_fire_so_a_reset_starts_afresh() -> None:
    driver = started()
    driver.run_for(3600 * 2 + 1)  # fired 01:00 and 02:00
    engine = driver.engine
    assert engine.next_fire("user.report") == at(3)
    assert engine.last_fired("user.report") == at(2)
    assert engine.forget("user.report") is True
    assert (engine.last_fired("user.report"), engine.next_fire("user.report")) == (None, None)
    assert "user.report" not in engine
    assert engine.put("user.report", HOURLY, RUN_ONCE, driver.clock.wall()) == at(3)


def test_a_tick_ahead_plans_the_fires_due_within_it_on_time_and_only_those() -> None:
    """``tick(now, ahead_s=...)``: the fires in ``(last, now + ahead_s]`` are planned now, their
    lateness counted from ``now`` (negative: on time even with no grace); the next fire is the
    first after the window, and a fire past the window waits."""
    engine = TimingEngine(max_sleep_s=86_400)
    strict = MisfirePolicy(mode="skip", grace_s=0.0)
    engine.put("user.ping", Every(60), strict, at(0))
    assert engine.tick(at(0, 0, 59.5), ahead_s=0.4) == []  # 00:01:00 is 0.5 s away
    (plan,) = engine.tick(at(0, 0, 59.5), ahead_s=0.5)
    assert plan.task_id == "user.ping"
    assert [(run.instant, run.late_s) for run in plan.plan.runs] == [(at(0, 1), -0.5)]
    assert plan.plan.missed == ()
    assert engine.next_fire("user.ping") == at(0, 2)
    assert engine.tick(at(0, 1), ahead_s=0.5) == []  # 00:01:00 is not planned twice
    assert engine.sleep_s(at(0, 1)) == 60.0
