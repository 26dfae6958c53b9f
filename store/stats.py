"""Statistics of ``task_executions``: run counts, success and failure rates, mean, min, max and
95th percentile durations, per task and over all tasks.
"""

from __future__ import annotations

from datetime import datetime

from store import values
from store._sql import Connection, Row, one, rows
from store.records import RunStats, StatsReport
from store.task_executions import current_incarnation


def stats(connection: Connection, since: datetime | None, task_id: str | None) -> StatsReport:
    """Run counts, rates and durations per task and over all tasks (or of one task).

    Only executions started at or after ``since`` count, and of a task only those of its
    current incarnation (all of a deleted task's: ``task_executions.current_incarnation``).
    Costs a scan of the matching rows.
    """
    conditions, params = [current_incarnation("task_executions.task_id")], list[object]()
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
    counted = one(
        connection,
        "SELECT count(*), total(enabled = 1) FROM scheduled_tasks"
        + ("" if task_id is None else " WHERE task_id = ?"),
        [] if task_id is None else [task_id],
    )
    assert counted is not None
    return StatsReport(
        overall=_run_stats(None, overall, overall_p95),
        tasks=tuple(_run_stats(row[0], row[1:], p95_by_task.get(row[0])) for row in per_task),
        since=since,
        stored_tasks=int(counted[0]),
        enabled_tasks=int(counted[1]),
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
