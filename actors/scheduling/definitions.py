"""Task definitions: read from ``scheduler.task.create``/``update`` requests, checked by compiling
them, and compiled from the store's records for the timing engine.

A definition is checked completely before anything is stored: its id (``<category>.<name>``), its
schedule in its time zone under its DST rules, and its three policy maps. Every problem is an
InvalidValue naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from actors.store import payloads
from actors.store.errors import InvalidValue
from actors.store.payloads import Fields
from actors.store.records import TaskRecord, TaskSpec
from config.cron import CRON_RULES
from config.errors import ConfigError
from config.sections import SchedulerSettings, check_task_id
from scheduler import CronSchedule, Schedule, ScheduleError, changed_meaning, compile_schedule
from scheduler.policies import TaskPolicies, task_policies

POLICY_FIELDS = ("misfire_policy", "retry_policy", "run_policy")
EDITABLE = ("task_class", "schedule", "timezone", "config", "enabled", *POLICY_FIELDS)


@dataclass(frozen=True, slots=True)
class CompiledTask:
    """A stored task ready for the timing engine."""

    record: TaskRecord
    schedule: Schedule
    policies: TaskPolicies

    @property
    def task_id(self) -> str:
        return self.record.task_id


def compile_task(record: TaskRecord, settings: SchedulerSettings) -> CompiledTask:
    """Raises InvalidValue naming the field that cannot be compiled."""
    return CompiledTask(record, *_compile(record, settings))


def check(spec: TaskSpec, settings: SchedulerSettings) -> TaskSpec:
    """``spec``, once it compiles; InvalidValue naming the field otherwise."""
    _compile(spec, settings)
    return spec


def _compile(
    task: TaskRecord | TaskSpec, settings: SchedulerSettings
) -> tuple[Schedule, TaskPolicies]:
    try:
        policies = task_policies(
            settings, misfire=task.misfire_policy, retry=task.retry_policy, run=task.run_policy
        )
    except ConfigError as error:
        raise InvalidValue(error.key, f"{error.value!r}: expected {error.expected}") from error
    try:
        schedule = compile_schedule(task.schedule, task.timezone, dst_policy=policies.run.dst)
    except ScheduleError as error:
        field = "timezone" if "time zone" in str(error) else "schedule"
        raise InvalidValue(field, str(error)) from error
    return schedule, policies


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


def check_fires_after(spec: TaskSpec, settings: SchedulerSettings, now: datetime) -> None:
    """InvalidValue if the schedule has no fire after ``now`` (a one-shot in the past), which
    would be stored and never run."""
    schedule, _ = _compile(spec, settings)
    if schedule.next_fire(now) is None:
        raise InvalidValue(
            "schedule",
            f"{spec.schedule!r} has no fire after now ({now.isoformat(timespec='seconds')}): "
            "a one-shot's instant must be in the future",
        )


def accounted_through(record: TaskRecord) -> datetime:
    """The instant after which the stored task's fires are owed (see the store's schema)."""
    return record.accounted_through or record.last_run or record.created_at


def category(task_id: str) -> str:
    return task_id.partition(".")[0]


def task_id(fields: Fields) -> str:
    value = fields.required("task_id", payloads.identifier)
    try:
        check_task_id(value)
    except ConfigError as error:
        raise InvalidValue("task_id", f"{value!r}: expected {error.expected}") from error
    return value


def read_create(fields: Fields, *, owner: str, settings: SchedulerSettings) -> TaskSpec:
    spec = TaskSpec(
        task_id=task_id(fields),
        task_class=fields.required("task_class", payloads.text),
        schedule=fields.required("schedule", payloads.text),
        timezone=fields.optional("timezone", payloads.identifier, settings.default_timezone),
        config=fields.optional("config", payloads.mapping, {}),
        enabled=fields.optional("enabled", payloads.flag, True),
        misfire_policy=fields.optional("misfire_policy", payloads.mapping, None),
        retry_policy=fields.optional("retry_policy", payloads.mapping, None),
        run_policy=fields.optional("run_policy", payloads.mapping, None),
        owner=owner,
    )
    return check(spec, settings)


def read_changes(fields: Fields) -> dict[str, Any]:
    """The fields an update sets; the policy maps are read by ``apply_changes`` (nil clears)."""
    parsers = {
        "task_class": payloads.text,
        "schedule": payloads.text,
        "timezone": payloads.identifier,
        "config": payloads.mapping,
        "enabled": payloads.flag,
    }
    changes: dict[str, Any] = {}
    for name, parse in parsers.items():
        value = fields.optional(name, parse, None)
        if value is not None:
            changes[name] = value
    for name in POLICY_FIELDS:
        fields.optional(name, _unread, None)  # known fields: ``done`` must not refuse them
    return changes


def _unread(name: str, value: Any) -> None:
    return None


def apply_changes(
    stored: TaskRecord,
    changes: Mapping[str, Any],
    policies: Mapping[str, Any],
    settings: SchedulerSettings,
) -> TaskSpec:
    """The stored task with ``changes`` and the policy maps in ``policies`` (None clears one)."""
    for name, value in policies.items():
        if value is not None:
            payloads.mapping(name, value)
    if not changes and not policies:
        raise InvalidValue("task_id", f"an update names at least one of {', '.join(EDITABLE)}")
    return check(replace(spec_of(stored), **changes, **policies), settings)


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


def record_from_plain(plain: Mapping[str, Any]) -> TaskRecord:
    """A task record as the store actor sends it (instants in ISO 8601)."""
    values = dict(plain)
    for name in ("created_at", "updated_at", "last_run", "next_run", "accounted_through"):
        if values.get(name) is not None:
            values[name] = payloads.instant(name, values[name])
    return TaskRecord(**values)
