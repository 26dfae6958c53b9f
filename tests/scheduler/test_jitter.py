"""Jitter: bounded, reproducible, different per task; the fire's own instant is untouched."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from scheduler import ScheduleError, jittered

FIRE = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)
TASKS = [f"user.task_{n}" for n in range(1000)]


def delay_s(task_id: str, max_jitter_s: float, instant: datetime = FIRE) -> float:
    return (jittered(instant, task_id, max_jitter_s) - instant).total_seconds()


@pytest.mark.parametrize("max_jitter_s", [0.000001, 0.5, 1, 30.0, 3600, 86_400.0])
def test_the_delay_stays_within_bounds(max_jitter_s: float) -> None:
    for task in TASKS:
        assert 0 <= delay_s(task, max_jitter_s) <= max_jitter_s


def test_the_same_task_and_instant_get_the_same_delay() -> None:
    assert jittered(FIRE, "user.mail", 60) == jittered(FIRE, "user.mail", 60)
    same_instant = FIRE.astimezone(timezone(timedelta(hours=-5)))
    assert jittered(same_instant, "user.mail", 60) == jittered(FIRE, "user.mail", 60)
    assert jittered(same_instant, "user.mail", 60).tzinfo is UTC


def test_tasks_and_fires_get_different_delays() -> None:
    delays = [delay_s(task, 60) for task in TASKS]
    assert len(set(delays)) > 990  # microsecond resolution: collisions are rare, not forbidden
    later = [delay_s("user.mail", 60, FIRE + timedelta(hours=h)) for h in range(100)]
    assert len(set(later)) > 95


def test_the_delays_spread_over_the_whole_range() -> None:
    delays = sorted(delay_s(task, 100) for task in TASKS)
    assert delays[0] < 5
    assert delays[-1] > 95
    assert 40 < sum(delays) / len(delays) < 60  # a fixed hash, so this is not flaky
    quarters = [sum(1 for d in delays if q * 25 <= d < (q + 1) * 25) for q in range(4)]
    assert min(quarters) > 200


def test_no_jitter_leaves_the_instant_alone() -> None:
    assert jittered(FIRE, "user.mail", 0) == FIRE
    assert jittered(FIRE, "user.mail", 0.0) == FIRE


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, math.inf, True, "5", None])
def test_a_bad_bound_is_refused(bad: Any) -> None:
    with pytest.raises(ScheduleError, match="max_jitter_s must be a finite number >= 0"):
        jittered(FIRE, "user.mail", bad)


def test_a_naive_instant_or_a_non_string_task_is_refused() -> None:
    with pytest.raises(ScheduleError, match="instant must be an aware datetime"):
        jittered(datetime(2024, 6, 1, 3, 0), "user.mail", 60)
    with pytest.raises(ScheduleError, match="task_id must be a string"):
        jittered(FIRE, 7, 60)  # type: ignore[arg-type]
