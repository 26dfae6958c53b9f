"""Missed runs: fires that did not run, kept once per (task, first_at) in one write, fenced by
the lease, listed newest first in keyset pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from store import (
    Fence,
    InvalidValue,
    LeaseLost,
    LibsqlStore,
    MissedRunRecord,
    NewExecution,
    NewMissedRun,
)
from store.records import MAX_MISSED_BATCH
from tests.store.conftest import at


def missed(n: float, count: int = 1, span: float = 0, reason: str = "store down") -> NewMissedRun:
    """``count`` fires from ``at(n)`` to ``at(n + span)``."""
    return NewMissedRun(first_at=at(n), last_at=at(n + span), count=count, reason=reason)


async def test_missed_runs_are_kept_once_per_first_instant(store: LibsqlStore) -> None:
    runs = [missed(0), missed(60, count=10, span=540, reason="misfire: skipped")]
    assert await store.record_missed("t.a", runs, now=at(1000)) == 2
    page = await store.missed_runs("t.a")
    assert page.next_cursor is None
    newest, oldest = page.items
    assert newest == MissedRunRecord(
        missed_id=newest.missed_id,
        task_id="t.a",
        first_at=at(60),
        last_at=at(600),
        count=10,
        reason="misfire: skipped",
        recorded_at=at(1000),
    )
    assert (oldest.first_at, oldest.last_at, oldest.count, oldest.reason) == (
        at(0),
        at(0),
        1,
        "store down",
    )
    # the same first instants again, and one twice in one request: only the new one is kept
    again = [missed(0, reason="other"), missed(60, count=3, span=120), missed(900), missed(900)]
    assert await store.record_missed("t.a", again, now=at(2000)) == 1
    page = await store.missed_runs("t.a")
    assert [(m.first_at, m.count, m.reason, m.recorded_at) for m in page.items] == [
        (at(900), 1, "store down", at(2000)),
        (at(60), 10, "misfire: skipped", at(1000)),
        (at(0), 1, "store down", at(1000)),
    ]
    # another task's runs at the same instants are its own
    assert await store.record_missed("t.b", [missed(0)], now=at(3000)) == 1
    assert [m.task_id for m in (await store.missed_runs("t.b")).items] == ["t.b"]
    assert (await store.missed_runs("t.none")).items == ()


async def test_a_fire_that_was_recorded_as_run_is_not_also_kept_as_missed(
    store: LibsqlStore,
) -> None:
    await store.record_execution(
        NewExecution(task_id="t.a", scheduled_at=at(60), started_at=at(61))
    )
    runs = [missed(0), missed(60, reason="misfire: skipped"), missed(60, count=3, span=120)]
    assert await store.record_missed("t.a", runs[:2], now=at(200)) == 1
    assert [m.first_at for m in (await store.missed_runs("t.a")).items] == [at(0)]
    # a range is kept as a range: the runs inside it are the scheduler's to subtract
    assert await store.record_missed("t.a", runs[2:], now=at(201)) == 1


async def test_a_full_batch_is_one_write(store: LibsqlStore) -> None:
    runs = [missed(n) for n in range(MAX_MISSED_BATCH)]
    assert await store.record_missed("t.many", runs, now=at(0)) == MAX_MISSED_BATCH
    assert await store.record_missed("t.many", runs, now=at(1)) == 0
    with pytest.raises(InvalidValue) as caught:
        await store.record_missed("t.many", [*runs, missed(-1)], now=at(0))
    assert str(caught.value) == "runs: has 1001 entries, expected 1..1000"
    with pytest.raises(InvalidValue, match=r"runs: has 0 entries, expected 1\.\.1000"):
        await store.record_missed("t.many", [], now=at(0))
    assert len((await store.missed_runs("t.many", limit=1000)).items) == MAX_MISSED_BATCH


async def test_missed_run_pages_are_newest_first_and_stable_under_new_writes(
    store: LibsqlStore,
) -> None:
    await store.record_missed("t.p", [missed(n * 60) for n in range(23)], now=at(0))
    await store.record_missed("t.other", [missed(n * 60) for n in range(5)], now=at(0))
    seen: list[datetime] = []
    cursor = None
    pages = 0
    while True:
        page = await store.missed_runs("t.p", before=cursor, limit=5)
        seen.extend(m.first_at for m in page.items)
        pages += 1
        if pages == 2:  # newer missed runs, written while paging, do not shift the pages
            await store.record_missed("t.p", [missed(10_000)], now=at(1))
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [at(n * 60) for n in reversed(range(23))]
    assert pages == 5


@pytest.mark.parametrize("cursor", ["", "garbage", "12:", ":3", "12:x"])
async def test_a_missed_cursor_the_store_did_not_make_is_refused(
    store: LibsqlStore, cursor: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.missed_runs("t.p", before=cursor)
    assert caught.value.field == "cursor"


async def test_a_stale_fence_refuses_the_whole_batch(store: LibsqlStore) -> None:
    grant = await store.acquire_lease("scheduler", "node-a", ttl_s=30, now=at(0))
    fence = Fence("scheduler", grant.lease.token)
    assert await store.record_missed("t.f", [missed(0)], now=at(1), fence=fence) == 1
    await store.acquire_lease("scheduler", "node-b", ttl_s=30, now=at(31))  # token 2
    with pytest.raises(LeaseLost, match="lease 'scheduler' token 1 is stale"):
        await store.record_missed("t.f", [missed(60), missed(120)], now=at(32), fence=fence)
    assert [m.first_at for m in (await store.missed_runs("t.f")).items] == [at(0)]


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"last_at": at(-1)}, "last_at", "is before first_at"),
        ({"count": 0}, "count", "0 is outside 1.."),
        ({"count": True}, "count", "expected an integer, got bool"),
        ({"reason": ""}, "reason", "must not be empty"),
        ({"reason": "a\x00b"}, "reason", "must not contain NUL"),
        ({"first_at": datetime(2024, 1, 1)}, "first_at", "must be an aware datetime"),
    ],
)
def test_an_out_of_domain_missed_run_is_refused_by_name(
    fields: dict[str, Any], field: str, problem: str
) -> None:
    values: dict[str, Any] = {"first_at": at(0), "last_at": at(0), "count": 1, "reason": "r"}
    with pytest.raises(InvalidValue) as caught:
        NewMissedRun(**{**values, **fields})
    assert caught.value.field == field
    assert problem in caught.value.problem


async def test_a_missed_run_of_a_bad_task_id_writes_nothing(store: LibsqlStore) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.record_missed("bad\nid", [missed(0)], now=at(0))
    assert caught.value.field == "task_id"
    with pytest.raises(InvalidValue) as caught:
        await store.record_missed("t.a", [missed(0), "soon"], now=at(0))  # type: ignore[list-item]
    assert str(caught.value) == "runs[1]: expected a NewMissedRun, got str"
    with pytest.raises(InvalidValue) as caught:
        await store.missed_runs("t.a", limit=1001)
    assert caught.value.field == "limit"
