"""Execution records in a group commit: the records queued next to each other are one batch (one
multi-row insert, one lookup of duplicates), with the outcome of recording them one after the
other. A bad record fails alone, duplicates are duplicates whether their first record is in the
same batch or an earlier one, and the whole group is answered in one hop to the event loop.

Grouping is made deterministic as in test_group_commit: the store's thread is held while the
writes queue up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from config.store import StoreSettings
from store import (
    ExecutionOutcome,
    ExecutionRecord,
    Fence,
    InvalidValue,
    LeaseLost,
    LibsqlStore,
    NewExecution,
    Recorded,
    StoreError,
    TaskSpec,
    task_executions,
)
from store._sql import Connection
from store.database import Database
from store.operations import Outcome
from store.task_executions import RecordExecution
from tests.store.conftest import StoreFactory, at
from tests.store.test_group_commit import fire, held, queued, runs

TOO_BIG = {"x": "y" * 70_000}


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch of records run from now on."""
    sizes: list[int] = []
    run_batch = RecordExecution.run_batch.__func__  # type: ignore[attr-defined]

    def counted(
        cls: type[RecordExecution], connection: Connection, operations: Sequence[RecordExecution]
    ) -> list[Outcome[Recorded[ExecutionRecord]]]:
        sizes.append(len(operations))
        return run_batch(cls, connection, operations)  # type: ignore[no-any-return]

    monkeypatch.setattr(RecordExecution, "run_batch", classmethod(counted))
    return sizes


def finished(task_id: str, n: int, **fields: Any) -> NewExecution:
    return NewExecution(
        task_id=task_id,
        scheduled_at=at(n),
        started_at=at(n),
        outcome=ExecutionOutcome(completed_at=at(n + 1), **fields),
    )


async def test_records_queued_together_are_one_batch_and_one_commit(
    store: LibsqlStore, batches: list[int]
) -> None:
    stats = store.worker.stats
    commits = stats.commits
    async with held(store):
        futures = await queued(
            store, *(store.record_execution(fire("t.batch", n)) for n in range(50))
        )
    recorded = await asyncio.gather(*futures)
    assert batches == [50]
    assert stats.commits - commits == 1
    assert [r.duplicate for r in recorded] == [False] * 50
    assert len({r.record.execution_id for r in recorded}) == 50
    assert await runs(store, "t.batch") == 50


async def test_other_writes_split_the_batches_and_keep_the_order(
    store: LibsqlStore, batches: list[int]
) -> None:
    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.split", 1)),
            store.record_execution(fire("t.split", 2)),
            store.put_task(
                TaskSpec(task_id="t.split", task_class="J", schedule="@daily"), now=at(0)
            ),
            store.record_execution(fire("t.split", 1)),  # recorded two writes before
            store.record_execution(fire("t.split", 3)),
        )
    first, _, task, again, third = await asyncio.gather(*futures)
    assert batches == [2, 2]
    assert not task.duplicate
    assert again.duplicate
    assert again.record == first.record
    assert not third.duplicate


async def test_a_bad_record_fails_alone_and_the_batch_commits_without_a_rerun(
    store: LibsqlStore, batches: list[int]
) -> None:
    lease = await store.acquire_lease("scheduler", "host-a", ttl_s=30, now=at(0))
    current = Fence("scheduler", lease.lease.token)
    stale = Fence("scheduler", lease.lease.token - 1)
    batches.clear()
    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.mixed", 1), fence=current),
            store.record_execution(finished("t.mixed", 2, success=True, result=TOO_BIG)),
            store.record_execution(fire("t.mixed", 3), fence=stale),
            store.record_execution(fire("t.mixed", 4), fence=Fence("nobody", 1)),
            store.record_execution(fire("t.mixed", 5)),
        )
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert batches == [5]  # one batch; a rerun would run each record alone
    good = [results[0], results[4]]
    assert all(isinstance(r, Recorded) and not r.duplicate for r in good)
    assert isinstance(results[1], InvalidValue)
    assert results[1].field == "result"
    assert isinstance(results[2], LeaseLost)
    assert "is stale (now at token" in str(results[2])
    assert isinstance(results[3], LeaseLost)
    assert "never granted" in str(results[3])
    page = await store.history("t.mixed")
    assert sorted(r.scheduled_at for r in page.items) == [at(1), at(5)]
    for result in good:
        assert isinstance(result, Recorded)
        assert await store.get_execution(result.record.execution_id) == result.record


async def test_duplicates_inside_one_batch_return_the_first_record(
    store: LibsqlStore, batches: list[int]
) -> None:
    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.twice", 1)),
            store.record_execution(
                NewExecution(task_id="t.twice", scheduled_at=at(1), started_at=at(9))
            ),
            store.record_execution(fire("t.other", 1)),
            store.record_execution(retry("t.twice", 1)),
            store.record_execution(finished("t.twice", 1, success=False)),
            store.record_execution(retry("t.twice", 1)),
        )
    first, second, other, first_retry, third, second_retry = await asyncio.gather(*futures)
    assert batches == [6]
    assert (first.duplicate, other.duplicate, first_retry.duplicate) == (False, False, False)
    assert [second.duplicate, third.duplicate, second_retry.duplicate] == [True] * 3
    assert second.record == first.record
    assert third.record == first.record
    assert second_retry.record == first_retry.record
    assert first_retry.record.retry_count == 1
    assert await runs(store, "t.twice") == 2
    stored = await store.get_execution(first.record.execution_id)
    assert stored == first.record  # running: the finished duplicate changed nothing


async def test_duplicates_of_earlier_batches_return_the_stored_record(
    store: LibsqlStore, batches: list[int]
) -> None:
    earlier = [await store.record_execution(fire("t.across", n)) for n in range(3)]
    batches.clear()
    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.across", 3)),
            *(store.record_execution(fire("t.across", n)) for n in (2, 0, 1)),
            store.record_execution(fire("t.across", 4)),
        )
    new3, again2, again0, again1, new4 = await asyncio.gather(*futures)
    assert batches == [5]
    assert [new3.duplicate, new4.duplicate] == [False, False]
    assert [again0.record, again1.record, again2.record] == [r.record for r in earlier]
    assert [again0.duplicate, again1.duplicate, again2.duplicate] == [True] * 3
    assert await runs(store, "t.across") == 5


async def test_a_batch_longer_than_one_insert_statement(make_store: StoreFactory) -> None:
    store = await make_store(settings=StoreSettings(max_batch=2_000))
    per_statement = task_executions._ROWS_PER_INSERT
    count = per_statement * 2 + 100
    # the repeats of fire 0 fall in the second and third statements
    order = [*range(count), 0, per_statement + 1]
    async with held(store):
        futures = await queued(store, *(store.record_execution(fire("t.long", n)) for n in order))
    recorded = await asyncio.gather(*futures)
    assert store.worker.stats.largest_group == len(order)
    assert [r.duplicate for r in recorded[:count]] == [False] * count
    assert recorded[count].duplicate
    assert recorded[count].record == recorded[0].record
    assert recorded[count + 1].record == recorded[per_statement + 1].record
    assert await runs(store, "t.long") == count


async def test_finished_records_keep_every_field_in_a_batch(store: LibsqlStore) -> None:
    settings = store.settings
    news = [
        fire("t.fields", 1),
        finished("t.fields", 2, success=True, result={"rows": [1, 2], "ok": True}),
        finished(
            "t.fields",
            3,
            success=False,
            error_message="x\x00" + "e" * (settings.max_error_chars + 10),
            retry_count=4,
            duration_seconds=0.5,
        ),
        retry("t.fields", 4),
    ]
    async with held(store):
        futures = await queued(store, *(store.record_execution(new) for new in news))
    recorded = [r.record for r in await asyncio.gather(*futures)]
    for record in recorded:
        assert await store.get_execution(record.execution_id) == record
    running, succeeded, failed, retried = recorded
    assert (running.success, running.completed_at, running.result) == (None, None, None)
    assert succeeded.result == {"rows": [1, 2], "ok": True}
    assert succeeded.duration_seconds == 1.0
    assert failed.error_message is not None
    assert failed.error_message.startswith("x\\0e")
    assert len(failed.error_message) == settings.max_error_chars
    assert (failed.retry_count, failed.duration_seconds) == (4, 0.5)
    assert failed.idempotency_key.endswith("@1714564803000000")  # the attempt's key: retry 0
    assert (retried.retry_count, retried.idempotency_key[-2:]) == (1, "#1")


async def test_an_sql_error_in_a_batch_reruns_the_group_one_write_at_a_time(
    store: LibsqlStore, batches: list[int]
) -> None:
    """A record that passes every check but that SQLite refuses (here, a trigger) spoils the
    batch's statement: the group is rolled back and run again one write at a time, so that only
    that record fails.
    """

    def refuse(database: Database) -> None:
        database.connection.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.task_executions "
            "WHEN NEW.task_id = 't.refused' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )

    await store.worker.call(refuse)
    async with held(store):
        futures = await queued(
            store,
            store.record_execution(fire("t.kept", 1)),
            store.record_execution(fire("t.refused", 1)),
            store.record_execution(fire("t.kept", 2)),
        )
    kept1, refused, kept2 = await asyncio.gather(*futures, return_exceptions=True)
    assert batches == [3, 1, 1, 1]  # the batch, then each record alone
    assert isinstance(refused, StoreError)
    assert "refused by a trigger" in str(refused)
    for result in (kept1, kept2):
        assert isinstance(result, Recorded)
        assert not result.duplicate
        assert await store.get_execution(result.record.execution_id) == result.record
    assert await runs(store, "t.kept") == 2
    assert await runs(store, "t.refused") == 0


async def test_a_group_is_answered_in_one_hop_to_the_event_loop(
    store: LibsqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    hops: list[object] = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any) -> asyncio.Handle:
        hops.append(callback)
        return call_soon_threadsafe(callback, *args)

    async with held(store):
        futures = await queued(
            store, *(store.record_execution(fire("t.hop", n)) for n in range(40))
        )
        monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    await asyncio.gather(*futures)
    monkeypatch.undo()
    # the held call's answer, then one for the 40 writes
    assert len(hops) == 2


def retry(task_id: str, n: int) -> NewExecution:
    return NewExecution(task_id=task_id, scheduled_at=at(n), started_at=at(n + 0.5), retry_count=1)
