"""History that tells the truth (schema version 6): a re-created id starts a new history, a run
keeps its dispatch, real start and end apart, says what made it, and keeps what it logged."""

from __future__ import annotations

from pathlib import Path

import libsql
import pytest

from store import ExecutionOutcome, InvalidValue, LibsqlStore, LogLine, NewExecution, TaskSpec
from store.keys import MasterKey
from store.records import MAX_LOG_LINE_CHARS, MAX_LOG_LINES
from store.schema import MIGRATIONS
from tests.store.conftest import StoreFactory, at, raw_rows


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("the tests")


SPEC = TaskSpec(task_id="user.x", task_class="X", schedule="@hourly")


def ran(n: float, *, trigger: str = "schedule", **outcome: object) -> NewExecution:
    ending = ExecutionOutcome(**outcome) if outcome else None  # type: ignore[arg-type]
    return NewExecution(
        task_id="user.x", scheduled_at=at(n), started_at=at(n), outcome=ending, trigger=trigger
    )


async def test_a_re_created_id_starts_an_empty_history_and_the_old_runs_are_kept(
    store: LibsqlStore,
) -> None:
    await store.put_task(SPEC, now=at(0))
    await store.record_execution(ran(10, completed_at=at(11), success=True))
    await store.record_execution(ran(20, completed_at=at(21), success=False, error_message="no"))
    assert (await store.task_status("user.x")).runs == 2
    assert await store.delete_task("user.x")
    # Once deleted, what is left of the task is its runs.
    assert len((await store.history("user.x")).items) == 2

    await store.put_task(SPEC, now=at(30))
    assert (await store.history("user.x")).items == ()
    status = await store.task_status("user.x")
    assert (status.runs, status.failed, status.last_error, status.last_run) == (0, 0, None, None)
    assert (await store.stats(task_id="user.x")).overall.runs == 0

    new = (await store.record_execution(ran(40, completed_at=at(41), success=True))).record
    assert [e.execution_id for e in (await store.history("user.x")).items] == [new.execution_id]
    assert (await store.task_status("user.x")).runs == 1
    assert (await store.stats()).overall.runs == 1


async def test_the_old_rows_stay_in_the_file(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    store = await make_store(master_key=key)
    await store.put_task(SPEC, now=at(0))
    await store.record_execution(ran(10, completed_at=at(11), success=True))
    await store.delete_task("user.x")
    await store.put_task(SPEC, now=at(30))
    await store.record_execution(ran(40))
    await store.close()
    rows = raw_rows(db_path, key, "SELECT scheduled_at, incarnation FROM task_executions")
    assert sorted(rows) == [(at_us(10), at_us(0)), (at_us(40), at_us(30))]


def at_us(n: float) -> int:
    return int(at(n).timestamp() * 1_000_000)


async def test_dispatch_real_start_and_end_are_kept_apart(store: LibsqlStore) -> None:
    """Dispatched at 0, waited to be admitted until 6, ran until 7: one second of its own."""
    await store.put_task(SPEC, now=at(-1))
    recorded = (await store.record_execution(ran(0))).record
    assert recorded.run_started_at is None
    finished = await store.finish_execution(
        recorded.execution_id,
        ExecutionOutcome(completed_at=at(7), success=True, run_started_at=at(6)),
    )
    record = finished.record
    assert (record.started_at, record.run_started_at, record.completed_at) == (at(0), at(6), at(7))
    assert record.duration_seconds == 1.0
    # recorded finished at once: the same
    once = (
        await store.record_execution(
            ran(100, completed_at=at(107), success=True, run_started_at=at(106))
        )
    ).record
    assert (once.run_started_at, once.duration_seconds) == (at(106), 1.0)
    with pytest.raises(InvalidValue, match="run_started_at"):
        ExecutionOutcome(completed_at=at(1), success=True, run_started_at=at(2))


async def test_what_made_a_run_is_recorded(store: LibsqlStore) -> None:
    await store.put_task(SPEC, now=at(-1))
    for n, trigger in enumerate(("schedule", "trigger", "retry", "catch-up")):
        await store.record_execution(ran(n, trigger=trigger))
    page = await store.history("user.x")
    assert [e.trigger for e in page.items] == ["catch-up", "retry", "trigger", "schedule"]
    with pytest.raises(InvalidValue, match="trigger"):
        ran(9, trigger="whim")


async def test_a_run_s_log_lines_are_kept_with_it(store: LibsqlStore) -> None:
    await store.put_task(SPEC, now=at(-1))
    recorded = (await store.record_execution(ran(0))).record
    lines = (
        LogLine(at=at(1), level="INFO", message="one"),
        LogLine(at=at(2), level="WARNING", message="x" * (MAX_LOG_LINE_CHARS + 10)),
    )
    await store.finish_execution(
        recorded.execution_id, ExecutionOutcome(completed_at=at(3), success=True, logs=lines)
    )
    stored = await store.get_execution(recorded.execution_id)
    assert [(line.at, line.level) for line in stored.logs] == [(at(1), "INFO"), (at(2), "WARNING")]
    assert stored.logs[0].message == "one"
    assert len(stored.logs[1].message) == MAX_LOG_LINE_CHARS
    # A page of history leaves them out: the lines of many runs would not fit one reply.
    (listed,) = (await store.history("user.x")).items
    assert (listed.execution_id, listed.logs) == (recorded.execution_id, ())
    too_many = tuple(LogLine(at=at(1), level="INFO", message="m") for _ in range(MAX_LOG_LINES + 1))
    with pytest.raises(InvalidValue, match="logs"):
        ExecutionOutcome(completed_at=at(3), success=True, logs=too_many)


async def test_version_6_keeps_the_runs_of_a_current_task_and_sets_earlier_ones_apart(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    """A run recorded before its task row was created (an id deleted and created again) is of
    an earlier incarnation: kept, not the task's."""
    version_5 = await make_store(master_key=key, migrations=MIGRATIONS[:5])
    await version_5.close()
    connection = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    connection.execute(  # the task as version 5 stored it (today's put_task needs version 10)
        "INSERT INTO scheduled_tasks (task_id, task_class, schedule, created_at, updated_at, "
        "accounted_through) VALUES ('user.x', 'X', '@hourly', ?, ?, ?)",
        (at_us(30), at_us(30), at_us(30)),
    )
    connection.executemany(
        "INSERT INTO task_executions (execution_id, task_id, scheduled_at, started_at, "
        "completed_at, success, duration_seconds, retry_count, idempotency_key) "
        "VALUES (?, 'user.x', ?, ?, ?, 1, 1.0, 0, ?)",
        [(f"e-{n}", at_us(n), at_us(n), at_us(n + 1), f"user.x@{at_us(n)}") for n in (10, 40)],
    )
    connection.commit()
    connection.close()
    store = await make_store(master_key=key)
    assert [m.version for m in store.applied] == [6, 7, 8, 9, 10]
    page = await store.history("user.x")
    assert [e.scheduled_at for e in page.items] == [at(40)]
    assert page.items[0].trigger is None  # not known before version 6
    assert (await store.task_status("user.x")).runs == 1
    await store.close()
