"""``put_tasks``: a batch of definitions written in one go (new tasks by multi-row inserts, their
records made from what was written) says and stores exactly what the same puts made one at a
time would, in order: the same records, the same errors, the same rows.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from config.store import StoreSettings
from store import Conflict, InvalidValue, LibsqlStore, Recorded, StoreError, TaskRecord, TaskSpec
from tests.store.conftest import StoreFactory, at

BERLIN_SUMMER = timezone(timedelta(hours=2))


def spec(task_id: str, **changes: Any) -> TaskSpec:
    values: dict[str, Any] = {
        "task_id": task_id,
        "task_class": "tasks.Report",
        "schedule": "0 3 * * *",
        "owner": "alice",
    }
    values.update(changes)
    return TaskSpec(**values)


def exactly(record: TaskRecord) -> dict[str, Any]:
    """Every field, an instant with its offset (records compare instants across zones)."""
    return {
        f.name: (value, value.isoformat()) if isinstance(value, datetime) else (value, type(value))
        for f in fields(record)
        for value in [getattr(record, f.name)]
    }


def outcome_of(outcome: Recorded[TaskRecord] | StoreError) -> Any:
    if isinstance(outcome, StoreError):
        return (type(outcome), str(outcome))
    return (exactly(outcome.record), outcome.duplicate)


async def test_a_new_task_written_in_a_batch_is_the_record_read_back(store: LibsqlStore) -> None:
    full = spec(
        "user.full",
        config={"paths": ("/a", "/b"), "nested": {"flag": True}},  # a tuple reads back a list
        enabled=False,
        timezone="Europe/Berlin",
        misfire_policy={"mode": "run_once", "grace_s": 60.0},
        retry_policy={"max_attempts": 4},
        run_policy={"jitter_s": 5},
        next_run=datetime(2024, 5, 1, 15, 0, tzinfo=BERLIN_SUMMER),  # T0 + 1 h
        accounted_through=at(-60),
        paused=True,
        note="waiting for the vendor",
    )
    plain = spec("user.plain")
    outcomes = await store.put_tasks([(full, 0), (plain, None)], now=at(0))
    for put, outcome in zip((full, plain), outcomes, strict=True):
        assert isinstance(outcome, Recorded)
        assert not outcome.duplicate
        assert exactly(outcome.record) == exactly(await store.get_task(put.task_id))
    written = outcomes[0]
    assert isinstance(written, Recorded)
    assert written.record.config == {"paths": ["/a", "/b"], "nested": {"flag": True}}
    assert written.record.next_run == at(3600)
    assert written.record.accounted_through == at(-60)
    later = outcomes[1]
    assert isinstance(later, Recorded)
    assert (later.record.version, later.record.accounted_through, later.record.fire_count) == (
        1,
        at(0),
        0,
    )


async def test_a_batch_says_and_stores_what_the_same_puts_one_at_a_time_do(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    """One id several times, taken ids, stale versions and bad values, mixed with new tasks, in
    more rows than one insert statement holds."""
    huge = {"blob": "x" * (StoreSettings().max_value_bytes + 1)}
    puts: list[tuple[TaskSpec, int | None]] = [(spec("user.taken"), None)]
    puts += [(spec(f"user.n{i:03d}"), 0) for i in range(450)]
    puts += [
        (spec("user.twice"), 0),
        (spec("user.twice"), 0),  # taken by the one before: exists
        (spec("user.twice", schedule="@daily"), 1),  # an update of the one before
        (spec("user.twice", schedule="@daily"), None),  # unchanged: a duplicate
        (spec("user.taken"), 0),  # stored before the batch: exists
        (spec("user.taken", schedule="@daily"), 7),  # a stale version
        (spec("user.refused", config=huge), 0),  # too big: refused, nothing written
        (spec("user.refused"), 3),  # does not exist at version 3
        (spec("user.refused"), 0),  # so it is new
        (spec("user.last"), 0),
    ]
    puts += [(spec(f"user.m{i:03d}"), None) for i in range(300)]

    one_by_one = await make_store(path=tmp_path / "single" / "taskbus.db")
    await one_by_one.put_task(spec("user.taken"), now=at(0))
    expected: list[Any] = []
    for put, version in puts[1:]:
        try:
            expected.append(
                outcome_of(await one_by_one.put_task(put, now=at(1), expected_version=version))
            )
        except StoreError as error:
            expected.append(outcome_of(error))

    batched = await make_store(path=tmp_path / "batch" / "taskbus.db")
    await batched.put_tasks(puts[:1], now=at(0))
    outcomes = await batched.put_tasks(puts[1:], now=at(1))
    assert [outcome_of(outcome) for outcome in outcomes] == expected
    assert [type(outcome) for outcome in outcomes[450:458]] == [
        Recorded,
        Conflict,
        Recorded,
        Recorded,
        Conflict,
        Conflict,
        InvalidValue,
        Conflict,
    ]
    twice = [o for o in outcomes[450:454] if isinstance(o, Recorded)]
    assert [(o.record.version, o.duplicate) for o in twice] == [(1, False), (2, False), (2, True)]

    async def everything(store: LibsqlStore) -> list[dict[str, Any]]:
        page = await store.list_tasks(limit=1_000)
        assert page.next_cursor is None
        return [exactly(task) for task in page.items]

    assert await everything(batched) == await everything(one_by_one)
    assert len(await everything(batched)) == 1 + 450 + 1 + 1 + 1 + 300
