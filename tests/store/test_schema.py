"""The schema: created at the latest version, migrated from a version 1 file made by hand and
from version 2 and 3 files with rows in every table, never downgraded, and a failing migration
leaves the file as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import libsql
import msgpack
import pytest

from store import (
    ExecutionOutcome,
    Fence,
    MasterKey,
    NewExecution,
    NewMissedRun,
    StoreError,
    TaskSpec,
)
from store.history import unsettled_executions
from store.missed_runs import missed_runs
from store.schema import LATEST_VERSION, MIGRATIONS, Migration, check_migrations
from tests.store.conftest import StoreFactory, at, raw_rows

# Version 1 exactly as it shipped, written out here on purpose: a shipped migration never changes.
V1_BY_HAND = (
    """CREATE TABLE scheduled_tasks (
        task_id TEXT PRIMARY KEY, task_class TEXT NOT NULL, schedule TEXT NOT NULL,
        config BLOB, enabled INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, last_run INTEGER, next_run INTEGER)""",
    """CREATE TABLE task_executions (
        execution_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, started_at INTEGER NOT NULL,
        completed_at INTEGER, success INTEGER, duration_seconds REAL, result BLOB,
        error_message TEXT, retry_count INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX task_executions_task_started ON task_executions (task_id, started_at)",
    """CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)""",
    "INSERT INTO schema_version VALUES (1, 'by hand', 0)",
)
US = 1_000_000
START = 1_714_564_800 * US  # 2024-05-01T12:00:00Z, which is conftest's T0


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("the tests")


def make_version_1(path: Path, key: MasterKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = libsql.connect(str(path), encryption_key=key.database_key().secret)
    for statement in V1_BY_HAND:
        connection.execute(statement)
    connection.execute(
        "INSERT INTO scheduled_tasks (task_id, task_class, schedule, config, enabled, created_at, "
        "updated_at, last_run) VALUES ('maintenance.vacuum', 'Vacuum', '@daily', NULL, 1, ?, ?, ?)",
        (START, START, START),
    )
    connection.executemany(
        "INSERT INTO task_executions VALUES (?, 'maintenance.vacuum', ?, ?, ?, ?, NULL, ?, ?)",
        [
            ("old-1", START, START + 2 * US, 1, 2.0, None, 0),
            ("old-2", START + 60 * US, START + 61 * US, 0, 1.0, "disk full", 2),
            ("old-3", START + 60 * US, None, None, None, None, 0),  # same start as old-2
        ],
    )
    connection.commit()
    connection.close()


async def test_a_new_store_is_at_the_latest_version(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    store = await make_store(master_key=key, clock=lambda: at(5))
    applied = [m.version for m in store.applied]
    assert applied == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] == [m.version for m in MIGRATIONS]
    await store.close()
    assert raw_rows(
        db_path, key, "SELECT version, description, applied_at FROM schema_version"
    ) == [(m.version, m.description, START + 5 * US) for m in MIGRATIONS]
    reopened = await make_store(master_key=key)
    assert reopened.applied == []


async def test_a_version_1_file_is_migrated_with_its_rows(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    make_version_1(db_path, key)
    store = await make_store(master_key=key)
    assert [m.version for m in store.applied] == [2, 3, 4, 5, 6, 7, 8, 9, 10]

    task = await store.get_task("maintenance.vacuum")
    assert (task.timezone, task.owner, task.version, task.config) == ("UTC", "", 1, {})
    assert task.last_run == at(0)
    assert task.accounted_through == at(0)  # what is owed starts after its last fire
    assert task.cron_rules == 1  # written under croniter's reading of cron, before version 5
    page = await store.history("maintenance.vacuum")
    assert [e.execution_id for e in page.items] == ["old-3", "old-2", "old-1"]
    old_2 = page.items[1]
    assert (old_2.scheduled_at, old_2.success, old_2.error_message, old_2.retry_count) == (
        at(60),
        False,
        "disk full",
        2,
    )
    keys = [e.idempotency_key for e in page.items]
    assert keys == [f"maintenance.vacuum@{START + 60 * US}#old-3", *keys[1:]]
    assert keys[1:] == [f"maintenance.vacuum@{START + 60 * US}", f"maintenance.vacuum@{START}"]

    # the migrated runs count as recorded fires
    again = await store.record_execution(
        NewExecution(task_id="maintenance.vacuum", scheduled_at=at(0), started_at=at(0))
    )
    assert again.duplicate
    assert again.record.execution_id == "old-1"
    status = await store.task_status("maintenance.vacuum")
    assert (status.runs, status.succeeded, status.failed, status.running) == (3, 1, 1, 1)
    assert status.last_error == "disk full"
    # old-3 (running, retry count 0) has a later attempt of its fire: old-2, retry count 2
    assert [e.execution_id for e in (await store.unsettled_executions()).items] == ["old-2"]
    await store.close()
    assert raw_rows(db_path, key, "SELECT version FROM schema_version") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
        (7,),
        (8,),
        (9,),
        (10,),
    ]


V2_TABLES = ("scheduled_tasks", "task_executions", "dead_letters", "scheduler_lease")


def fill_version_2(path: Path, key: MasterKey) -> None:
    """Rows in every table of a version 2 file, written as taskbus 2 wrote them."""
    connection = libsql.connect(str(path), encryption_key=key.database_key().secret)
    policy = msgpack.packb({"mode": "run_once", "grace_s": 60.0}, use_bin_type=True)
    retry = msgpack.packb({"max_attempts": 4}, use_bin_type=True)
    connection.executemany(
        "INSERT INTO scheduled_tasks (task_id, task_class, schedule, config, enabled, created_at, "
        "updated_at, last_run, next_run, timezone, misfire_policy, retry_policy, owner, version) "
        "VALUES (?, 'tasks.Report', '0 3 * * *', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("user.report", msgpack.packb({"days": 30}), 1, START, START + US, START,
             START + 3600 * US, "Europe/Berlin", policy, retry, "alice", 3),
            ("user.off", None, 0, START, START, None, None, "UTC", None, None, "", 1),
        ],
    )  # fmt: skip
    key_of = "user.report@{}".format
    connection.executemany(
        "INSERT INTO task_executions VALUES (?, 'user.report', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("e-1", START, START, START + US, 1, 1.0, msgpack.packb({"rows": 3}), None, 0,
             key_of(START)),
            ("e-2", START + 60 * US, START + 60 * US, START + 61 * US, 0, 1.0, None, "boom", 0,
             key_of(START + 60 * US)),
            ("e-3", START + 120 * US, START + 120 * US, None, None, None, None, None, 0,
             key_of(START + 120 * US)),
        ],
    )  # fmt: skip
    connection.execute(
        "INSERT INTO dead_letters (task_id, scheduled_at, attempts, error_type, last_error, "
        "reason, failed_at) VALUES ('user.report', ?, 4, 'TimeoutError', 'timed out', "
        "'exhausted', ?)",
        (START + 60 * US, START + 70 * US),
    )
    connection.execute(
        "INSERT INTO scheduler_lease VALUES ('scheduler', 'node-a', ?, 7)", (START + 30 * US,)
    )
    connection.commit()
    connection.close()


async def test_a_version_2_file_is_migrated_to_3_with_nothing_lost(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    version_2 = await make_store(master_key=key, migrations=MIGRATIONS[:2], clock=lambda: at(1))
    await version_2.close()
    fill_version_2(db_path, key)
    before = {t: raw_rows(db_path, key, f"SELECT * FROM {t} ORDER BY 1") for t in V2_TABLES}

    store = await make_store(master_key=key, clock=lambda: at(99), migrations=MIGRATIONS[:3])
    assert [m.version for m in store.applied] == [3]
    await store.close()
    after = {t: raw_rows(db_path, key, f"SELECT * FROM {t} ORDER BY 1") for t in V2_TABLES}
    # every row is kept as it was; tasks gain a run policy, NULL
    assert after["scheduled_tasks"] == [(*row, None) for row in before["scheduled_tasks"]]
    assert {t: after[t] for t in V2_TABLES[1:]} == {t: before[t] for t in V2_TABLES[1:]}
    assert raw_rows(db_path, key, "SELECT version, applied_at FROM schema_version") == [
        (1, START + US),
        (2, START + US),
        (3, START + 99 * US),
    ]

    store = await make_store(master_key=key)
    task = await store.get_task("user.report")
    assert (task.config, task.misfire_policy, task.retry_policy, task.run_policy) == (
        {"days": 30},
        {"mode": "run_once", "grace_s": 60.0},
        {"max_attempts": 4},
        None,
    )
    assert (task.version, task.last_run, task.next_run, task.owner) == (3, at(0), at(3600), "alice")
    same = TaskSpec(
        task_id="user.report",
        task_class="tasks.Report",
        schedule="0 3 * * *",
        config={"days": 30},
        timezone="Europe/Berlin",
        misfire_policy={"mode": "run_once", "grace_s": 60.0},
        retry_policy={"max_attempts": 4},
        owner="alice",
    )
    assert (await store.put_task(same, now=at(200))).duplicate  # a NULL run policy is None
    assert [(e.execution_id, e.state) for e in (await store.history("user.report")).items] == [
        ("e-3", "running"),
        ("e-2", "failed"),
        ("e-1", "succeeded"),
    ]
    first = await store.record_execution(
        NewExecution(task_id="user.report", scheduled_at=at(0), started_at=at(300))
    )
    assert (first.duplicate, first.record.execution_id) == (True, "e-1")
    # e-2 failed but its fire has a dead letter; e-3 is still running
    unsettled = await store.unsettled_executions()
    assert [e.execution_id for e in unsettled.items] == ["e-3"]
    (letter,) = (await store.dead_letters()).items
    assert (letter.scheduled_at, letter.attempts) == (at(60), 4)
    fence = Fence("scheduler", 7)  # the lease's token survived: its fence still holds
    run = NewMissedRun(first_at=at(180), last_at=at(180), count=1, reason="down")
    assert await store.record_missed("user.report", [run], now=at(300), fence=fence) == 1
    renewed = await store.renew_lease("scheduler", "node-a", 7, ttl_s=30, now=at(10))
    assert renewed.token == 7
    retried = await store.record_execution(
        NewExecution(
            task_id="user.report",
            scheduled_at=at(120),
            started_at=at(400),
            retry_count=1,
            outcome=ExecutionOutcome(completed_at=at(401), success=True),
        )
    )
    assert not retried.duplicate
    assert (await store.unsettled_executions()).items == ()


async def test_a_file_from_a_newer_taskbus_is_refused(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    store = await make_store(master_key=key)
    await store.close()
    connection = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    future = LATEST_VERSION + 1
    connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (future,))
    connection.commit()
    connection.close()
    with pytest.raises(StoreError) as caught:
        await make_store(master_key=key)
    assert str(caught.value) == (
        f"the database has schema version {future}, newer than this taskbus knows "
        f"({LATEST_VERSION}): "
        "upgrade taskbus, or restore a backup made by this version"
    )


async def test_version_4_accounts_each_task_from_its_last_fire_or_its_last_change(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    version_3 = await make_store(master_key=key, migrations=MIGRATIONS[:3], clock=lambda: at(1))
    await version_3.close()
    fill_version_2(db_path, key)  # user.report fired at START; user.off never fired
    store = await make_store(master_key=key, clock=lambda: at(99))
    assert [m.version for m in store.applied] == [4, 5, 6, 7, 8, 9, 10]
    report, off = await store.get_task("user.report"), await store.get_task("user.off")
    assert (report.last_run, report.accounted_through) == (at(0), at(0))
    assert (off.last_run, off.accounted_through) == (None, off.updated_at)
    await store.close()


async def test_version_5_marks_stored_schedules_as_written_under_the_old_cron_rules(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    """Rows stored before version 5 keep cron_rules 1 until their definition is written again;
    every definition written since is under today's rules (2)."""
    version_4 = await make_store(master_key=key, migrations=MIGRATIONS[:4], clock=lambda: at(1))
    await version_4.close()
    fill_version_2(db_path, key)
    store = await make_store(master_key=key, clock=lambda: at(99))
    assert [m.version for m in store.applied] == [5, 6, 7, 8, 9, 10]
    report = await store.get_task("user.report")
    assert report.cron_rules == 1
    new = TaskSpec(task_id="user.new", task_class="X", schedule="0 9 * * 1-1")
    await store.put_task(new, now=at(100))
    assert (await store.get_task("user.new")).cron_rules == 2
    rewritten = TaskSpec(
        task_id=report.task_id,
        task_class=report.task_class,
        schedule=report.schedule,
        config={"changed": True},
    )
    await store.put_task(rewritten, now=at(100))
    assert (await store.get_task("user.report")).cron_rules == 2
    await store.close()


async def test_a_failing_migration_leaves_the_previous_version(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    broken = (
        *MIGRATIONS,
        Migration(LATEST_VERSION + 1, "half done", ("CREATE TABLE leftovers (a)", "NOT SQL")),
    )
    with pytest.raises(
        StoreError, match=rf"migration to schema version {LATEST_VERSION + 1} \(half done\) failed"
    ):
        await make_store(master_key=key, migrations=broken)
    assert raw_rows(db_path, key, "SELECT max(version) FROM schema_version") == [(LATEST_VERSION,)]
    assert raw_rows(db_path, key, "SELECT name FROM sqlite_master WHERE name = 'leftovers'") == []


def test_migrations_must_be_numbered_in_order() -> None:
    check_migrations(MIGRATIONS)
    with pytest.raises(StoreError, match="has version 3, expected 2"):
        check_migrations((MIGRATIONS[0], Migration(3, "skips one", ())))


async def test_history_and_failures_are_served_by_their_indexes(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    await (await make_store(master_key=key)).close()

    def plan(sql: str) -> str:
        return " ".join(str(row[-1]) for row in raw_rows(db_path, key, f"EXPLAIN QUERY PLAN {sql}"))

    history = plan(
        "SELECT * FROM task_executions WHERE task_id = 'a' "
        "AND (started_at, execution_id) < (1, 'x') "
        "ORDER BY started_at DESC, execution_id DESC LIMIT 50"
    )
    assert "USING INDEX task_executions_history" in history
    assert "TEMP B-TREE" not in history  # no sort: the index gives the order
    failures = plan(
        "SELECT error_message FROM task_executions WHERE task_id = 'a' AND success = 0 "
        "ORDER BY started_at DESC, execution_id DESC LIMIT 1"
    )
    assert "USING INDEX task_executions_failures" in failures
    retention = plan("SELECT execution_id FROM task_executions WHERE started_at < 5")
    assert "task_executions_started" in retention


class RecordingConnection:
    """Keeps the statements a query function runs, and answers none of them."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> RecordingConnection:
        self.statements.append((sql, tuple(parameters)))
        return self

    def fetchall(self) -> list[Any]:
        return []


async def test_unsettled_executions_and_missed_runs_are_served_by_indexes(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    store = await make_store(master_key=key)
    await store.close()

    def plan(query: Callable[[Any], object]) -> str:
        recording = RecordingConnection()
        query(recording)
        ((sql, params),) = recording.statements
        found = raw_rows(db_path, key, f"EXPLAIN QUERY PLAN {sql}", params)
        return " ".join(str(row[-1]) for row in found)

    unsettled = plan(lambda c: unsettled_executions(c, at(0), "0190", 100))
    # successful runs are not in the partial index, so they are never scanned
    assert "SEARCH e USING INDEX task_executions_unsettled (execution_id>?)" in unsettled
    # a later attempt: a short range of the idempotency keys, not every run of the task
    assert "(idempotency_key>? AND idempotency_key<?)" in unsettled
    assert "task_executions_history" not in unsettled
    assert "USING COVERING INDEX sqlite_autoindex_dead_letters_1" in unsettled
    assert "TEMP B-TREE" not in unsettled
    missed = plan(lambda c: missed_runs(c, "a", "1:2", 50))
    assert "USING INDEX sqlite_autoindex_missed_runs_1 (task_id=? AND first_at<?)" in missed
    assert "TEMP B-TREE" not in missed
