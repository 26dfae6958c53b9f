"""Executions: one per attempt of a fire, finished once, history in keyset pages, the unsettled
ones a scheduler must look at after a takeover, statistics, dead letters and retention.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.store import StoreSettings
from store import (
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewDeadLetter,
    NewExecution,
    NotFound,
)
from store.records import MAX_RETRY_COUNT, idempotency_key
from tests.store.conftest import StoreFactory, at

T0_US = 1_714_564_800_000_000  # at(0) in microseconds


def fire(task_id: str, n: float, retry: int = 0, **outcome: object) -> NewExecution:
    """Attempt ``retry`` of a fire scheduled and started at ``at(n)``; finished if
    ``completed_at`` is given.
    """
    finished = ExecutionOutcome(**outcome) if outcome else None  # type: ignore[arg-type]
    return NewExecution(
        task_id=task_id, scheduled_at=at(n), started_at=at(n), outcome=finished, retry_count=retry
    )


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


async def test_each_attempt_of_a_fire_is_recorded_once(store: LibsqlStore) -> None:
    first = (await store.record_execution(fire("t.a", 0))).record
    retry = await store.record_execution(fire("t.a", 0, retry=1))
    assert not retry.duplicate
    assert (retry.record.retry_count, retry.record.idempotency_key) == (
        1,
        "t.a@1714564800000000#1",
    )
    assert retry.record.execution_id != first.execution_id
    again = await store.record_execution(
        NewExecution(task_id="t.a", scheduled_at=at(0), started_at=at(9), retry_count=1)
    )
    assert (again.duplicate, again.record) == (True, retry.record)
    assert (await store.record_execution(fire("t.a", 0))).record == first
    second = await store.record_execution(fire("t.a", 0, retry=2))
    assert (second.duplicate, second.record.idempotency_key) == (False, "t.a@1714564800000000#2")
    assert len((await store.history("t.a")).items) == 3


async def test_the_retry_count_is_the_attempt_s_unless_an_outcome_gives_one(
    store: LibsqlStore,
) -> None:
    failed = await store.record_execution(
        fire("t.r", 0, retry=2, completed_at=at(1), success=False)
    )
    assert (failed.record.retry_count, failed.record.idempotency_key) == (2, f"t.r@{T0_US}#2")
    told = await store.record_execution(
        fire("t.r", 10, retry=2, completed_at=at(11), success=False, retry_count=5)
    )
    assert (told.record.retry_count, told.record.idempotency_key) == (5, f"t.r@{T0_US + 10**7}#2")
    assert await store.get_execution(told.record.execution_id) == told.record

    running = (await store.record_execution(fire("t.r", 20, retry=3))).record
    assert running.retry_count == 3
    kept = await store.finish_execution(
        running.execution_id, ExecutionOutcome(completed_at=at(21), success=True)
    )
    assert kept.record.retry_count == 3  # an outcome without a retry count keeps the attempt's
    other = (await store.record_execution(fire("t.r", 30, retry=1))).record
    given = await store.finish_execution(
        other.execution_id, ExecutionOutcome(completed_at=at(31), success=True, retry_count=0)
    )
    assert given.record.retry_count == 0


@pytest.mark.parametrize("retry", [-1, MAX_RETRY_COUNT + 1, True, 1.0])
def test_a_retry_count_out_of_range_is_refused(retry: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        NewExecution(task_id="t.a", scheduled_at=at(0), started_at=at(0), retry_count=retry)  # type: ignore[arg-type]
    assert caught.value.field == "retry_count"


def test_idempotency_keys_are_one_per_attempt() -> None:
    task_ids = ["a", "a@1", "a@1#2", "a#1", "1", "@", "#", "a@-1"]
    instants = [at(0), at(0.000001), at(-1), datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)]
    attempts = [(t, i, r) for t in task_ids for i in instants for r in (0, 1, 2, 10, 12)]
    keys = {idempotency_key(t, i, r) for t, i, r in attempts}
    assert len(keys) == len(attempts)
    assert idempotency_key("a@1", at(0)) == f"a@1@{T0_US}"
    assert idempotency_key("a@1", at(0), 12) == f"a@1@{T0_US}#12"


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


async def test_unsettled_executions_are_the_last_attempts_of_unsettled_fires(
    store: LibsqlStore,
) -> None:
    failed: dict[str, object] = {"completed_at": at(1000), "success": False}
    succeeded: dict[str, object] = {"completed_at": at(1000), "success": True}
    expected: list[str] = []

    async def record(new: NewExecution, unsettled: bool) -> None:
        run = (await store.record_execution(new)).record
        if unsettled:
            expected.append(run.execution_id)

    def letter(task_id: str, n: float) -> NewDeadLetter:
        return NewDeadLetter(
            task_id=task_id,
            scheduled_at=at(n),
            attempts=1,
            error_type="E",
            last_error="e",
            reason="r",
            failed_at=at(n + 1),
        )

    await record(fire("t.a", 0, **succeeded), unsettled=False)
    await record(fire("t.a", 60, **failed), unsettled=False)  # retried below
    await record(fire("t.a", 60, retry=1, **failed), unsettled=False)
    await record(fire("t.a", 120, **failed), unsettled=True)  # failed, no retry yet
    await record(fire("t.b", 0, **failed), unsettled=False)  # given up on
    await store.add_dead_letter(letter("t.b", 0))
    await record(fire("t.b", 60), unsettled=True)  # running
    await record(fire("t.b", 120, **failed), unsettled=False)
    await record(fire("t.b", 120, retry=1, **succeeded), unsettled=False)  # the retry worked
    await record(fire("t.b", 180), unsettled=False)  # running, but the fire was given up on
    await store.add_dead_letter(letter("t.b", 180))
    await record(fire("t.a", 60, retry=2), unsettled=True)  # the last attempt, running
    await record(fire("t.c", 120, retry=3, **failed), unsettled=True)
    await record(fire("t.c", 120, retry=1), unsettled=False)  # superseded by attempt 3

    page = await store.unsettled_executions()
    assert [run.execution_id for run in page.items] == expected
    assert page.next_cursor is None
    assert [(run.task_id, run.scheduled_at, run.retry_count) for run in page.items] == [
        ("t.a", at(120), 0),
        ("t.b", at(60), 0),
        ("t.a", at(60), 2),
        ("t.c", at(120), 3),
    ]
    recent = await store.unsettled_executions(since=at(100))
    assert [run.scheduled_at for run in recent.items] == [at(120), at(120)]

    seen: list[str] = []
    cursor = None
    while True:
        page = await store.unsettled_executions(after=cursor, limit=1)
        seen.extend(run.execution_id for run in page.items)
        if len(seen) == 1:  # settled and new runs, written while paging
            await store.add_dead_letter(letter("t.a", 120))
            await record(fire("t.d", 0), unsettled=True)
        if (cursor := page.next_cursor) is None:
            break
    assert seen == expected


async def test_a_later_attempt_is_found_by_its_columns_whatever_the_keys(
    store: LibsqlStore,
) -> None:
    failed: dict[str, object] = {"completed_at": at(1000), "success": False}
    plain = (await store.record_execution(fire("t", 0, **failed))).record
    # another task whose keys sort among the keys of t's fire at(0): not a later attempt of it
    lookalike = f"t@{T0_US}#9"
    await store.record_execution(fire(lookalike, 0, retry=5, **failed))
    await store.record_execution(fire(lookalike, 1, retry=5, **failed))
    # a retry recorded as attempt 2 whose outcome says 0: superseded by the first attempt's 7
    told = (await store.record_execution(fire("t.o", 0, retry=2, **failed))).record
    await store.record_execution(fire("t.o", 0, **failed, retry_count=7))
    # before the epoch: negative instants
    before = datetime(1969, 12, 31, 23, 0, tzinfo=UTC)
    early = NewExecution(task_id="t.e", scheduled_at=before, started_at=before)
    await store.record_execution(early)
    retried = (
        await store.record_execution(
            NewExecution(task_id="t.e", scheduled_at=before, started_at=before, retry_count=1)
        )
    ).record

    unsettled = (await store.unsettled_executions()).items
    assert plain in unsettled
    assert [run.task_id for run in unsettled].count(lookalike) == 2
    assert told not in unsettled
    assert [(run.task_id, run.retry_count) for run in unsettled if run.task_id == "t.o"] == [
        ("t.o", 7)
    ]
    assert [run for run in unsettled if run.task_id == "t.e"] == [retried]


async def test_an_unsettled_page_refuses_a_bad_limit_or_cursor(store: LibsqlStore) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.unsettled_executions(limit=0)
    assert caught.value.field == "limit"
    with pytest.raises(InvalidValue) as caught:
        await store.unsettled_executions(after="")
    assert caught.value.field == "cursor"
    with pytest.raises(InvalidValue) as caught:
        await store.unsettled_executions(since=datetime(2024, 1, 1))
    assert caught.value.field == "since"


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
