"""``task_executions``: one row per attempt of a fire, keyed by its idempotency key
(``records.idempotency_key``): recording attempts, finishing them, and reading one back by id or
by key. Pages of them and their statistics: ``store.history``, ``store.stats``.

Plain functions of a connection, on the store's thread, every value bound as a parameter. A
write is one operation of a group commit: it runs inside the store's transaction (and, when a
neighbour in the group fails, its own savepoint), so one that raises leaves nothing behind.

``RecordExecution``, the hot path, is a BatchOperation: the records of one group that are queued
next to each other go in as one multi-row INSERT (see ``Database.commit_group``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgpack

from bus.ids import format_message_id, new_message_id
from config.store import StoreSettings
from store import runs, values
from store._sql import Connection, Row, one, rows_in
from store.errors import InvalidValue, LeaseLost, NotFound
from store.leases import Fence, check_fence, check_token, lease_tokens
from store.operations import BatchOperation, Outcome
from store.records import (
    ExecutionOutcome,
    ExecutionRecord,
    LogLine,
    NewExecution,
    Recorded,
    RunMark,
    run_key,
)
from store.scheduled_tasks import mark_runs

EXECUTION_COLUMNS = (
    "execution_id, task_id, scheduled_at, started_at, completed_at, success, duration_seconds, "
    "result, error_message, retry_count, idempotency_key, trigger, run_started_at, logs"
)
# The task's incarnation: the created_at of its row when the execution is recorded (NULL if the
# task is not stored). A task's history, status and statistics are those of its current
# incarnation, so an id deleted and created again starts afresh; the older rows stay.
INCARNATION = "(SELECT created_at FROM scheduled_tasks WHERE task_id = {task})"


def current_incarnation(task: str, incarnation: str = "incarnation") -> str:
    """SQL true for an execution of the current incarnation of its task (``task``: an SQL
    expression of its id), or of any, once the task is deleted (its runs are then all that is
    left of it)."""
    return f"{incarnation} IS coalesce({INCARNATION.format(task=task)}, {incarnation})"


def execution_from_row(row: Row) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=row[0],
        task_id=row[1],
        scheduled_at=values.from_us(row[2]),
        started_at=values.from_us(row[3]),
        completed_at=values.maybe_from_us(row[4]),
        success=None if row[5] is None else bool(row[5]),
        duration_seconds=row[6],
        result=values.unpacked(row[7]),
        error_message=row[8],
        retry_count=row[9],
        idempotency_key=row[10],
        trigger=row[11],
        run_started_at=values.maybe_from_us(row[12]),
        logs=logs_from(row[13]),
    )


def packed_logs(lines: Sequence[LogLine]) -> bytes | None:
    """A run's log lines as one msgpack array of ``[µs, level, message]`` (None: no lines)."""
    if not lines:
        return None
    data: bytes = msgpack.packb(
        [[values.to_us(line.at), line.level, line.message] for line in lines], use_bin_type=True
    )
    return data


def logs_from(data: bytes | None) -> tuple[LogLine, ...]:
    if data is None:
        return ()
    return tuple(
        LogLine(at=values.from_us(at), level=level, message=message)
        for at, level, message in msgpack.unpackb(data, raw=False)
    )


# ------------------------------------------------------------------ reads


def get_execution(connection: Connection, execution_id: str) -> ExecutionRecord:
    row = one(
        connection,
        f"SELECT {EXECUTION_COLUMNS} FROM task_executions WHERE execution_id = ?",
        [execution_id],
    )
    if row is None:
        raise NotFound(f"execution {execution_id!r} not found")
    return execution_from_row(row)


def execution_outcomes(
    connection: Connection, execution_ids: Sequence[str]
) -> dict[str, bool | None]:
    """Whether each known execution succeeded (True), failed (False) or is unfinished (None);
    an unknown id is left out.
    """
    select = "SELECT execution_id, success FROM task_executions"
    return {
        execution_id: None if success is None else bool(success)
        for execution_id, success in rows_in(connection, select, "execution_id", execution_ids)
    }


def latest_attempt(connection: Connection, key: str) -> ExecutionRecord | None:
    """The last attempt of the run ``key`` (a fire's key): of the executions whose idempotency
    key is the run key or the run key followed by ``#<retry>``, the one started last."""
    row = one(
        connection,
        f"SELECT {EXECUTION_COLUMNS} FROM task_executions WHERE idempotency_key = ?1 "
        f"UNION ALL SELECT {EXECUTION_COLUMNS} FROM task_executions "
        "WHERE idempotency_key > ?1 || '#' AND idempotency_key < ?1 || '$' "
        "ORDER BY started_at DESC, retry_count DESC, execution_id DESC LIMIT 1",
        [key],
    )
    return None if row is None else execution_from_row(row)


def executions_by_keys(connection: Connection, keys: Sequence[str]) -> dict[str, Row]:
    """The stored executions of ``keys``, by idempotency key."""
    select = f"SELECT {EXECUTION_COLUMNS} FROM task_executions"
    return {row[10]: row for row in rows_in(connection, select, "idempotency_key", keys)}


# ------------------------------------------------------------------ recording


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
        tokens = lease_tokens(connection, (operation.fence for operation in operations))
        incarnations = _incarnations(
            connection, [operation.new.task_id for operation in operations]
        )
        for index, operation in enumerate(operations):
            fence = operation.fence
            try:
                if fence is not None:
                    check_token(fence, tokens[fence.lease])
                incarnation = incarnations.get(operation.new.task_id)
                record, row = _execution_row(operation.new, operation.limits, incarnation)
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
        stored = executions_by_keys(connection, [record.idempotency_key for _, record in pending])
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

    A fire with a ``start_key`` gives its run a ``runs`` row holding the key
    (``runs.start_runs``); a fire whose key another run of its task holds is not recorded: it
    is answered with that run's latest attempt, as a duplicate.
    """
    if fence is not None:
        check_fence(connection, fence)
    started = (
        runs.start_runs(connection, news, now)
        if any(new.start_key is not None or new.parent_key is not None for new in news)
        else {}
    )
    recorded: list[Recorded[ExecutionRecord]] = []
    fresh = [new for index, new in enumerate(news) if index not in started]
    if fresh:
        operations = [RecordExecution(new, fence, limits) for new in fresh]
        for outcome in RecordExecution.run_batch(connection, operations):
            if outcome.error is not None:
                raise outcome.error
            assert outcome.value is not None
            recorded.append(outcome.value)
    for index in sorted(started):  # in order: each goes where its fire was
        latest = latest_attempt(connection, started[index])
        assert latest is not None  # start_runs keeps a key only for a run with an attempt
        recorded.insert(index, Recorded(latest, duplicate=True))
    count_fires(connection, recorded)
    mark_runs(connection, marks, now)
    return recorded


COUNTED_TRIGGERS = frozenset({"schedule", "catch-up", "backfill"})  # what fire_count counts


def count_fires(connection: Connection, recorded: Sequence[Recorded[ExecutionRecord]]) -> None:
    """Add to each task's ``fire_count`` its first attempts recorded anew of a schedule, a
    catch-up or a backfill (not triggers, retries or wakes): ``run_policy.max_runs`` counts
    them."""
    counts: dict[str, int] = {}
    for one_ in recorded:
        record = one_.record
        if not one_.duplicate and record.retry_count == 0 and record.trigger in COUNTED_TRIGGERS:
            counts[record.task_id] = counts.get(record.task_id, 0) + 1
    if counts:
        connection.executemany(
            "UPDATE scheduled_tasks SET fire_count = fire_count + ? WHERE task_id = ?",
            [(count, task_id) for task_id, count in counts.items()],
        )


# Rows per INSERT statement (15 parameters each; SQLite binds at most 32,766).
_ROWS_PER_INSERT = 500
_PENDING: Outcome[Recorded[ExecutionRecord]] = Outcome()  # a placeholder, replaced before return


@functools.cache
def _insert_executions_sql(count: int) -> str:
    rows_ = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (
        f"INSERT INTO task_executions ({EXECUTION_COLUMNS}, incarnation) VALUES {rows_} "
        "ON CONFLICT (idempotency_key) DO NOTHING"
    )


def _incarnations(connection: Connection, task_ids: Sequence[str]) -> dict[str, int]:
    """The current incarnation (``created_at``) of each stored task of ``task_ids``: looked up
    once per batch, which costs a record far less than a subquery per row."""
    select = "SELECT task_id, created_at FROM scheduled_tasks"
    return dict(rows_in(connection, select, "task_id", task_ids))


def _execution_row(
    new: NewExecution, limits: StoreSettings, incarnation: int | None
) -> tuple[ExecutionRecord, list[object]]:
    """The record of a new attempt, and its row's values in EXECUTION_COLUMNS order, then its
    incarnation; raises InvalidValue for a result that cannot be stored.
    """
    execution_id = format_message_id(new_message_id())
    outcome = new.outcome
    retries = new.retry_count
    result = decoded = completed = success = duration = error = run_started = None
    logs: tuple[LogLine, ...] = ()
    if outcome is not None:
        result, decoded = values.encoded("result", outcome.result, limits.max_value_bytes)
        completed, success = outcome.completed_at, outcome.success
        run_started, logs = outcome.run_started_at, outcome.logs
        duration = outcome.duration_seconds
        if duration is None:
            duration = (completed - (run_started or new.started_at)).total_seconds()
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
        trigger=new.trigger,
        run_started_at=run_started,
        logs=logs,
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
        new.trigger,
        None if run_started is None else values.to_us(run_started),
        packed_logs(logs),
        incarnation,
    ]
    return record, row


# ------------------------------------------------------------------ finishing


def finish_execution(
    connection: Connection,
    execution_id: str,
    outcome: ExecutionOutcome,
    fence: Fence | None,
    limits: StoreSettings,
) -> Recorded[ExecutionRecord]:
    """Record how a run ended; finishing a finished run writes nothing (a duplicate).

    ``duration_seconds`` defaults to the time from the run's real start (the outcome's
    ``run_started_at``; the dispatch if it has none) to ``completed_at``; ``retry_count`` None keeps
    the one the run was recorded with. A success whose result is not a suspension's (it has no
    ``suspended`` key) ends the run: its ``runs`` row, if it has one that has not ended, is
    set ``succeeded`` in the same write.
    """
    if fence is not None:
        check_fence(connection, fence)
    ending = _ending(outcome, outcome.duration_seconds, limits)
    row = one(
        connection,
        "UPDATE task_executions SET completed_at = ?1, success = ?2, "
        "duration_seconds = coalesce(?3, (?1 - coalesce(?8, started_at)) / 1e6), result = ?4, "
        "error_message = ?5, retry_count = coalesce(?6, retry_count), run_started_at = ?8, "
        "logs = ?9 "
        "WHERE execution_id = ?7 AND success IS NULL AND started_at <= ?1 "
        f"RETURNING {EXECUTION_COLUMNS}",
        [*ending[:6], execution_id, *ending[6:]],
    )
    if row is not None:
        finished = execution_from_row(row)
        if outcome.success and not (
            isinstance(outcome.result, Mapping) and "suspended" in outcome.result
        ):
            key = run_key(finished.task_id, finished.scheduled_at)
            runs.close_run(connection, key, outcome.completed_at)
        return Recorded(finished, duplicate=False)
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
    """completed_at, success, duration_seconds, result, error_message, retry_count,
    run_started_at, logs."""
    error = outcome.error_message
    started = outcome.run_started_at
    return [
        values.to_us(outcome.completed_at),
        int(outcome.success),
        duration,
        values.packed("result", outcome.result, limits.max_value_bytes),
        None if error is None else values.truncated(error, limits.max_error_chars),
        outcome.retry_count,
        None if started is None else values.to_us(started),
        packed_logs(outcome.logs),
    ]
