"""Schema version 10: a task paused with a note, and the count of its fires. A version 9 file is
migrated with its tasks (not paused, no note, no fires counted); paused and note are stored,
read back and compared like the rest of the definition; ``record_fires`` counts the first
attempts of schedule and catch-up fires recorded anew, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import libsql
import pytest

from store import InvalidValue, LibsqlStore, MasterKey, NewExecution, TaskSpec
from store.records import MAX_NOTE_CHARS
from store.schema import MIGRATIONS
from tests.store.conftest import StoreFactory, at, raw_rows

TASK = "user.report"


def spec(**fields: object) -> TaskSpec:
    return TaskSpec(task_id=TASK, task_class="Report", schedule="@hourly", **fields)  # type: ignore[arg-type]


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("test")


async def test_a_version_9_file_is_migrated_with_its_tasks(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    version_9 = await make_store(master_key=key, migrations=MIGRATIONS[:9])
    await version_9.close()
    connection = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    connection.execute(
        "INSERT INTO scheduled_tasks (task_id, task_class, schedule, created_at, updated_at) "
        "VALUES (?, 'Report', '@hourly', 0, 0)",
        (TASK,),
    )
    connection.commit()
    connection.close()
    store = await make_store(master_key=key)
    assert [m.version for m in store.applied] == [10]
    task = await store.get_task(TASK)
    assert (task.paused, task.note, task.fire_count, task.version) == (False, None, 0, 1)
    await store.close()
    assert raw_rows(db_path, key, "SELECT paused, note, fire_count FROM scheduled_tasks") == [
        (0, None, 0)
    ]


async def test_paused_and_note_are_stored_and_part_of_the_definition(store: LibsqlStore) -> None:
    await store.put_task(spec(), now=at(0))
    paused = await store.put_task(spec(paused=True, note="waiting for the vendor"), now=at(1))
    assert not paused.duplicate
    assert (paused.record.paused, paused.record.note, paused.record.version) == (
        True,
        "waiting for the vendor",
        2,
    )
    again = await store.put_task(spec(paused=True, note="waiting for the vendor"), now=at(2))
    assert again.duplicate
    other_note = await store.put_task(spec(paused=True, note="other"), now=at(3))
    assert (other_note.duplicate, other_note.record.version) == (False, 3)
    back = await store.put_task(spec(), now=at(4))
    assert (back.record.paused, back.record.note) == (False, None)
    assert [t.paused for t in (await store.list_tasks()).items] == [False]


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        ("x" * (MAX_NOTE_CHARS + 1), f"more than {MAX_NOTE_CHARS}"),
        ("two\nlines", "printable"),
        ("", "must not be empty"),
    ],
)
def test_a_bad_note_is_refused(note: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason) as caught:
        spec(note=note)
    assert caught.value.field == "note"
    assert spec(note="x" * MAX_NOTE_CHARS).note == "x" * MAX_NOTE_CHARS


def fire(n: int, trigger: str = "schedule", retry_count: int = 0) -> NewExecution:
    return NewExecution(
        task_id=TASK,
        scheduled_at=at(n),
        started_at=at(n),
        trigger=trigger,
        retry_count=retry_count,
    )


async def test_record_fires_counts_first_attempts_of_schedule_and_catch_up(
    store: LibsqlStore,
) -> None:
    await store.put_task(spec(), now=at(0))
    await store.put_task(
        TaskSpec(task_id="user.other", task_class="R", schedule="@daily"), now=at(0)
    )
    other = NewExecution(task_id="user.other", scheduled_at=at(1), started_at=at(1))
    await store.record_fires(
        [fire(1), fire(2, "catch-up"), fire(3, "trigger"), fire(1, "retry", 1), other], now=at(5)
    )
    assert (await store.get_task(TASK)).fire_count == 2
    assert (await store.get_task("user.other")).fire_count == 1
    # a duplicate (the same instant and attempt again) and a wake count nothing
    await store.record_fires([fire(1), fire(2, "catch-up"), fire(9, "wake")], now=at(6))
    assert (await store.get_task(TASK)).fire_count == 2
    await store.record_fires([fire(10)], now=at(10))
    record = await store.get_task(TASK)
    assert record.fire_count == 3
    assert record.version == 1  # run state, not definition
