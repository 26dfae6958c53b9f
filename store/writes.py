"""Writes: tasks, executions, dead letters, missed runs, retention. Each is one operation of a
group commit.

Plain functions of a connection, run inside the store's transaction (and, when a neighbour in the
group fails, their own savepoint): a function that raises leaves nothing behind. Every value is
bound as a parameter. ``now`` is always an argument.

``RecordExecution``, the hot path, is a BatchOperation: the records of one group that are queued
next to each other go in as one multi-row INSERT (see ``Database.commit_group``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from actors.store import values
from actors.store._sql import Connection, Row, one, rows, scalar
from actors.store.database import BatchOperation, Outcome
from actors.store.errors import Conflict, InvalidValue, LeaseLost, NotFound
from actors.store.queries import (
    DEAD_LETTER_COLUMNS,
    EXECUTION_COLUMNS,
    TASK_COLUMNS,
    dead_letter_from_row,
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
    RunMark,
    TaskRecord,
    TaskSpec,
    idempotency_key,
)
from bus.ids import format_message_id, new_message_id
from config.cron import CRON_RULES
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
    ``accounted_through`` never moves backwards; None keeps the stored one, and a new task is
    accounted for through ``now``. A written definition's schedule is under today's cron rules
    (``cron_rules`` CRON_RULES).
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
    accounted = None if spec.accounted_through is None else values.to_us(spec.accounted_through)
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
        "updated_at, version, accounted_through) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, coalesce(?, ?)) "
        "ON CONFLICT (task_id) DO UPDATE SET task_class = excluded.task_class, "
        "schedule = excluded.schedule, config = excluded.config, enabled = excluded.enabled, "
        "timezone = excluded.timezone, misfire_policy = excluded.misfire_policy, "
        "retry_policy = excluded.retry_policy, run_policy = excluded.run_policy, "
        "owner = excluded.owner, "
        f"cron_rules = {CRON_RULES}, "  # written now: under today's cron rules
        "next_run = coalesce(excluded.next_run, next_run), updated_at = excluded.updated_at, "
        f"version = version + 1, accounted_through = {_later('accounted_through', '?16')} "
        f"RETURNING {TASK_COLUMNS}",
        [*fields, next_run, spec.task_id, now_us, now_us, accounted, now_us, accounted],
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
        _MARK_RUN_SQL,
        [last, None if next_run is None else values.to_us(next_run), values.to_us(now), task_id],
    ).rowcount
    if not changed:
        raise NotFound(f"task {task_id!r} not found")
    return get_task(connection, task_id)


def _later(column: str, instant: str) -> str:
    """SQL for ``column`` moved forward to ``instant`` (an SQL expression; NULL keeps it)."""
    return (
        f"CASE WHEN {instant} IS NOT NULL AND ({column} IS NULL OR {instant} > {column}) "
        f"THEN {instant} ELSE {column} END"
    )


_MARK_RUN_SQL = (
    f"UPDATE scheduled_tasks SET last_run = {_later('last_run', '?1')}, next_run = ?2, "
    f"updated_at = ?3, accounted_through = {_later('accounted_through', '?1')} "
    "WHERE task_id = ?4"
)


def mark_runs(connection: Connection, marks: Sequence[RunMark], now: datetime) -> None:
    """``mark_run`` of several tasks in one statement; a task that is gone is passed over."""
    if not marks:
        return
    now_us = values.to_us(now)
    connection.executemany(
        _MARK_RUN_SQL,
        [
            (
                None if mark.last_run is None else values.to_us(mark.last_run),
                None if mark.next_run is None else values.to_us(mark.next_run),
                now_us,
                mark.task_id,
            )
            for mark in marks
        ],
    )


def reset_task(
    connection: Connection, task_id: str, now: datetime, accounted_through: datetime | None = None
) -> TaskRecord:
    """Forget a task's run state: ``last_run`` and ``next_run`` become NULL (the scheduler
    computes the next fire afresh) and the task is accounted for through ``accounted_through``
    (default ``now``): nothing before it is owed. Run state, not definition: ``version`` does
    not change.
    """
    now_us = values.to_us(now)
    accounted = now_us if accounted_through is None else values.to_us(accounted_through)
    changed = connection.execute(
        "UPDATE scheduled_tasks SET last_run = NULL, next_run = NULL, updated_at = ?, "
        "accounted_through = ? WHERE task_id = ?",
        [now_us, accounted, task_id],
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
    (outcome,) = RecordExecution.run_batch(connection, [RecordExecution(new, fence, limits)])
    if outcome.error is not None:
        raise outcome.error
    assert outcome.value is not None
    return outcome.value


@dataclass(frozen=True, slots=True)
class RecordExecution(BatchOperation[Recorded[ExecutionRecord]]):
    """``record_execution`` as a write of a group commit: the records queued next to each other
    are inserted by one multi-row statement, and their duplicates found by one query.
    """

    new: NewExecution
    fence: Fence | None
    limits: StoreSettings

    def __call__(self, connection: Connection) -> Recorded[ExecutionRecord]:
        return record_execution(connection, self.new, self.fence, self.limits)

    @classmethod
    def run_batch(
        cls, connection: Connection, operations: Sequence[RecordExecution]
    ) -> list[Outcome[Recorded[ExecutionRecord]]]:
        """Each record as if recorded one after the other, in order: the first record of an
        attempt inserts it, any later one (in this batch or before it) is a duplicate. A record
        with a stale fence or a bad result fails alone, before anything of it is written.
        """
        outcomes: list[Outcome[Recorded[ExecutionRecord]]] = []
        pending: list[tuple[int, ExecutionRecord]] = []  # (index in operations, its record)
        new_rows: list[list[object]] = []
        tokens = _lease_tokens(connection, operations)
        for index, operation in enumerate(operations):
            fence = operation.fence
            try:
                if fence is not None:
                    _check_token(fence, tokens[fence.lease])
                record, row = _execution_row(operation.new, operation.limits)
            except (InvalidValue, LeaseLost) as exc:
                outcomes.append(Outcome(error=exc))
                continue
            outcomes.append(_PENDING)
            pending.append((index, record))
            new_rows.append(row)
        if not new_rows:
            return outcomes
        inserted = 0
        for first in range(0, len(new_rows), _ROWS_PER_INSERT):
            chunk = new_rows[first : first + _ROWS_PER_INSERT]
            inserted += connection.execute(
                _insert_executions_sql(len(chunk)), [value for row in chunk for value in row]
            ).rowcount
        if inserted == len(new_rows):  # the common case: every record is new
            for index, record in pending:
                outcomes[index] = Outcome(value=Recorded(record, duplicate=False))
            return outcomes
        # Some were duplicates, of a row stored before or of a record earlier in this batch.
        stored = _executions_by_keys(connection, [record.idempotency_key for _, record in pending])
        for index, record in pending:
            kept = stored[record.idempotency_key]
            if kept[0] == record.execution_id:
                outcomes[index] = Outcome(value=Recorded(record, duplicate=False))
            else:
                outcomes[index] = Outcome(value=Recorded(execution_from_row(kept), duplicate=True))
        return outcomes


def record_fires(
    connection: Connection,
    news: Sequence[NewExecution],
    *,
    fence: Fence | None,
    marks: Sequence[RunMark],
    now: datetime,
    limits: StoreSettings,
) -> list[Recorded[ExecutionRecord]]:
    """Several fires at once, as one write: each record as ``record_execution`` (in order, a
    duplicate returns the first record of its attempt), then each task's run state as
    ``mark_run`` (a task that is gone is passed over). All of it or nothing: a stale fence or a
    record that cannot be stored raises, and the caller's transaction drops what was done.
    """
    if fence is not None:
        check_fence(connection, fence)
    recorded: list[Recorded[ExecutionRecord]] = []
    if news:
        operations = [RecordExecution(new, fence, limits) for new in news]
        for outcome in RecordExecution.run_batch(connection, operations):
            if outcome.error is not None:
                raise outcome.error
            assert outcome.value is not None
            recorded.append(outcome.value)
    mark_runs(connection, marks, now)
    return recorded


# Rows per INSERT statement (11 parameters each; SQLite binds at most 32,766) and keys per
# lookup of duplicates.
_ROWS_PER_INSERT = 500
_KEYS_PER_SELECT = 1_000
_PENDING: Outcome[Recorded[ExecutionRecord]] = Outcome()  # a placeholder, replaced before return


@functools.cache
def _insert_executions_sql(count: int) -> str:
    rows_ = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO task_executions ({EXECUTION_COLUMNS}) VALUES {rows_} "
        "ON CONFLICT (idempotency_key) DO NOTHING"
    )


def _executions_by_keys(connection: Connection, keys: Sequence[str]) -> dict[str, Row]:
    """The stored executions of ``keys``, by idempotency key."""
    unique = list(dict.fromkeys(keys))
    found: dict[str, Row] = {}
    for first in range(0, len(unique), _KEYS_PER_SELECT):
        chunk = unique[first : first + _KEYS_PER_SELECT]
        marks = ", ".join(["?"] * len(chunk))
        for row in rows(
            connection,
            f"SELECT {EXECUTION_COLUMNS} FROM task_executions WHERE idempotency_key IN ({marks})",
            chunk,
        ):
            found[row[10]] = row
    return found


def _execution_row(
    new: NewExecution, limits: StoreSettings
) -> tuple[ExecutionRecord, list[object]]:
    """The record of a new attempt, and its row's values in EXECUTION_COLUMNS order; raises
    InvalidValue for a result that cannot be stored.
    """
    execution_id = format_message_id(new_message_id())
    outcome = new.outcome
    retries = new.retry_count
    result = decoded = completed = success = duration = error = None
    if outcome is not None:
        result, decoded = values.encoded("result", outcome.result, limits.max_value_bytes)
        completed, success = outcome.completed_at, outcome.success
        duration = outcome.duration_seconds
        if duration is None:
            duration = (completed - new.started_at).total_seconds()
        if outcome.error_message is not None:
            error = values.truncated(outcome.error_message, limits.max_error_chars)
        if outcome.retry_count is not None:
            retries = outcome.retry_count
    record = ExecutionRecord(
        execution_id=execution_id,
        task_id=new.task_id,
        scheduled_at=new.scheduled_at,
        started_at=new.started_at,
        completed_at=completed,
        success=success,
        duration_seconds=duration,
        result=decoded,
        error_message=error,
        retry_count=retries,
        idempotency_key=new.idempotency_key,
    )
    row: list[object] = [
        execution_id,
        new.task_id,
        values.to_us(new.scheduled_at),
        values.to_us(new.started_at),
        None if completed is None else values.to_us(completed),
        None if success is None else int(success),
        duration,
        result,
        error,
        retries,
        record.idempotency_key,
    ]
    return record, row


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


def finish_executions(
    connection: Connection,
    finishes: Sequence[tuple[str, ExecutionOutcome]],
    limits: StoreSettings,
) -> list[Outcome[Recorded[ExecutionRecord]]]:
    """``finish_execution`` of each (execution id, outcome), in order, unfenced; each one's
    error (NotFound, InvalidValue) is its own Outcome, and it wrote nothing.
    """
    outcomes: list[Outcome[Recorded[ExecutionRecord]]] = []
    for execution_id, outcome in finishes:
        try:
            recorded = finish_execution(connection, execution_id, outcome, None, limits)
        except (InvalidValue, NotFound) as exc:
            outcomes.append(Outcome(error=exc))
        else:
            outcomes.append(Outcome(value=recorded))
    return outcomes


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
    _check_token(fence, _lease_token(connection, fence.lease))


def _lease_token(connection: Connection, lease: str) -> int | None:
    token = scalar(connection, "SELECT token FROM scheduler_lease WHERE name = ?", [lease])
    return None if token is None else int(token)


def _lease_tokens(
    connection: Connection, operations: Sequence[RecordExecution]
) -> dict[str, int | None]:
    """The current token of every lease the operations are fenced with: one query per lease."""
    tokens: dict[str, int | None] = {}
    for operation in operations:
        fence = operation.fence
        if fence is not None and fence.lease not in tokens:
            tokens[fence.lease] = _lease_token(connection, fence.lease)
    return tokens


def _check_token(fence: Fence, token: int | None) -> None:
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
    already kept for the task (or twice in ``runs``) writes nothing, and neither does one fire
    that was recorded as run (a scheduler that died between recording a fire and accounting for
    it plans the instant again after the takeover). Returns the rows inserted.
    """
    if fence is not None:
        check_fence(connection, fence)
    singles = [idempotency_key(task_id, r.first_at) for r in runs if r.first_at == r.last_at]
    if singles:
        ran = _executions_by_keys(connection, singles)
        runs = [
            r
            for r in runs
            if r.first_at != r.last_at or idempotency_key(task_id, r.first_at) not in ran
        ]
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
