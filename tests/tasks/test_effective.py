"""A task's schedule, options and timeout with the configuration's overrides applied."""

from __future__ import annotations

import pytest

from config import SchedulerSettings, TaskOverride
from tasks import TaskDefinitionError, effective_options, effective_schedule, effective_timeout_s
from tasks.maintenance import HealthCheck, LogCleanup, LogCleanupOptions
from tests.tasks.sample_tasks import Echo, EchoOptions


def test_without_override_the_class_defaults_apply() -> None:
    assert effective_schedule(LogCleanup, None) == "0 3 * * *"
    assert effective_options(LogCleanup, None) == LogCleanupOptions()


def test_an_override_replaces_what_it_sets() -> None:
    override = TaskOverride(
        task_id="maintenance.log_cleanup",
        schedule="0 2 * * *",
        options={"retention_days": 7, "max_executions": 5000},
    )
    assert effective_schedule(LogCleanup, override) == "0 2 * * *"
    assert effective_options(LogCleanup, override) == LogCleanupOptions(
        retention_days=7.0, max_executions=5000
    )
    only_enabled = TaskOverride(task_id="maintenance.log_cleanup", enabled=False)
    assert effective_schedule(LogCleanup, only_enabled) == "0 3 * * *"
    assert effective_options(LogCleanup, only_enabled) == LogCleanupOptions()


def test_options_of_a_user_task_are_named_by_its_id() -> None:
    override = TaskOverride(task_id="user.echo_1", options={"text": 5})
    with pytest.raises(TaskDefinitionError) as caught:
        effective_options(Echo, override)
    assert str(caught.value) == "task user.echo_1: options.text: expected a string, not int"
    ok = TaskOverride(task_id="user.echo_1", schedule="@hourly", options={"text": "hi"})
    assert effective_options(Echo, ok) == EchoOptions(text="hi")
    assert effective_schedule(Echo, ok) == "@hourly"


def test_a_class_without_default_needs_a_scheduled_override() -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        effective_schedule(Echo, TaskOverride(task_id="user.echo_1"))
    assert str(caught.value) == (
        "task class tests.tasks.sample_tasks:Echo has no default_schedule: the task needs a "
        "schedule"
    )


def test_the_override_of_another_task_does_not_apply() -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        effective_schedule(LogCleanup, TaskOverride(task_id="maintenance.health_check"))
    assert str(caught.value) == (
        "the settings of task 'maintenance.health_check' do not apply to "
        "tasks.maintenance:LogCleanup, the task 'maintenance.log_cleanup'"
    )


def test_timeout_is_the_class_s_else_the_scheduler_default() -> None:
    settings = SchedulerSettings(default_timeout_s=120.0)
    assert effective_timeout_s(LogCleanup, settings) == 600.0
    assert effective_timeout_s(HealthCheck, settings) == 60.0
    assert effective_timeout_s(Echo, settings) == 120.0
