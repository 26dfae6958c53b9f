"""Pages of ``task_executions``: one task's history, latest start first, and the unsettled
executions a scheduler taking over looks at, in execution id order.

Keyset pages (``store._paging``); a page with rows libSQL cannot read comes back without them,
naming them (``store.salvage``).
"""

from __future__ import annotations

from datetime import datetime

from store import salvage, values
from store._paging import check_limit, key_cursor, parse_time_cursor, time_cursor
from store._sql import Connection, Row
from store.records import ExecutionRecord, Page
from store.task_executions import EXECUTION_COLUMNS, current_incarnation, execution_from_row

# A page leaves each run's log lines out (its record has none): up to MAX_LOG_LINES lines of
# every run of a page would not fit a reply. One execution (``get_execution``) has them.
PAGE_COLUMNS = EXECUTION_COLUMNS.replace(", logs", ", NULL")


def _started_cursor(row: Row) -> str:
    """The cursor of a history page: the execution's start and id."""
    return time_cursor(row[3], row[0])


def history(
    connection: Connection, task_id: str, before: str | None, limit: int
) -> Page[ExecutionRecord]:
    """One task's executions of its current incarnation (all of them once it is deleted), latest
    start first, without their log lines; ``before`` is the previous page's cursor."""
    limit = check_limit(limit)
    order = "ORDER BY started_at DESC, execution_id DESC LIMIT ?"
    mine = f"task_id = ?1 AND {current_incarnation('?1')}"
    params: list[object]
    if before is None:
        tail, params = f"WHERE {mine} {order.replace('?', '?2')}", [task_id, limit + 1]
    else:
        started, execution_id = parse_time_cursor(before)
        tail = f"WHERE {mine} AND (started_at, execution_id) < (?2, ?3) {order.replace('?', '?4')}"
        params = [task_id, started, execution_id, limit + 1]
    found = salvage.page_rows(connection, "task_executions", PAGE_COLUMNS, tail, params)
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
    columns = ", ".join(
        column if column == "NULL" else f"e.{column}" for column in PAGE_COLUMNS.split(", ")
    )
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
        found, limit, execution_from_row, key_cursor, table="task_executions", key="execution_id"
    )
