"""Reads: tasks, one task's status, execution history, unsettled executions, statistics, dead
letters, missed runs.

Plain functions of a connection, every value bound as a parameter. Pages are newest first and use
keyset pagination: a cursor holds the sort key of the last item returned, so a page costs one
index seek whatever its depth, and rows written meanwhile neither repeat nor vanish. A page with
rows libSQL cannot read comes back without them, naming them (``actors.store.salvage``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from actors.store import salvage, values
from actors.store._sql import Connection, Row, one, rows, scalar
from actors.store.errors import InvalidValue, NotFound
from actors.store.records import (
    DeadLetterRecord,
    ExecutionRecord,
    MissedRunRecord,
    Page,
    RunStats,
    StatsReport,
    TaskRecord,
    TaskStatus,
)

T = TypeVar("T")
MAX_PAGE = 1_000

TASK_COLUMNS = (
    "task_id, task_class, schedule, config, enabled, timezone, misfire_policy, retry_policy, "
    "run_policy, owner, created_at, updated_at, last_run, next_run, version, accounted_through, "
    "cron_rules"
)
EXECUTION_COLUMNS = (
    "execution_id, task_id, scheduled_at, started_at, completed_at, success, duration_seconds, "
    "result, error_message, retry_count, idempotency_key"
)
DEAD_LETTER_COLUMNS = (
    "dead_letter_id, task_id, scheduled_at, attempts, error_type, last_error, reason, failed_at"
)
MISSED_RUN_COLUMNS = "missed_id, task_id, first_at, last_at, count, reason, recorded_at"


# ------------------------------------------------------------------ rows to records


def task_from_row(row: Row) -> TaskRecord:
    return TaskRecord(
        task_id=row[0],
        task_class=row[1],
        schedule=row[2],
        config=values.unpacked(row[3]) or {},
        enabled=bool(row[4]),
        timezone=row[5],
        misfire_policy=values.unpacked(row[6]),
        retry_policy=values.unpacked(row[7]),
        run_policy=values.unpacked(row[8]),
        owner=row[9],
        created_at=values.from_us(row[10]),
        updated_at=values.from_us(row[11]),
        last_run=values.maybe_from_us(row[12]),
        next_run=values.maybe_from_us(row[13]),
        version=row[14],
        accounted_through=values.maybe_from_us(row[15]),
        cron_rules=row[16],
    )


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
    )


def dead_letter_from_row(row: Row) -> DeadLetterRecord:
    return DeadLetterRecord(
        dead_letter_id=row[0],
        task_id=row[1],
        scheduled_at=values.from_us(row[2]),
        attempts=row[3],
        error_type=row[4],
        last_error=row[5],
        reason=row[6],
        failed_at=values.from_us(row[7]),
    )


def missed_run_from_row(row: Row) -> MissedRunRecord:
    return MissedRunRecord(
        missed_id=row[0],
        task_id=row[1],
        first_at=values.from_us(row[2]),
        last_at=values.from_us(row[3]),
        count=row[4],
        reason=row[5],
        recorded_at=values.from_us(row[6]),
    )


# ------------------------------------------------------------------ cursors


def _time_cursor(micros: int, key: object) -> str:
    return f"{micros}:{key}"


def _parse_time_cursor(cursor: str) -> tuple[int, str]:
    micros, separator, key = cursor.partition(":")
    try:
        if not separator or not key:
            raise ValueError(cursor)
        return int(micros), key
    except ValueError:
        raise InvalidValue("cursor", "is not a cursor this store returned") from None


def _parse_int_time_cursor(cursor: str) -> tuple[int, int]:
    """A time cursor whose key is an integer id (dead letters, missed runs)."""
    micros, key = _parse_time_cursor(cursor)
    try:
        return micros, int(key)
    except ValueError:
        raise InvalidValue("cursor", "is not a cursor this store returned") from None


def _first(row: Row) -> str:
    """The cursor of a page in key order (tasks, unsettled executions): the row's key."""
    return str(row[0])


def _started_cursor(row: Row) -> str:
    """The cursor of a history page: the execution's start and id."""
    return _time_cursor(row[3], row[0])


def check_limit(limit: object) -> int:
    return values.count("limit", limit, low=1, high=MAX_PAGE)


# ------------------------------------------------------------------ tasks


def get_task(connection: Connection, task_id: str) -> TaskRecord:
    row = one(
        connection, f"SELECT {TASK_COLUMNS} FROM scheduled_tasks WHERE task_id = ?", [task_id]
    )
    if row is None:
        raise NotFound(f"task {task_id!r} not found")
    return task_from_row(row)


def list_tasks(
    connection: Connection, after: str | None, limit: int, owner: str | None = None
) -> Page[TaskRecord]:
    """Tasks in task id order (only ``owner``'s, if given), ``limit`` at a time; the cursor is
    the last task id."""
    limit = check_limit(limit)
    where: list[str] = []
    params: list[object] = []
    if after is not None:
        where.append("task_id > ?")
        params.append(values.text("cursor", after, max_chars=values.MAX_ID_CHARS))
    if owner is not None:
        where.append("owner = ?")
        params.append(values.text("owner", owner, max_chars=values.MAX_ID_CHARS, empty=True))
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    tail = f"{condition}ORDER BY task_id LIMIT ?"
    params.append(limit + 1)
    found = salvage.page_rows(connection, "scheduled_tasks", TASK_COLUMNS, tail, params)
    return salvage.page(found, limit, task_from_row, _first, table="scheduled_tasks", key="task_id")


def task_status(connection: Connection, task_id: str) -> TaskStatus:
    task = one(
        connection,
        "SELECT enabled, last_run, next_run FROM scheduled_tasks WHERE task_id = ?",
        [task_id],
    )
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    counts = one(
        connection,
        "SELECT count(*), total(success = 1), total(success = 0), total(success IS NULL) "
        "FROM task_executions WHERE task_id = ?",
        [task_id],
    )
    assert counts is not None
    error = one(
        connection,
        "SELECT error_message, coalesce(completed_at, started_at) FROM task_executions "
        "WHERE task_id = ? AND success = 0 ORDER BY started_at DESC, execution_id DESC LIMIT 1",
        [task_id],
    )
    return TaskStatus(
        task_id=task_id,
        enabled=bool(task[0]),
        last_run=values.maybe_from_us(task[1]),
        next_run=values.maybe_from_us(task[2]),
        runs=int(counts[0]),
        succeeded=int(counts[1]),
        failed=int(counts[2]),
        running=int(counts[3]),
        last_error=None if error is None else error[0],
        last_error_at=None if error is None else values.from_us(error[1]),
    )


# ------------------------------------------------------------------ executions


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
    found: dict[str, bool | None] = {}
    unique = list(dict.fromkeys(execution_ids))
    for first in range(0, len(unique), _IDS_PER_SELECT):
        chunk = unique[first : first + _IDS_PER_SELECT]
        marks = ", ".join(["?"] * len(chunk))
        for execution_id, success in rows(
            connection,
            f"SELECT execution_id, success FROM task_executions WHERE execution_id IN ({marks})",
            chunk,
        ):
            found[execution_id] = None if success is None else bool(success)
    return found


_IDS_PER_SELECT = 1_000


def execution_by_key(connection: Connection, key: str) -> ExecutionRecord | None:
    row = one(
        connection,
        f"SELECT {EXECUTION_COLUMNS} FROM task_executions WHERE idempotency_key = ?",
        [key],
    )
    return None if row is None else execution_from_row(row)


def count_executions(connection: Connection) -> int:
    return int(scalar(connection, "SELECT count(*) FROM task_executions"))


def history(
    connection: Connection, task_id: str, before: str | None, limit: int
) -> Page[ExecutionRecord]:
    """One task's executions, latest start first; ``before`` is the previous page's cursor."""
    limit = check_limit(limit)
    order = "ORDER BY started_at DESC, execution_id DESC LIMIT ?"
    params: list[object]
    if before is None:
        tail, params = f"WHERE task_id = ? {order}", [task_id, limit + 1]
    else:
        started, execution_id = _parse_time_cursor(before)
        tail = f"WHERE task_id = ? AND (started_at, execution_id) < (?, ?) {order}"
        params = [task_id, started, execution_id, limit + 1]
    found = salvage.page_rows(connection, "task_executions", EXECUTION_COLUMNS, tail, params)
    return salvage.page(
        found,
        limit,
        execution_from_row,
        _started_cursor,
        table="task_executions",
        key="execution_id",
    )


def unsettled_executions(
    connection: Connection, since: datetime | None, after: str | None, limit: int
) -> Page[ExecutionRecord]:
    """Executions a scheduler taking over must look at, in execution id order (creation order):
    the running (``success`` NULL) and failed attempts whose fire has neither a later attempt
    (the same task and scheduled instant with a greater ``retry_count``) nor a dead letter, that
    is, the last attempt of each fire that is not settled. ``since``: only fires scheduled at or
    after it. The cursor is the last execution id.

    The partial index ``task_executions_unsettled`` holds only running and failed executions, so
    successful ones are never scanned. The dead letters' key answers one check with one seek; the
    other is a short range of the idempotency keys' index: every attempt of a fire has the key
    ``<task id>@<instant>`` or ``<task id>@<instant>#...`` (``records.idempotency_key``; rows
    from version 1 too), all at or after the first and before ``<task id>@<instant>$``, as
    ``$`` follows ``#``. The range may hold a few keys of other fires (a task id may contain
    ``@`` or ``#``): the columns decide. The ``+`` keeps SQLite from using the history index
    instead, which holds every run of the task.
    """
    limit = check_limit(limit)
    conditions = ["(e.success IS NULL OR e.success = 0)"]
    params: list[object] = []
    if after is not None:
        conditions.append("e.execution_id > ?")
        params.append(values.text("cursor", after, max_chars=values.MAX_ID_CHARS))
    if since is not None:
        conditions.append("e.scheduled_at >= ?")
        params.append(values.to_us(values.instant("since", since)))
    columns = ", ".join(f"e.{column}" for column in EXECUTION_COLUMNS.split(", "))
    found = salvage.page_rows(
        connection,
        "task_executions AS e",
        columns,
        f"WHERE {' AND '.join(conditions)} "
        "AND NOT EXISTS (SELECT 1 FROM task_executions AS later "
        "  WHERE later.idempotency_key >= e.task_id || '@' || e.scheduled_at "
        "  AND later.idempotency_key < e.task_id || '@' || e.scheduled_at || '$' "
        "  AND +later.task_id = e.task_id AND later.scheduled_at = e.scheduled_at "
        "  AND later.retry_count > e.retry_count) "
        "AND NOT EXISTS (SELECT 1 FROM dead_letters AS d "
        "  WHERE d.task_id = e.task_id AND d.scheduled_at = e.scheduled_at) "
        "ORDER BY e.execution_id LIMIT ?",
        [*params, limit + 1],
    )
    return salvage.page(
        found, limit, execution_from_row, _first, table="task_executions", key="execution_id"
    )


def stats(connection: Connection, since: datetime | None, task_id: str | None) -> StatsReport:
    """Run counts, rates and durations per task and over all tasks (or of one task).

    Only executions started at or after ``since`` count. Costs a scan of the matching rows.
    """
    conditions, params = ["1"], list[object]()
    if since is not None:
        conditions.append("started_at >= ?")
        params.append(values.to_us(values.instant("since", since)))
    if task_id is not None:
        conditions.append("task_id = ?")
        params.append(task_id)
    where = " AND ".join(conditions)
    aggregates = (
        "count(*), total(success = 1), total(success = 0), total(success IS NULL), "
        "avg(duration_seconds), min(duration_seconds), max(duration_seconds)"
    )
    per_task = rows(
        connection,
        f"SELECT task_id, {aggregates} FROM task_executions WHERE {where} "
        "GROUP BY task_id ORDER BY task_id",
        params,
    )
    p95_by_task: dict[str, float] = dict(
        rows(
            connection,
            "SELECT task_id, duration_seconds FROM ("
            "  SELECT task_id, duration_seconds,"
            "    row_number() OVER (PARTITION BY task_id ORDER BY duration_seconds) AS rank,"
            "    count(*) OVER (PARTITION BY task_id) AS n"
            f"  FROM task_executions WHERE duration_seconds IS NOT NULL AND {where})"
            " WHERE rank = (95 * n + 99) / 100",
            params,
        )
    )
    overall = one(connection, f"SELECT {aggregates} FROM task_executions WHERE {where}", params)
    assert overall is not None
    durations = one(
        connection,
        f"SELECT count(*) FROM task_executions WHERE duration_seconds IS NOT NULL AND {where}",
        params,
    )
    overall_p95 = None
    if durations and durations[0]:
        rank = (95 * int(durations[0]) + 99) // 100
        found = one(
            connection,
            "SELECT duration_seconds FROM task_executions "
            f"WHERE duration_seconds IS NOT NULL AND {where} "
            "ORDER BY duration_seconds LIMIT 1 OFFSET ?",
            [*params, rank - 1],
        )
        overall_p95 = None if found is None else found[0]
    return StatsReport(
        overall=_run_stats(None, overall, overall_p95),
        tasks=tuple(_run_stats(row[0], row[1:], p95_by_task.get(row[0])) for row in per_task),
        since=since,
    )


def _run_stats(task_id: str | None, row: Row, p95: float | None) -> RunStats:
    runs, succeeded, failed, running = (int(value) for value in row[:4])
    finished = succeeded + failed
    return RunStats(
        task_id=task_id,
        runs=runs,
        succeeded=succeeded,
        failed=failed,
        running=running,
        success_rate=succeeded / finished if finished else None,
        failure_rate=failed / finished if finished else None,
        mean_s=row[4],
        min_s=row[5],
        max_s=row[6],
        p95_s=p95,
    )


# ------------------------------------------------------------------ dead letters


def dead_letters(
    connection: Connection, task_id: str | None, before: str | None, limit: int
) -> Page[DeadLetterRecord]:
    """Dead letters, latest failure first, of one task or of all."""
    limit = check_limit(limit)
    conditions: list[str] = []
    params: list[object] = []
    if task_id is not None:
        conditions.append("task_id = ?")
        params.append(task_id)
    if before is not None:
        conditions.append("(failed_at, dead_letter_id) < (?, ?)")
        params.extend(_parse_int_time_cursor(before))
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    found = salvage.page_rows(
        connection,
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        f"{where}ORDER BY failed_at DESC, dead_letter_id DESC LIMIT ?",
        [*params, limit + 1],
    )
    return salvage.page(
        found,
        limit,
        dead_letter_from_row,
        lambda row: _time_cursor(row[7], row[0]),
        table="dead_letters",
        key="dead_letter_id",
    )


# ------------------------------------------------------------------ missed runs


def missed_runs(
    connection: Connection, task_id: str, before: str | None, limit: int
) -> Page[MissedRunRecord]:
    """One task's missed runs, latest ``first_at`` first; ``before`` is the previous cursor."""
    limit = check_limit(limit)
    conditions, params = ["task_id = ?"], list[object]([task_id])
    if before is not None:
        conditions.append("(first_at, missed_id) < (?, ?)")
        params.extend(_parse_int_time_cursor(before))
    found = salvage.page_rows(
        connection,
        "missed_runs",
        MISSED_RUN_COLUMNS,
        f"WHERE {' AND '.join(conditions)} ORDER BY first_at DESC, missed_id DESC LIMIT ?",
        [*params, limit + 1],
    )
    return salvage.page(
        found,
        limit,
        missed_run_from_row,
        lambda row: _time_cursor(row[2], row[0]),
        table="missed_runs",
        key="missed_id",
    )
