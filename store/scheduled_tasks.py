"""``scheduled_tasks``: one row per task definition, with its run state (``last_run``,
``next_run``, ``accounted_through``); and the status of a task, with the counts of its runs.

Plain functions of a connection, on the store's thread, every value bound as a parameter and
``now`` always an argument. A write is one operation of a group commit: it runs inside the
store's transaction (and, when a neighbour in the group fails, its own savepoint), so one that
raises leaves nothing behind.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from config.cron import CRON_RULES
from config.store import StoreSettings
from store import salvage, values
from store._paging import check_limit, key_cursor
from store._sql import Connection, Row, one, rows_in
from store.errors import Conflict, InvalidValue, NotFound, StoreError
from store.leases import Fence, check_fence
from store.records import Page, Recorded, RunMark, TaskRecord, TaskSpec, TaskStatus

TASK_COLUMNS = (
    "task_id, task_class, schedule, config, enabled, timezone, misfire_policy, retry_policy, "
    "run_policy, owner, created_at, updated_at, last_run, next_run, version, accounted_through, "
    "cron_rules, paused, note, fire_count"
)


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
        paused=bool(row[17]),
        note=row[18],
        fire_count=row[19],
    )


# ------------------------------------------------------------------ reads


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
    return salvage.page(
        found, limit, task_from_row, key_cursor, table="scheduled_tasks", key="task_id"
    )


def task_status(connection: Connection, task_id: str) -> TaskStatus:
    task = one(
        connection,
        "SELECT enabled, last_run, next_run, created_at FROM scheduled_tasks WHERE task_id = ?",
        [task_id],
    )
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    # The runs of this incarnation of the task only (task_executions.current_incarnation: the
    # task exists here, so the subquery is its created_at).
    mine = "task_id = ?1 AND incarnation IS ?2"
    counts = one(
        connection,
        "SELECT count(*), total(success = 1), total(success = 0), total(success IS NULL), "
        f"max(scheduled_at) FROM task_executions WHERE {mine}",
        [task_id, task[3]],
    )
    assert counts is not None
    error = one(
        connection,
        "SELECT error_message, coalesce(completed_at, started_at) FROM task_executions "
        f"WHERE {mine} AND success = 0 ORDER BY started_at DESC, execution_id DESC LIMIT 1",
        [task_id, task[3]],
    )
    # The last run counts every run of this incarnation, manual ones too, not only the
    # schedule's fires that mark_run records.
    last_run = max((at for at in (task[1], counts[4]) if at is not None), default=None)
    return TaskStatus(
        task_id=task_id,
        enabled=bool(task[0]),
        last_run=values.maybe_from_us(last_run),
        next_run=values.maybe_from_us(task[2]),
        runs=int(counts[0]),
        succeeded=int(counts[1]),
        failed=int(counts[2]),
        running=int(counts[3]),
        last_error=None if error is None else error[0],
        last_error_at=None if error is None else values.from_us(error[1]),
    )


# ------------------------------------------------------------------ writes


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
    encoded = _Encoded.of(spec, limits)
    stored = one(
        connection,
        "SELECT version, task_class, schedule, config, enabled, timezone, misfire_policy, "
        "retry_policy, run_policy, owner, paused, note, next_run FROM scheduled_tasks "
        "WHERE task_id = ?",
        [spec.task_id],
    )
    if stored is None:
        record, new_row = _new_task(spec, encoded, _as_read_back(now), expected_version)
        _insert_new(connection, [new_row])
        return Recorded(record, duplicate=False)
    version = int(stored[0])
    if expected_version is not None and expected_version != version:
        raise Conflict(
            f"task {spec.task_id!r} is at version {version}, not at the expected version "
            f"{expected_version}"
        )
    next_run = None if spec.next_run is None else values.to_us(spec.next_run)
    accounted = None if spec.accounted_through is None else values.to_us(spec.accounted_through)
    fields = encoded.fields(spec)
    if tuple(stored[1:12]) == fields and next_run in (None, stored[12]):
        return Recorded(get_task(connection, spec.task_id), duplicate=True)
    now_us = values.to_us(now)
    row = one(
        connection,
        "UPDATE scheduled_tasks SET task_class = ?, schedule = ?, config = ?, enabled = ?, "
        "timezone = ?, misfire_policy = ?, retry_policy = ?, run_policy = ?, owner = ?, "
        "paused = ?, note = ?, next_run = coalesce(?, next_run), updated_at = ?, "
        f"cron_rules = {CRON_RULES}, "  # written now: under today's cron rules
        f"version = version + 1, accounted_through = {_later('accounted_through', '?14')} "
        f"WHERE task_id = ? RETURNING {TASK_COLUMNS}",
        [*fields, next_run, now_us, accounted, spec.task_id],
    )
    assert row is not None
    return Recorded(task_from_row(row), duplicate=False)


def put_tasks(
    connection: Connection,
    puts: Sequence[tuple[TaskSpec, int | None]],
    now: datetime,
    fence: Fence | None,
    limits: StoreSettings,
) -> list[Recorded[TaskRecord] | StoreError]:
    """``put_task`` of each (spec, expected version), in order, in one write, after checking
    ``fence`` once (LeaseLost fails them all). A put refused on its own (Conflict: a stale
    version or a taken id; InvalidValue: a value out of its domain) is refused before any of
    its SQL wrote: its error takes its place and the others go on.

    The ids are looked up in one query; the new tasks among them are inserted by multi-row
    statements and their records made from what was written, not read back. A put of an id
    stored before, or written earlier in the batch, is ``put_task``'s own.
    """
    if fence is not None:
        check_fence(connection, fence)
    ids = [spec.task_id for spec, _ in puts]
    stored = {row[0] for row in rows_in(connection, _SELECT_IDS, "task_id", ids)}
    created = _as_read_back(now)
    outcomes: list[Recorded[TaskRecord] | StoreError] = []
    new_rows: dict[str, list[object]] = {}  # inserts not yet made, by task id, in order
    for spec, expected_version in puts:
        try:
            if spec.task_id in stored or spec.task_id in new_rows:
                if spec.task_id in new_rows:  # written earlier in the batch: it goes first
                    _insert_new(connection, list(new_rows.values()))
                    stored.update(new_rows)
                    new_rows.clear()
                outcomes.append(put_task(connection, spec, now, expected_version, limits))
                continue
            encoded = _Encoded.of(spec, limits)
            record, row = _new_task(spec, encoded, created, expected_version)
        except (Conflict, InvalidValue) as error:
            outcomes.append(error)
            continue
        new_rows[spec.task_id] = row
        outcomes.append(Recorded(record, duplicate=False))
    _insert_new(connection, list(new_rows.values()))
    return outcomes


_SELECT_IDS = "SELECT task_id FROM scheduled_tasks"


class _Encoded(NamedTuple):
    """A spec's four maps as stored (msgpack) and as they read back."""

    config: bytes | None
    misfire_policy: bytes | None
    retry_policy: bytes | None
    run_policy: bytes | None
    read_back: tuple[dict[str, Any] | None, ...]

    @classmethod
    def of(cls, spec: TaskSpec, limits: StoreSettings) -> _Encoded:
        """Refused (InvalidValue) if a map does not round-trip or is over its size limit."""
        most = limits.max_value_bytes
        config = values.encoded("config", spec.config, most)
        misfire = values.encoded("misfire_policy", spec.misfire_policy, most)
        retry = values.encoded("retry_policy", spec.retry_policy, most)
        run = values.encoded("run_policy", spec.run_policy, most)
        return cls(
            config[0], misfire[0], retry[0], run[0], (config[1], misfire[1], retry[1], run[1])
        )

    def fields(self, spec: TaskSpec) -> tuple[object, ...]:
        """The definition's columns as stored, in the order ``put_task`` compares them."""
        return (
            spec.task_class,
            spec.schedule,
            self.config,
            int(spec.enabled),
            spec.timezone,
            self.misfire_policy,
            self.retry_policy,
            self.run_policy,
            spec.owner,
            int(spec.paused),
            spec.note,
        )


def _new_task(
    spec: TaskSpec, encoded: _Encoded, now: datetime, expected_version: int | None
) -> tuple[TaskRecord, list[object]]:
    """The record of ``spec`` stored as a new task, and its row (TASK_COLUMNS' values): version
    1, created ``now`` (in UTC, as it reads back), never run, accounted for through
    ``accounted_through`` or now. Conflict if the put expected a version of a task that exists.

    The record's instants are the spec's and ``now`` themselves: a TaskSpec holds its instants
    in UTC, and microseconds since the epoch (what a row holds) keep every one exactly.
    """
    if expected_version not in (None, 0):
        raise Conflict(
            f"task {spec.task_id!r} does not exist, not at the expected version {expected_version}"
        )
    accounted_through = now if spec.accounted_through is None else spec.accounted_through
    now_us = values.to_us(now)
    config, misfire, retry, run = encoded.read_back
    record = TaskRecord(
        task_id=spec.task_id,
        task_class=spec.task_class,
        schedule=spec.schedule,
        config=config or {},
        enabled=spec.enabled,
        timezone=spec.timezone,
        misfire_policy=misfire,
        retry_policy=retry,
        run_policy=run,
        owner=spec.owner,
        created_at=now,
        updated_at=now,
        last_run=None,
        next_run=spec.next_run,
        version=1,
        accounted_through=accounted_through,
        cron_rules=CRON_RULES,
        paused=spec.paused,
        note=spec.note,
        fire_count=0,
    )
    row: list[object] = [
        spec.task_id,
        spec.task_class,
        spec.schedule,
        encoded.config,
        int(spec.enabled),
        spec.timezone,
        encoded.misfire_policy,
        encoded.retry_policy,
        encoded.run_policy,
        spec.owner,
        now_us,
        now_us,
        None,
        None if spec.next_run is None else values.to_us(spec.next_run),
        1,
        values.to_us(accounted_through),
        CRON_RULES,
        int(spec.paused),
        spec.note,
        0,
    ]
    return record, row


def _as_read_back(now: datetime) -> datetime:
    """``now`` as a row's instant reads back: in UTC, to the microsecond."""
    return values.from_us(values.to_us(now))


def _insert_new(connection: Connection, rows: Sequence[Sequence[object]]) -> None:
    """Insert new tasks' rows (``_new_task``'s), _ROWS_PER_INSERT to a statement."""
    for first in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[first : first + _ROWS_PER_INSERT]
        connection.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])


# Rows per INSERT statement (20 parameters each; SQLite binds at most 32,766).
_ROWS_PER_INSERT = 200
_COLUMN_COUNT = len(TASK_COLUMNS.split(","))


@functools.cache
def _insert_sql(count: int) -> str:
    row = f"({', '.join(['?'] * _COLUMN_COUNT)})"
    return f"INSERT INTO scheduled_tasks ({TASK_COLUMNS}) VALUES {', '.join([row] * count)}"


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
