"""The retry delay sequence, jitter, the non-retryable path, exhaustion and dead letters."""

from __future__ import annotations

from datetime import datetime

import pytest

from actors.scheduling.events import dead_letter_event
from actors.scheduling.protocol import RunResult
from actors.scheduling.retries import dead_letter
from config import ConfigError, SchedulerSettings
from scheduler.errors import ScheduleError
from scheduler.retry import RetryDecision, RetryPolicy, error_names
from store.errors import InvalidValue
from store.records import NewDeadLetter

from .fakes import at

KEY = "maintenance.vacuum@2025-01-01T03:00:00+00:00"


def delays(policy: RetryPolicy, key: str = KEY) -> list[float]:
    """The delay before each retry until the policy gives up on a retryable error."""
    found: list[float] = []
    attempt = 1
    while (decision := policy.decide(attempt, "OSError", key)).retry:
        found.append(decision.delay_s)
        attempt += 1
    assert decision.reason == f"exhausted after {attempt} attempt{'s' * (attempt > 1)}"
    assert attempt == policy.max_attempts
    return found


def test_the_defaults_follow_the_scheduler_settings() -> None:
    policy = RetryPolicy.from_settings(SchedulerSettings())
    assert policy == RetryPolicy()
    assert policy.max_attempts == SchedulerSettings().default_retry_count + 1
    assert delays(policy) == [60.0, 120.0, 240.0]


def test_the_delay_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10)
    assert delays(policy) == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]


def test_a_retry_decision_says_what_comes_next() -> None:
    decision = RetryPolicy().decide(2, "OSError", KEY)
    assert decision == RetryDecision(
        attempt=2, retry=True, delay_s=120.0, reason="attempt 3 of 4 in 120s"
    )
    assert decision.retry_at(at(3, 0, 5)) == at(3, 2, 5)


def test_jitter_is_bounded_reproducible_and_spreads_fires() -> None:
    policy = RetryPolicy(jitter_s=30.0, max_attempts=12)
    plain = RetryPolicy(max_attempts=12)
    for attempt in range(1, 12):
        backoff = plain.backoff_s(attempt)
        for key in (f"user.report@{h}" for h in range(50)):
            delay = policy.decide(attempt, "OSError", key).delay_s
            assert backoff <= delay < backoff + 30.0
            assert policy.decide(attempt, "OSError", key).delay_s == delay
    firsts = {policy.decide(1, "OSError", f"user.report@{h}").delay_s for h in range(50)}
    assert len(firsts) == 50
    assert delays(policy) == delays(RetryPolicy(jitter_s=30.0, max_attempts=12))
    assert delays(policy, "a") != delays(policy, "b")


@pytest.mark.parametrize("name", ["ValueError", "TypeError", "TaskPermissionError"])
def test_bad_input_and_denials_are_final_at_once(name: str) -> None:
    decision = RetryPolicy().decide(1, name, KEY)
    assert decision == RetryDecision(attempt=1, retry=False, reason=f"non-retryable {name}")
    with pytest.raises(ScheduleError, match="no retry after attempt 1: non-retryable"):
        decision.retry_at(at(3))


def test_a_subclass_of_a_non_retryable_class_is_final_too() -> None:
    error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    names = error_names(error)
    assert names[:3] == ("UnicodeDecodeError", "UnicodeError", "ValueError")
    assert "object" not in names
    decision = RetryPolicy().decide(1, names, KEY)
    assert decision.reason == "non-retryable UnicodeDecodeError (a ValueError)"
    assert RetryPolicy().decide(1, "UnicodeDecodeError", KEY).retry  # the name alone: unknown


def test_non_retryable_wins_over_exhaustion_and_is_configurable() -> None:
    policy = RetryPolicy(max_attempts=2, non_retryable=("KeyError",))
    assert policy.decide(2, "KeyError", KEY).reason == "non-retryable KeyError"
    assert policy.decide(1, "ValueError", KEY).retry
    assert policy.decide(2, "ValueError", KEY).reason == "exhausted after 2 attempts"
    assert RetryPolicy(non_retryable=()).decide(1, error_names(TypeError()), KEY).retry


def test_a_task_overrides_the_scheduler_defaults() -> None:
    settings = SchedulerSettings(
        default_retry_count=5, default_retry_delay_s=10.0, max_retry_delay_s=100.0
    )
    assert delays(RetryPolicy.from_settings(settings)) == [10, 20, 40, 80, 100]
    no_retry = RetryPolicy.from_settings(settings, retry_count=0)
    assert no_retry.decide(1, "OSError", KEY).reason == "exhausted after 1 attempt"
    mine = RetryPolicy.from_settings(
        settings,
        retry_count=2,
        retry_delay_s=1.0,
        max_retry_delay_s=2.0,
        factor=3.0,
        jitter_s=0.5,
        non_retryable=("KeyError",),
    )
    assert mine == RetryPolicy(
        base_delay_s=1.0,
        factor=3.0,
        max_delay_s=2.0,
        jitter_s=0.5,
        max_attempts=3,
        non_retryable=("KeyError",),
    )
    with pytest.raises(ConfigError) as caught:
        RetryPolicy.from_settings(settings, retry_delay_s=500.0)  # above the settings' cap
    assert caught.value.key == "retry.max_delay_s"
    with pytest.raises(ConfigError) as caught:
        RetryPolicy.from_settings(settings, retry_count=-1)
    assert caught.value.key == "retry.retry_count"


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("base_delay_s", -1.0, "retry.base_delay_s"),
        ("factor", 0.5, "retry.factor"),
        ("max_delay_s", 30.0, "retry.max_delay_s"),  # below base_delay_s
        ("jitter_s", float("inf"), "retry.jitter_s"),
        ("max_attempts", 0, "retry.max_attempts"),
        ("max_attempts", 1000, "retry.max_attempts"),
        ("non_retryable", ["ValueError"], "retry.non_retryable"),
        ("non_retryable", ("not a name",), "retry.non_retryable"),
    ],
)
def test_retry_policy_refuses_bad_values(field: str, value: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(**{field: value})  # type: ignore[arg-type]
    assert caught.value.key == key


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0])
def test_attempts_count_from_one(attempt: object) -> None:
    with pytest.raises(ScheduleError, match="attempt counts from 1"):
        RetryPolicy().decide(attempt, "OSError", KEY)  # type: ignore[arg-type]


def test_an_error_must_be_named() -> None:
    with pytest.raises(ScheduleError, match="names no exception class"):
        RetryPolicy().decide(1, (), KEY)


def test_a_dead_letter_records_the_fire_and_why() -> None:
    """One shape end to end: the store's NewDeadLetter, and the event is its plain form (with
    ``scheduled``, the former name of ``scheduled_at``, kept for listeners)."""
    policy = RetryPolicy(max_attempts=2)
    decision = policy.decide(2, "OSError", KEY)
    failure = RunResult(
        execution_id="0190a0a0-0000-7000-8000-000000000000",
        task_id="maintenance.vacuum",
        scheduled_at=at(3),
        attempt=decision.attempt,
        success=False,
        completed_at=at(3, 1),
        error_type=("OSError", "Exception"),
        error_message="disk full",
    )
    letter = dead_letter("maintenance.vacuum", failure, decision)
    assert letter == NewDeadLetter(
        task_id="maintenance.vacuum",
        scheduled_at=at(3),
        attempts=2,
        error_type="OSError",
        last_error="disk full",
        reason="exhausted after 2 attempts",
        failed_at=at(3, 1),
    )
    assert dead_letter_event(letter) == {
        "task_id": "maintenance.vacuum",
        "scheduled": "2025-01-01T03:00:00+00:00",
        "scheduled_at": "2025-01-01T03:00:00+00:00",
        "attempts": 2,
        "error_type": "OSError",
        "last_error": "disk full",
        "reason": "exhausted after 2 attempts",
        "failed_at": "2025-01-01T03:01:00+00:00",
    }
    with pytest.raises(InvalidValue, match="naive"):
        NewDeadLetter(
            task_id="maintenance.vacuum",
            scheduled_at=datetime(2025, 1, 1),
            attempts=1,
            error_type="ValueError",
            last_error="bad",
            reason="non-retryable ValueError",
            failed_at=at(3),
        )
