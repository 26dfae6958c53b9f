"""The registry's checks of a task class: each returns what is wrong, or raises it."""

from __future__ import annotations

import inspect
import math

from config.errors import ConfigError, ScheduleSyntaxError
from config.schedules import parse_schedule_spec
from config.sections import CATEGORIES, check_task_id
from tasks.base import BaseTask
from tasks.errors import TaskDefinitionError
from tasks.options import TaskOptions, option_converters
from tasks.permissions import CODE_DEFINED


def problem(cls: type[BaseTask]) -> str | None:
    """What makes ``cls`` unusable as a task, or None."""
    for check in (_interface, _identity, _schedule, _options, _limits):
        found = check(cls)
        if found:
            return found
    return None


def _interface(cls: type[BaseTask]) -> str | None:
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        return f"is abstract: {missing} not implemented"
    if not inspect.iscoroutinefunction(cls.execute):
        return "execute must be an 'async def' (it is awaited by the executor)"
    return None


def _identity(cls: type[BaseTask]) -> str | None:
    task_id, category = cls.task_id, cls.category
    if not isinstance(task_id, str):
        return f"task_id must be a str, not {type(task_id).__name__}"
    if task_id:
        try:
            check_task_id(task_id)
        except ConfigError as error:
            return f"task_id {task_id!r} is not valid: expected {error.expected}"
    if category not in CATEGORIES:
        hint = "" if category else " (declare it, or set task_id)"
        return f"category {category!r} is not one of {', '.join(CATEGORIES)}{hint}"
    if task_id and task_id.split(".", 1)[0] != category:
        return f"category {category!r} does not match task_id {task_id!r}"
    if not task_id and category in CODE_DEFINED:
        return f"task_id is required: {category} tasks are code-defined, one class per task"
    return None


def _schedule(cls: type[BaseTask]) -> str | None:
    schedule = cls.default_schedule
    if not isinstance(schedule, str):
        return f"default_schedule must be a str, not {type(schedule).__name__}"
    if schedule:
        try:  # the grammar of config.schedules.check_schedule, for its precise problem
            parse_schedule_spec(schedule)
        except ScheduleSyntaxError as error:
            return f"default_schedule {schedule!r} is not valid: {error.problem}"
    elif cls.task_id:
        return f"default_schedule is required for the code-defined task {cls.task_id!r}"
    if not isinstance(cls.description, str):
        return f"description must be a str, not {type(cls.description).__name__}"
    return None


def _options(cls: type[BaseTask]) -> str | None:
    options = cls.Options
    if not isinstance(options, type) or not issubclass(options, TaskOptions):
        return f"Options must be a subclass of TaskOptions, not {options!r}"
    try:
        option_converters(options)
    except TaskDefinitionError as error:
        return str(error)
    return None


def _limits(cls: type[BaseTask]) -> str | None:
    timeout = cls.timeout_s
    if timeout is not None and (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        return f"timeout_s must be None or a number > 0, not {timeout!r}"
    for flag in ("allow_overlap", "idle_only"):
        if not isinstance(getattr(cls, flag), bool):
            return f"{flag} must be True or False, not {getattr(cls, flag)!r}"
    return None
