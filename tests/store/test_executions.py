"""Executions: one per fire, finished once, history in keyset pages, statistics, dead letters
and retention.
"""

from __future__ import annotations

import pytest

from actors.store import (
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewDeadLetter,
    NewExecution,
    NotFound,
)
from config.store import StoreSettings
from tests.store.conftest import StoreFactory, at


def fire(task_id: str, n: float, **outcome: object) -> NewExecution:
    """A fire scheduled and started at ``at(n)``; finished if ``completed_at`` is given."""
    finished = ExecutionOutcome(**outcome) if outcome else None  # type: ignore[arg-type]
    return NewExecution(task_id=task_id, scheduled_at=at(n), started_at=at(n), outcome=finished)


async def test_a_fire_is_recorded_once_and_a_repeat_returns_the_first(store: LibsqlStore) -> None:
    first = await store.record_execution(fire("t.a", 0))
    assert not first.duplicate
    assert first.record.state == "running"
    assert first.record.idempotency_key == "t.a@1714564800000000"
    again = await store.record_execution(
        NewExecution(task_id="t.a", scheduled_at=at(0), started_at=at(5))
    )
    assert again.duplicate
    assert again.record == first.record
    other = await store.record_execution(fire("t.a", 0.000001))  # a different instant
    assert not other.duplicate
    assert other.record.execution_id != first.record.execution_id


async def test_a_run_is_finished_once(store: LibsqlStore) -> None:
    started = (await store.record_execution(fire("t.a", 0))).record
    outcome = ExecutionOutcome(
        completed_at=at(2.5), success=False, result={"rows": 3}, error_message="boom", retry_count=2
    )
    finished = await store.finish_execution(started.execution_id, outcome)
    assert not finished.duplicate
    run = finished.record
    assert (run.state, run.duration_seconds, run.result, run.error_message, run.retry_count) == (
        "failed",
        2.5,
        {"rows": 3},
        "boom",
        2,
    )
    success = ExecutionOutcome(completed_at=at(9), success=True)
    repeat = await store.finish_execution(started.execution_id, success)
    assert repeat.duplicate
    assert repeat.record == run
    assert await store.get_execution(run.execution_id) == run
    with pytest.raises(NotFound, match="execution 'nope' not found"):
        await store.finish_execution("nope", success)
    late = (await store.record_execution(fire("t.a", 100))).record
    with pytest.raises(InvalidValue, match="completed_at: is before the run's started_at"):
        await store.finish_execution(
            late.execution_id, ExecutionOutcome(completed_at=at(99), success=True)
        )


async def test_error_messages_are_kept_cut_to_the_limit(make_store: StoreFactory) -> None:
    store = await make_store(settings=StoreSettings(max_error_chars=20))
    recorded = await store.record_execution(
        fire("t.a", 0, completed_at=at(1), success=False, error_message="e" * 50 + "\x00")
    )
    assert recorded.record.error_message == "e" * 19 + "…"


async def test_an_oversize_result_is_refused_and_nothing_is_written(
    make_store: StoreFactory,
) -> None:
    store = await make_store(settings=StoreSettings(max_value_bytes=100))
    with pytest.raises(InvalidValue, match=r"result: is 20\d bytes encoded, more than the 100"):
        await store.record_execution(
            fire("t.a", 0, completed_at=at(1), success=True, result={"r": "x" * 200})
        )
    assert (await store.history("t.a")).items == ()


async def test_history_pages_are_newest_first_and_stable_under_new_writes(
    store: LibsqlStore,
) -> None:
    for n in range(95):
        await store.record_execution(fire("t.h", n))
    await store.record_execution(fire("t.other", 50))
    seen: list[float] = []
    cursor = None
    pages = 0
    while True:
        page = await store.history("t.h", before=cursor, limit=20)
        seen.extend((run.started_at - at(0)).total_seconds() for run in page.items)
        pages += 1
        if pages == 2:  # newer runs, written while paging, do not shift the pages
            await store.record_execution(fire("t.h", 1000))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [float(n) for n in reversed(range(95))]
    assert pages == 5


async def test_runs_started_in_the_same_microsecond_are_all_paged(store: LibsqlStore) -> None:
    for n in range(7):
        await store.record_execution(
            NewExecution(task_id="t.same", scheduled_at=at(n), started_at=at(0))
        )
    ids: list[str] = []
    cursor = None
    while True:
        page = await store.history("t.same", before=cursor, limit=2)
        ids.extend(run.execution_id for run in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert len(ids) == len(set(ids)) == 7
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize("cursor", ["", "garbage", "12:", ":abc", "x:y"])
async def test_a_cursor_the_store_did_not_make_is_refused(store: LibsqlStore, cursor: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.history("t.h", before=cursor)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize("limit", [0, 1001, -1, True])
async def test_a_page_limit_is_1_to_1000(store: LibsqlStore, limit: int) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.history("t.h", limit=limit)
    assert caught.value.field == "limit"


async def test_stats_count_rates_and_durations(store: LibsqlStore) -> None:
    # t.a: 20 successful runs lasting 1..20 s; t.b: 3 failures of 100 s and one still running
    for n in range(1, 21):
        await store.record_execution(
            fire("t.a", n * 100, completed_at=at(n * 100 + n), success=True)
        )
    for n in range(3):
        await store.record_execution(
            fire("t.b", n * 1000, completed_at=at(n * 1000 + 100), success=False)
        )
    await store.record_execution(fire("t.b", 5000))

    report = await store.stats()
    a, b = report.tasks
    assert (a.task_id, a.runs, a.succeeded, a.failed, a.running) == ("t.a", 20, 20, 0, 0)
    assert (a.success_rate, a.failure_rate) == (1.0, 0.0)
    assert (a.mean_s, a.min_s, a.max_s, a.p95_s) == (10.5, 1.0, 20.0, 19.0)
    assert (b.task_id, b.runs, b.succeeded, b.failed, b.running) == ("t.b", 4, 0, 3, 1)
    assert (b.success_rate, b.failure_rate, b.mean_s, b.p95_s) == (0.0, 1.0, 100.0, 100.0)
    overall = report.overall
    assert (overall.task_id, overall.runs, overall.succeeded, overall.failed) == (None, 24, 20, 3)
    assert overall.success_rate == pytest.approx(20 / 23)
    assert (overall.min_s, overall.max_s, overall.p95_s) == (1.0, 100.0, 100.0)
    assert overall.mean_s == pytest.approx((210 + 300) / 23)

    recent = await store.stats(since=at(1500))
    assert [(s.task_id, s.runs) for s in recent.tasks] == [("t.a", 6), ("t.b", 2)]
    only_a = await store.stats(task_id="t.a")
    assert [s.task_id for s in only_a.tasks] == ["t.a"]
    assert only_a.overall.runs == 20
    empty = await store.stats(task_id="t.none")
    assert (empty.tasks, empty.overall.runs, empty.overall.success_rate) == ((), 0, None)


async def test_dead_letters_are_kept_once_and_listed_newest_first(store: LibsqlStore) -> None:
    def letter(task_id: str, n: int) -> NewDeadLetter:
        return NewDeadLetter(
            task_id=task_id,
            scheduled_at=at(n),
            attempts=4,
            error_type="TimeoutError",
            last_error=f"timed out {n}",
            reason="exhausted after 4 attempts",
            failed_at=at(n + 10),
        )

    for n in range(5):
        assert not (await store.add_dead_letter(letter("t.a", n))).duplicate
    assert not (await store.add_dead_letter(letter("t.b", 2))).duplicate
    again = await store.add_dead_letter(letter("t.a", 3))
    assert again.duplicate
    assert again.record.last_error == "timed out 3"

    first = await store.dead_letters(limit=4)
    assert [(d.task_id, d.scheduled_at) for d in first.items] == [
        ("t.a", at(4)),
        ("t.a", at(3)),
        ("t.b", at(2)),
        ("t.a", at(2)),
    ]
    rest = await store.dead_letters(before=first.next_cursor, limit=4)
    assert [d.scheduled_at for d in rest.items] == [at(1), at(0)]
    assert rest.next_cursor is None
    only_b = await store.dead_letters(task_id="t.b")
    assert [d.last_error for d in only_b.items] == ["timed out 2"]


async def test_retention_deletes_by_age_then_by_count_and_frees_pages(
    make_store: StoreFactory,
) -> None:
    store = await make_store(settings=StoreSettings(retention_chunk_rows=7))
    day = 86_400
    for n in range(40):  # one run a day, days 0..39, with a sizeable result
        await store.record_execution(
            fire(
                "t.r", n * day, completed_at=at(n * day + 1), success=True, result={"p": "x" * 3000}
            )
        )
    for n in (0, 35):
        await store.add_dead_letter(
            NewDeadLetter(
                task_id="t.r",
                scheduled_at=at(n * day),
                attempts=1,
                error_type="E",
                last_error="e",
                reason="r",
                failed_at=at(n * day),
            )
        )
    report = await store.run_retention(now=at(40 * day), retention_days=30, max_executions=8)
    assert report.cutoff == at(10 * day)
    assert (report.executions_expired, report.executions_over_cap) == (10, 22)
    assert report.dead_letters_expired == 1
    assert report.pages_freed > 0
    kept = await store.history("t.r")
    assert [(run.started_at - at(0)).days for run in kept.items] == list(range(39, 31, -1))
    assert [d.scheduled_at for d in (await store.dead_letters()).items] == [at(35 * day)]
    assert await store.integrity_check() == ["ok"]
    again = await store.run_retention(now=at(40 * day), retention_days=30, max_executions=8)
    assert (again.executions_expired, again.executions_over_cap, again.pages_freed) == (0, 0, 0)
