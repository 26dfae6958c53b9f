"""``missed_runs``: fires of a task that did not run, as the scheduler reports them, one row per
fire or per range of fires (task id, ``first_at``).

Plain functions of a connection, on the store's thread, every value bound as a parameter and
``now`` always an argument. A write is one operation of a group commit (it raises having left
nothing behind); one task's missed runs are read in keyset pages, latest ``first_at`` first
(``store._paging``, ``store.salvage``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from store import salvage, values
from store._paging import check_limit, parse_int_time_cursor, time_cursor
from store._sql import Connection, Row
from store.leases import Fence, check_fence
from store.records import MissedRunRecord, NewMissedRun, Page, idempotency_key
from store.task_executions import executions_by_keys

MISSED_RUN_COLUMNS = "missed_id, task_id, first_at, last_at, count, reason, recorded_at"


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


def record_missed(
    connection: Connection,
    task_id: str,
    runs: Sequence[NewMissedRun],
    now: datetime,
    fence: Fence | None,
    *,
    fired: bool = False,
) -> int:
    """Keep fires of a task that did not run, in one statement; a run whose ``first_at`` is
    already kept for the task (or twice in ``runs``) writes nothing, and neither does one fire
    that was recorded as run (a scheduler that died between recording a fire and accounting for
    it plans the instant again after the takeover), unless ``fired``: the fires were recorded
    and the caller ends them as not run (an overlap policy's skip). Returns the rows inserted.
    """
    if fence is not None:
        check_fence(connection, fence)
    singles = [idempotency_key(task_id, r.first_at) for r in runs if r.first_at == r.last_at]
    if singles and not fired:
        ran = executions_by_keys(connection, singles)
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


def missed_runs(
    connection: Connection, task_id: str, before: str | None, limit: int
) -> Page[MissedRunRecord]:
    """One task's missed runs, latest ``first_at`` first; ``before`` is the previous cursor."""
    limit = check_limit(limit)
    conditions, params = ["task_id = ?"], list[object]([task_id])
    if before is not None:
        conditions.append("(first_at, missed_id) < (?, ?)")
        params.extend(parse_int_time_cursor(before))
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
        lambda row: time_cursor(row[2], row[0]),
        table="missed_runs",
        key="missed_id",
    )
