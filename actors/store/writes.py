"""Writes: tasks, executions, dead letters, missed runs, retention. Each is one operation of a
group commit.

Plain functions of a connection, run inside the store's transaction (and their own savepoint):
a function that raises leaves nothing behind. Every value is bound as a parameter. ``now`` is
always an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from actors.store import values
from actors.store._sql import Connection, one, scalar
from actors.store.errors import Conflict, InvalidValue, LeaseLost, NotFound
from actors.store.queries import (
    DEAD_LETTER_COLUMNS,
    EXECUTION_COLUMNS,
    TASK_COLUMNS,
    dead_letter_from_row,
    execution_by_key,
    execution_from_row,
    get_execution,
    get_task,
    task_from_row,
)
from actors.store.records import (
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    Recorded,
    TaskRecord,
    TaskSpec,
)
from bus.ids import format_message_id, new_message_id
from config.store import StoreSettings


@dataclass(frozen=True, slots=True)
class Fence:
    """A write stamped with a lease: refused if the lease has been granted again since."""

    lease: str
    token: int


# ------------------------------------------------------------------ tasks


def put_task(
    connection: Connection,
    spec: TaskSpec,
    now: datetime,
    expected_version: int | None,
    limits: StoreSettings,
) -> Recorded[TaskRecord]:
    """Create or replace a task's definition; ``version`` grows by one on every change.

    ``expected_version`` makes it a compare-and-set (0: the task must not exist yet). A put that
    changes nothing is a duplicate: nothing is written and the version stays.
    ``next_run`` None keeps the stored one; ``last_run`` is never changed here.
    """
    config = values.packed("config", spec.config, limits.max_value_bytes)
    misfire = values.packed("misfire_policy", spec.misfire_policy, limits.max_value_bytes)
    retry = values.packed("retry_policy", spec.retry_policy, limits.max_value_bytes)
    run = values.packed("run_policy", spec.run_policy, limits.max_value_bytes)
    stored = one(
        connection,
        "SELECT version, task_class, schedule, config, enabled, timezone, misfire_policy, "
        "retry_policy, run_policy, owner, next_run FROM scheduled_tasks WHERE task_id = ?",
        [spec.task_id],
    )
    version = 0 if stored is None else int(stored[0])
    if expected_version is not None and expected_version != version:
        state = "does not exist" if stored is None else f"is at version {version}"
        raise Conflict(
            f"task {spec.task_id!r} {state}, not at the expected version {expected_version}"
        )
    next_run = None if spec.next_run is None else values.to_us(spec.next_run)
    fields = (
        spec.task_class,
        spec.schedule,
        config,
        int(spec.enabled),
        spec.timezone,
        misfire,
        retry,
        run,
        spec.owner,
    )
    if stored is not None and tuple(stored[1:10]) == fields and next_run in (None, stored[10]):
        return Recorded(get_task(connection, spec.task_id), duplicate=True)
    now_us = values.to_us(now)
    row = one(
        connection,
        "INSERT INTO scheduled_tasks (task_class, schedule, config, enabled, timezone, "
        "misfire_policy, retry_policy, run_policy, owner, next_run, task_id, created_at, "
        "updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
        "ON CONFLICT (task_id) DO UPDATE SET task_class = excluded.task_class, "
        "schedule = excluded.schedule, config = excluded.config, enabled = excluded.enabled, "
        "timezone = excluded.timezone, misfire_policy = excluded.misfire_policy, "
        "retry_policy = excluded.retry_policy, run_policy = excluded.run_policy, "
        "owner = excluded.owner, "
        "next_run = coalesce(excluded.next_run, next_run), updated_at = excluded.updated_at, "
        f"version = version + 1 RETURNING {TASK_COLUMNS}",
        [*fields, next_run, spec.task_id, now_us, now_us],
    )
    assert row is not None
    return Recorded(task_from_row(row), duplicate=False)


def delete_task(connection: Connection, task_id: str) -> bool:
    """Remove a task's definition (its history stays until retention); False if there was none."""
    return (
        connection.execute("DELETE FROM scheduled_tasks WHERE task_id = ?", [task_id]).rowcount > 0
    )


def mark_run(
    connection: Connection,
    task_id: str,
    last_run: datetime | None,
    next_run: datetime | None,
    now: datetime,
) -> TaskRecord:
    """Record a task's latest fire and its next one. ``last_run`` never moves backwards; this is
    run state, not definition, so ``version`` does not change.
    """
    last = None if last_run is None else values.to_us(last_run)
    changed = connection.execute(
        "UPDATE scheduled_tasks SET "
        "last_run = CASE WHEN ?1 IS NOT NULL AND (last_run IS NULL OR ?1 > last_run) "
        "THEN ?1 ELSE last_run END, next_run = ?2, updated_at = ?3 WHERE task_id = ?4",
        [last, None if next_run is None else values.to_us(next_run), values.to_us(now), task_id],
    ).rowcount
    if not changed:
        raise NotFound(f"task {task_id!r} not found")
    return get_task(connection, task_id)


def reset_task(connection: Connection, task_id: str, now: datetime) -> TaskRecord:
    """Forget a task's run state: ``last_run`` and ``next_run`` become NULL (the scheduler
    computes the next fire afresh). Run state, not definition: ``version`` does not change.
    """
    changed = connection.execute(
        "UPDATE scheduled_tasks SET last_run = NULL, next_run = NULL, updated_at = ? "
        "WHERE task_id = ?",
        [values.to_us(now), task_id],
    ).rowcount
    if not changed:
        raise NotFound(f"task {task_id!r} not found")
    return get_task(connection, task_id)


# ------------------------------------------------------------------ executions


def record_execution(
    connection: Connection, new: NewExecution, fence: Fence | None, limits: StoreSettings
) -> Recorded[ExecutionRecord]:
    """Insert one attempt of a fire, once: a second record of the same attempt (same task,
    scheduled instant and retry count) writes nothing and returns the first, flagged as a
    duplicate. The row's ``retry_count`` is the attempt's, unless an outcome given now has one.
    """
    if fence is not None:
        check_fence(connection, fence)
    record = ExecutionRecord(
        execution_id=format_message_id(new_message_id()),
        task_id=new.task_id,
        scheduled_at=new.scheduled_at,
        started_at=new.started_at,
        completed_at=None,
        success=None,
        duration_seconds=None,
        result=None,
        error_message=None,
        retry_count=new.retry_count,
        idempotency_key=new.idempotency_key,
    )
    result = None
    if new.outcome is not None:
        outcome = new.outcome
        result, decoded = values.encoded("result", outcome.result, limits.max_value_bytes)
        duration = outcome.duration_seconds
        if duration is None:
            duration = (outcome.completed_at - new.started_at).total_seconds()
        error = outcome.error_message
        record = replace(
            record,
            completed_at=outcome.completed_at,
            success=outcome.success,
            duration_seconds=duration,
            result=decoded,
            error_message=None
            if error is None
            else values.truncated(error, limits.max_error_chars),
            retry_count=new.retry_count if outcome.retry_count is None else outcome.retry_count,
        )
    completed = None if record.completed_at is None else values.to_us(record.completed_at)
    inserted = connection.execute(
        f"INSERT INTO task_executions ({EXECUTION_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        [
            record.execution_id,
            record.task_id,
            values.to_us(record.scheduled_at),
            values.to_us(record.started_at),
            completed,
            None if record.success is None else int(record.success),
            record.duration_seconds,
            result,
            record.error_message,
            record.retry_count,
            record.idempotency_key,
        ],
    ).rowcount
    if inserted:
        return Recorded(record, duplicate=False)
    existing = execution_by_key(connection, new.idempotency_key)
    assert existing is not None
    return Recorded(existing, duplicate=True)


def finish_execution(
    connection: Connection,
    execution_id: str,
    outcome: ExecutionOutcome,
    fence: Fence | None,
    limits: StoreSettings,
) -> Recorded[ExecutionRecord]:
    """Record how a run ended; finishing a finished run writes nothing (a duplicate).

    ``duration_seconds`` defaults to the time from the run's start to ``completed_at``;
    ``retry_count`` None keeps the one the run was recorded with.
    """
    if fence is not None:
        check_fence(connection, fence)
    completed, success, duration, result, error, retries = _ending(
        outcome, outcome.duration_seconds, limits
    )
    row = one(
        connection,
        "UPDATE task_executions SET completed_at = ?1, success = ?2, "
        "duration_seconds = coalesce(?3, (?1 - started_at) / 1e6), result = ?4, "
        "error_message = ?5, retry_count = coalesce(?6, retry_count) "
        "WHERE execution_id = ?7 AND success IS NULL AND started_at <= ?1 "
        f"RETURNING {EXECUTION_COLUMNS}",
        [completed, success, duration, result, error, retries, execution_id],
    )
    if row is not None:
        return Recorded(execution_from_row(row), duplicate=False)
    record = get_execution(connection, execution_id)
    if record.success is not None:
        return Recorded(record, duplicate=True)
    raise InvalidValue("completed_at", "is before the run's started_at")


def _ending(
    outcome: ExecutionOutcome, duration: float | None, limits: StoreSettings
) -> list[object]:
    """completed_at, success, duration_seconds, result, error_message, retry_count."""
    error = outcome.error_message
    return [
        values.to_us(outcome.completed_at),
        int(outcome.success),
        duration,
        values.packed("result", outcome.result, limits.max_value_bytes),
        None if error is None else values.truncated(error, limits.max_error_chars),
        outcome.retry_count,
    ]


def check_fence(connection: Connection, fence: Fence) -> None:
    token = scalar(connection, "SELECT token FROM scheduler_lease WHERE name = ?", [fence.lease])
    if token != fence.token:
        current = "never granted" if token is None else f"now at token {token}"
        raise LeaseLost(f"lease {fence.lease!r} token {fence.token} is stale ({current})")


# ------------------------------------------------------------------ dead letters


def add_dead_letter(
    connection: Connection, letter: NewDeadLetter, limits: StoreSettings
) -> Recorded[DeadLetterRecord]:
    """Keep a fire given up on; the same fire twice writes nothing (a duplicate)."""
    key = [letter.task_id, values.to_us(letter.scheduled_at)]
    row = one(
        connection,
        "INSERT INTO dead_letters (task_id, scheduled_at, attempts, error_type, last_error, "
        "reason, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (task_id, scheduled_at) DO NOTHING RETURNING {DEAD_LETTER_COLUMNS}",
        [
            *key,
            letter.attempts,
            letter.error_type,
            values.truncated(letter.last_error, limits.max_error_chars),
            letter.reason,
            values.to_us(letter.failed_at),
        ],
    )
    if row is not None:
        return Recorded(dead_letter_from_row(row), duplicate=False)
    existing = one(
        connection,
        f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE task_id = ? AND scheduled_at = ?",
        key,
    )
    assert existing is not None
    return Recorded(dead_letter_from_row(existing), duplicate=True)


# ------------------------------------------------------------------ missed runs


def record_missed(
    connection: Connection,
    task_id: str,
    runs: Sequence[NewMissedRun],
    now: datetime,
    fence: Fence | None,
) -> int:
    """Keep fires of a task that did not run, in one statement; a run whose ``first_at`` is
    already kept for the task (or twice in ``runs``) writes nothing. Returns the rows inserted.
    """
    if fence is not None:
        check_fence(connection, fence)
    if not runs:
        return 0
    now_us = values.to_us(now)
    params: list[object] = []
    for run in runs:
        params.extend(
            [
                task_id,
                values.to_us(run.first_at),
                values.to_us(run.last_at),
                run.count,
                run.reason,
                now_us,
            ]
        )
    placeholders = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(runs))
    return connection.execute(
        "INSERT INTO missed_runs (task_id, first_at, last_at, count, reason, recorded_at) "
        f"VALUES {placeholders} ON CONFLICT (task_id, first_at) DO NOTHING",
        params,
    ).rowcount


# ------------------------------------------------------------------ retention


def delete_executions_before(connection: Connection, cutoff: datetime, chunk: int) -> int:
    """Delete up to ``chunk`` of the oldest executions started before ``cutoff``."""
    return connection.execute(
        "DELETE FROM task_executions WHERE execution_id IN (SELECT execution_id "
        "FROM task_executions WHERE started_at < ? ORDER BY started_at LIMIT ?)",
        [values.to_us(cutoff), chunk],
    ).rowcount


def delete_oldest_executions(connection: Connection, count: int) -> int:
    """Delete the ``count`` executions that started first."""
    return connection.execute(
        "DELETE FROM task_executions WHERE execution_id IN (SELECT execution_id "
        "FROM task_executions ORDER BY started_at, execution_id LIMIT ?)",
        [count],
    ).rowcount


def delete_dead_letters_before(connection: Connection, cutoff: datetime, chunk: int) -> int:
    return connection.execute(
        "DELETE FROM dead_letters WHERE dead_letter_id IN (SELECT dead_letter_id "
        "FROM dead_letters WHERE failed_at < ? ORDER BY failed_at LIMIT ?)",
        [values.to_us(cutoff), chunk],
    ).rowcount
