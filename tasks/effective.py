"""A task's schedule, options and timeout once the configuration's ``[tasks."<id>"]`` applies."""

from __future__ import annotations

from config.sections import SchedulerSettings, TaskOverride
from tasks.base import BaseTask
from tasks.errors import TaskDefinitionError
from tasks.options import TaskOptions


def effective_schedule(cls: type[BaseTask], override: TaskOverride | None) -> str:
    """The override's schedule if it sets one, else the class's default (required then)."""
    _check_applies(cls, override)
    if override is not None and override.schedule is not None:
        return override.schedule
    if not cls.default_schedule:
        raise TaskDefinitionError(
            f"task class {cls.key()} has no default_schedule: the task needs a schedule"
        )
    return cls.default_schedule


def effective_options(cls: type[BaseTask], override: TaskOverride | None) -> TaskOptions:
    """The class's options with the override's ``options`` table over the defaults."""
    _check_applies(cls, override)
    if override is None:
        return cls.read_options({})
    return cls.read_options(override.options, task_id=override.task_id)


def effective_timeout_s(cls: type[BaseTask], settings: SchedulerSettings) -> float:
    """The class's own timeout, else ``scheduler.default_timeout_s``."""
    return float(cls.timeout_s) if cls.timeout_s is not None else settings.default_timeout_s


def _check_applies(cls: type[BaseTask], override: TaskOverride | None) -> None:
    if override is not None and cls.task_id and override.task_id != cls.task_id:
        raise TaskDefinitionError(
            f"the settings of task {override.task_id!r} do not apply to {cls.key()}, the task "
            f"{cls.task_id!r}"
        )
