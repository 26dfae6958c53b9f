"""Task definitions compiled for the timing engine: a schedule in its time zone under its DST
rules, and the three policy maps with ``[scheduler]``'s defaults. A definition is compiled once
per request (the readers in ``actors.scheduling.requests`` check the request's fields), before
anything is stored; every problem is an InvalidValue naming the field.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from config.cron import CRON_RULES
from config.errors import ConfigError
from config.sections import SchedulerSettings
from scheduler import CronSchedule, Schedule, ScheduleError, changed_meaning, compile_schedule
from scheduler.policies import TaskPolicies, task_policies
from store.errors import InvalidValue
from store.records import TaskRecord, TaskSpec

POLICY_FIELDS = ("misfire_policy", "retry_policy", "run_policy")
EDITABLE = ("task_class", "schedule", "timezone", "config", "enabled", *POLICY_FIELDS)


class Definition(Protocol):
    """What compiling reads of a task: a request's fields, a spec or a stored record
    (``timezone`` None: ``[scheduler] default_timezone``)."""

    @property
    def schedule(self) -> str: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def misfire_policy(self) -> Mapping[str, Any] | None: ...
    @property
    def retry_policy(self) -> Mapping[str, Any] | None: ...
    @property
    def run_policy(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Compiled:
    """A definition's schedule and policies."""

    schedule: Schedule
    policies: TaskPolicies


@dataclass(frozen=True, slots=True)
class CompiledTask:
    """A stored task ready for the timing engine."""

    record: TaskRecord
    schedule: Schedule
    policies: TaskPolicies

    @property
    def task_id(self) -> str:
        return self.record.task_id


def compile_definition(task: Definition, settings: SchedulerSettings) -> Compiled:
    """Raises InvalidValue naming the field that cannot be compiled."""
    misfire, retry, run = task.misfire_policy, task.retry_policy, task.run_policy
    try:
        if misfire is None and retry is None and run is None:
            policies = default_policies(settings)
        else:
            policies = task_policies(settings, misfire=misfire, retry=retry, run=run)
    except ConfigError as error:
        raise InvalidValue(error.key, f"{error.value!r}: expected {error.expected}") from error
    try:
        zone = task.timezone or settings.default_timezone
        schedule = compile_schedule(task.schedule, zone, dst_policy=policies.run.dst)
    except ScheduleError as error:
        field = "timezone" if "time zone" in str(error) else "schedule"
        raise InvalidValue(field, str(error)) from error
    return Compiled(schedule, policies)


@functools.lru_cache(maxsize=8)
def default_policies(settings: SchedulerSettings) -> TaskPolicies:
    """The policies of a task that sets none of its three maps: ``[scheduler]``'s defaults,
    compiled once per settings (immutable, so every such task shares them)."""
    return task_policies(settings)


def compile_task(record: TaskRecord, settings: SchedulerSettings) -> CompiledTask:
    """Raises InvalidValue naming the field that cannot be compiled."""
    compiled = compile_definition(record, settings)
    return CompiledTask(record, compiled.schedule, compiled.policies)


def fires_anew(stored: TaskRecord | None, spec: TaskSpec) -> bool:
    """Whether storing ``spec`` over ``stored`` starts its fires afresh: a new task, a changed
    schedule (its expression, zone or DST rules, all in the run policy) and a task being enabled
    owe the fires after the change, not those before it."""
    if stored is None:
        return True
    if spec.enabled and not stored.enabled:
        return True
    return (spec.schedule, spec.timezone, spec.run_policy) != (
        stored.schedule,
        stored.timezone,
        stored.run_policy,
    )


def check_fires_after(schedule: Schedule, text: str, now: datetime) -> None:
    """InvalidValue if ``schedule`` (compiled from ``text``) has no fire after ``now`` (a
    one-shot in the past), which would be stored and never run."""
    if schedule.next_fire(now) is None:
        raise InvalidValue(
            "schedule",
            f"{text!r} has no fire after now ({now.isoformat(timespec='seconds')}): "
            "a one-shot's instant must be in the future",
        )


def accounted_through(record: TaskRecord) -> datetime:
    """The instant after which the stored task's fires are owed (see the store's schema)."""
    return record.accounted_through or record.last_run or record.created_at


def spec_of(record: TaskRecord) -> TaskSpec:
    return TaskSpec(
        task_id=record.task_id,
        task_class=record.task_class,
        schedule=record.schedule,
        config=record.config,
        enabled=record.enabled,
        timezone=record.timezone,
        misfire_policy=record.misfire_policy,
        retry_policy=record.retry_policy,
        run_policy=record.run_policy,
        owner=record.owner,
        paused=record.paused,
        note=record.note,
    )


def meaning_note(task: CompiledTask, now: datetime) -> str | None:
    """Why the stored task's cron schedule now fires otherwise than when it was written, if it
    was written under older cron rules (``cron_rules``) and its next fires differ; else None."""
    record, schedule = task.record, task.schedule
    if record.cron_rules >= CRON_RULES or not isinstance(schedule, CronSchedule):
        return None
    changed = changed_meaning(schedule, now)
    if changed is None:
        return None
    old, new = (_when(instant) for instant in changed)
    return (
        f"schedule {record.schedule!r} now reads as Vixie cron does "
        f"(docs/scheduling.md#cron-semantics): its first fire that differs is {new}, which was "
        f"{old} when the schedule was stored; any update of the task clears this note"
    )


def _when(instant: datetime | None) -> str:
    return "never" if instant is None else instant.isoformat(timespec="seconds")
