"""Compiling definitions: a task that sets none of its policy maps gets ``[scheduler]``'s
defaults, compiled once per settings and shared; one that sets a map gets its own."""

from __future__ import annotations

from actors.scheduling.definitions import compile_definition, default_policies
from config.sections import SchedulerSettings
from scheduler.policies import task_policies
from store.records import TaskSpec


def spec(task_id: str, **changes: object) -> TaskSpec:
    return TaskSpec(task_id=task_id, task_class="x:Y", schedule="@hourly", **changes)  # type: ignore[arg-type]


def test_tasks_without_policy_maps_share_the_settings_defaults() -> None:
    settings = SchedulerSettings(default_retry_count=7)
    first = compile_definition(spec("user.a"), settings).policies
    second = compile_definition(spec("user.b"), settings).policies
    assert first is second
    assert first == task_policies(settings)
    assert first.retry.max_attempts == 8  # the settings' own: 7 retries after the first run
    other = compile_definition(spec("user.c"), SchedulerSettings()).policies
    assert other == task_policies(SchedulerSettings())
    assert other != first
    assert default_policies(settings) is first


def test_a_task_with_a_policy_map_is_compiled_on_its_own() -> None:
    settings = SchedulerSettings()
    own = compile_definition(spec("user.a", run_policy={"jitter_s": 5}), settings).policies
    assert own.run.jitter_s == 5
    assert own == task_policies(settings, run={"jitter_s": 5})
    assert own is not default_policies(settings)
