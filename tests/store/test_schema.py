"""The schema: created at version 2, migrated from a version 1 file made by hand, never
downgraded, and a failing migration leaves the file as it was.
"""

from __future__ import annotations

from pathlib import Path

import libsql
import pytest

from actors.store import MasterKey, NewExecution, StoreError
from actors.store.schema import LATEST_VERSION, MIGRATIONS, Migration, check_migrations
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
    assert [m.version for m in store.applied] == [1, 2] == [m.version for m in MIGRATIONS]
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
    assert [m.version for m in store.applied] == [2]

    task = await store.get_task("maintenance.vacuum")
    assert (task.timezone, task.owner, task.version, task.config) == ("UTC", "", 1, {})
    assert task.last_run == at(0)
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
    await store.close()
    assert raw_rows(db_path, key, "SELECT version FROM schema_version") == [(1,), (2,)]


async def test_a_file_from_a_newer_taskbus_is_refused(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    store = await make_store(master_key=key)
    await store.close()
    connection = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (9,))
    connection.commit()
    connection.close()
    with pytest.raises(StoreError) as caught:
        await make_store(master_key=key)
    assert str(caught.value) == (
        f"the database has schema version 9, newer than this taskbus knows ({LATEST_VERSION}): "
        "upgrade taskbus, or restore a backup made by this version"
    )


async def test_a_failing_migration_leaves_the_previous_version(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    broken = (
        *MIGRATIONS,
        Migration(3, "half done", ("CREATE TABLE leftovers (a)", "THIS IS NOT SQL")),
    )
    with pytest.raises(StoreError, match=r"migration to schema version 3 \(half done\) failed"):
        await make_store(master_key=key, migrations=broken)
    assert raw_rows(db_path, key, "SELECT max(version) FROM schema_version") == [(2,)]
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
