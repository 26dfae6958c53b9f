"""A task's policy maps over the defaults of ``[scheduler]``: only what a task sets overrides,
and every bad key or value is a ConfigError naming ``<map>.<key>``."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError
from config.sections import SchedulerSettings
from scheduler import DstPolicy
from scheduler.policies import task_policies

SETTINGS = SchedulerSettings(
    default_retry_count=2, default_retry_delay_s=10.0, default_timeout_s=50
)


def test_no_maps_give_the_defaults_of_the_scheduler_section() -> None:
    policies = task_policies(SETTINGS)
    assert (policies.retry.max_attempts, policies.retry.base_delay_s) == (3, 10.0)
    assert policies.misfire.mode == "run_once"
    assert policies.run.dst == DstPolicy()
    assert policies.timeout_s(SETTINGS) == 50


def test_a_task_overrides_only_what_it_sets() -> None:
    policies = task_policies(
        SETTINGS,
        misfire={"mode": "catch_up", "catch_up_limit": 3},
        retry={"max_attempts": 5, "non_retryable": ["KeyError"]},
        run={"dst_fold": "both", "timeout_s": 5, "jitter_s": 2},
    )
    assert (policies.misfire.mode, policies.misfire.catch_up_limit) == ("catch_up", 3)
    assert policies.misfire.grace_s == 60.0
    assert (policies.retry.max_attempts, policies.retry.base_delay_s) == (5, 10.0)
    assert policies.retry.non_retryable == ("KeyError",)
    assert policies.run.dst == DstPolicy(fold="both")
    assert (policies.timeout_s(SETTINGS), policies.run.jitter_s) == (5, 2)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("misfire", {"mode": "later"}, "misfire_policy.mode"),
    ("misfire", {"grace": 1}, "misfire_policy.grace"),
    ("misfire", {"catch_up_limit": 0}, "misfire_policy.catch_up_limit"),
    ("retry", {"max_attempts": "3"}, "retry_policy.max_attempts"),
    ("retry", {"factor": 0.5}, "retry_policy.factor"),
    ("retry", {"base_delay_s": 7200}, "retry_policy.max_delay_s"),
    ("retry", {"non_retryable": ["not a name"]}, "retry_policy.non_retryable"),
    ("run", {"dst_gap": "never"}, "run_policy.dst_gap"),
    ("run", {"dst_fold": 2}, "run_policy.dst_fold"),
    ("run", {"timeout_s": 0}, "run_policy.timeout_s"),
    ("run", {"allow_overlap": "yes"}, "run_policy.allow_overlap"),
]


@pytest.mark.parametrize(("kind", "given", "key"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_policy_names_its_key(kind: str, given: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        task_policies(SETTINGS, **{kind: given})
    assert caught.value.key == key


def test_a_policy_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected a map"):
        task_policies(SETTINGS, retry=[1, 2])  # type: ignore[arg-type]
