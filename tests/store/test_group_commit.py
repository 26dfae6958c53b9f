"""Group commit: writes that wait together share one transaction, each is answered only after
its commit, one failing write spoils only itself, and every libSQL call runs on the store's thread.

To make grouping deterministic, a test holds the store's thread in a call that waits on an event,
queues its writes, then lets the thread go: everything queued meanwhile is one group.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from config.store import StoreSettings
from store import (
    Conflict,
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewExecution,
    StoreError,
    TaskSpec,
)
from store._sql import Connection, scalar
from store.database import WAL_AUTOCHECKPOINT_PAGES, Database
from store.schema import LATEST_VERSION, MIGRATIONS, Migration
from tests.bus.waits import eventually
from tests.store.conftest import StoreFactory, at

T = TypeVar("T")


def fire(task_id: str, n: int) -> NewExecution:
    return NewExecution(task_id=task_id, scheduled_at=at(n), started_at=at(n))


@asynccontextmanager
async def held(store: LibsqlStore) -> AsyncIterator[threading.Event]:
    """The store's thread waits inside a call until the block ends (or the event is set)."""
    release = threading.Event()
    entered = threading.Event()

    def hold(database: Database) -> None:
        entered.set()
        release.wait(10)

    holding = asyncio.ensure_future(store.worker.call(hold))
    await eventually(entered.is_set, "the store's thread is held")
    try:
        yield release
    finally:
        release.set()
        await holding


async def queued(store: LibsqlStore, *writes: Awaitable[Any]) -> list[asyncio.Future[Any]]:
    """Start ``writes`` and wait until all of them are queued behind the held thread."""
    before = store.worker.pending
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(write) for write in writes]
    await eventually(lambda: store.worker.pending == before + len(writes), "writes queued")
    return futures


async def runs(store: LibsqlStore, task_id: str) -> int:
    return (await store.stats(task_id=task_id)).overall.runs


async def test_writes_waiting_together_share_one_commit(store: LibsqlStore) -> None:
    stats = store.worker.stats
    before = (stats.commits, stats.writes)
    async with held(store):
        futures = await queued(
            store, *(store.record_execution(fire("t.group", n)) for n in range(100))
        )
    recorded = await asyncio.gather(*futures)
    assert [r.duplicate for r in recorded] == [False] * 100
    assert (stats.commits - before[0], stats.writes - before[1]) == (1, 100)
    assert stats.largest_group == 100
    assert await runs(store, "t.group") == 100


async def test_a_group_is_no_larger_than_max_batch(make_store: StoreFactory) -> None:
    store = await make_store(settings=StoreSettings(max_batch=8))
    commits = store.worker.stats.commits
    async with held(store):
        futures = await queued(
            store, *(store.record_execution(fire("t.cap", n)) for n in range(20))
        )
    await asyncio.gather(*futures)
    assert store.worker.stats.commits - commits == 3  # 8 + 8 + 4
    assert store.worker.stats.largest_group == 8


async def test_a_failing_write_is_undone_alone_and_the_group_commits(store: LibsqlStore) -> None:
    await store.put_task(TaskSpec(task_id="t.v", task_class="J", schedule="@daily"), now=at(0))
    oversize = ExecutionOutcome(completed_at=at(2), success=True, result={"x": "y" * 70_000})
    async with held(store):
        first, stale, half, last = await queued(
            store,
            store.record_execution(fire("t.ok", 1)),
            store.put_task(
                TaskSpec(task_id="t.v", task_class="J", schedule="@hourly"),
                now=at(1),
                expected_version=7,
            ),
            # inserts the run, then fails on its result: the insert must be undone too
            store.record_execution(
                NewExecution(
                    task_id="t.half", scheduled_at=at(1), started_at=at(1), outcome=oversize
                )
            ),
            store.record_execution(fire("t.ok", 2)),
        )
    assert not (await first).duplicate
    assert not (await last).duplicate
    with pytest.raises(Conflict, match=r"'t\.v' is at version 1, not at the expected version 7"):
        await stale
    with pytest.raises(InvalidValue, match=r"result: is \d+ bytes encoded, more than the 65536"):
        await half
    assert await runs(store, "t.ok") == 2
    assert await runs(store, "t.half") == 0
    assert (await store.get_task("t.v")).schedule == "@daily"


async def test_a_failed_commit_fails_every_write_of_the_group_and_keeps_none(
    make_store: StoreFactory,
) -> None:
    """A deferred foreign key is only checked at COMMIT: a way to make a commit fail on demand."""
    migrations = (
        *MIGRATIONS,
        Migration(
            LATEST_VERSION + 1,
            "a deferred foreign key, for this test",
            (
                "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
                "CREATE TABLE child (parent_id INTEGER "
                "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
            ),
        ),
    )
    store = await make_store(migrations=migrations)
    await store.worker.call(lambda db: db.connection.execute("PRAGMA foreign_keys = ON"))

    def orphan(connection: Any) -> None:
        connection.execute("INSERT INTO child VALUES (42)")

    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.lost", 1)),
            store.worker.write(orphan),
            store.record_execution(fire("t.lost", 2)),
        )
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        assert isinstance(result, StoreError)
        assert "commit failed, nothing written" in str(result)
        assert "FOREIGN KEY constraint failed" in str(result)
    assert await runs(store, "t.lost") == 0
    await store.record_execution(fire("t.lost", 3))  # the store carries on
    assert await runs(store, "t.lost") == 1


async def test_every_libsql_call_runs_on_the_store_thread(store: LibsqlStore) -> None:
    seen: list[str] = []

    def where(connection: Any) -> None:
        seen.append(threading.current_thread().name)

    await store.worker.write(where)
    await store.worker.read(where)
    await store.worker.call(lambda database: where(database.connection))
    assert seen == ["taskbus-store-db"] * 3
    assert threading.current_thread().name != "taskbus-store-db"


async def test_a_read_sees_every_write_queued_before_it(store: LibsqlStore) -> None:
    async with held(store):
        futures = await queued(
            store,
            *(store.record_execution(fire("t.order", n)) for n in range(10)),
            store.stats(task_id="t.order"),
        )
    report = await futures[-1]
    assert report.overall.runs == 10


async def test_a_cancelled_caller_s_write_still_commits(store: LibsqlStore) -> None:
    async with held(store):
        (write,) = await queued(store, store.record_execution(fire("t.cancelled", 1)))
        write.cancel()
    assert await runs(store, "t.cancelled") == 1


async def test_close_finishes_queued_writes_then_refuses_more(
    make_store: StoreFactory, store: LibsqlStore
) -> None:
    worker = store.worker
    async with held(store):
        futures = await queued(
            store, *(store.record_execution(fire("t.close", n)) for n in range(20))
        )
        closing = asyncio.ensure_future(store.close())
        await eventually(lambda: worker.pending == 21, "close() queued behind the writes")
    await closing
    assert [(await future).duplicate for future in futures] == [False] * 20
    with pytest.raises(StoreError, match="is not running"):
        await store.record_execution(fire("t.close", 99))
    await store.close()  # idempotent
    reopened = await make_store()
    assert await runs(reopened, "t.close") == 20


async def test_the_durability_settings_hold_after_start_and_after_a_rekey(
    store: LibsqlStore,
) -> None:
    """WAL with ``synchronous = FULL`` (2): every commit fsyncs the log before it is
    acknowledged; checkpoints only every WAL_AUTOCHECKPOINT_PAGES pages of log.
    """

    def read(connection: Connection) -> list[object]:
        names = ("journal_mode", "synchronous", "wal_autocheckpoint")
        return [scalar(connection, f"PRAGMA {name}") for name in names]

    async def pragmas() -> list[object]:
        return await store.worker.read(read)

    assert await pragmas() == ["wal", 2, WAL_AUTOCHECKPOINT_PAGES]
    await store.rekey()
    assert await pragmas() == ["wal", 2, WAL_AUTOCHECKPOINT_PAGES]
