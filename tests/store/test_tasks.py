"""Tasks: put, get, list, delete, run state, status; values round-trip verbatim and out-of-domain
values are refused naming their field.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from config.store import StoreSettings
from store import (
    Conflict,
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewExecution,
    NotFound,
    StoreError,
    TaskSpec,
)
from tests.store.conftest import StoreFactory, at

INJECTION = "x'); DROP TABLE t;--"


def spec(task_id: str = "user.report", **changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "task_id": task_id,
        "task_class": "tasks.Report",
        "schedule": "0 3 * * *",
        "config": {"retention_days": 30, "paths": ["/a", "/b"], "nested": {"flag": True}},
        "timezone": "Europe/Berlin",
        "misfire_policy": {"mode": "run_once", "grace_s": 60.0},
        "retry_policy": {"max_attempts": 4},
        "run_policy": {"dst": {"gap": "shift", "fold": "first"}, "jitter_s": 5, "timeout_s": 60.0},
        "owner": "alice",
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


async def test_a_task_round_trips_with_every_field(store: LibsqlStore) -> None:
    put = await store.put_task(spec(next_run=at(3600)), now=at(0))
    assert not put.duplicate
    task = await store.get_task("user.report")
    assert task == put.record
    assert (task.task_class, task.schedule, task.timezone, task.owner) == (
        "tasks.Report",
        "0 3 * * *",
        "Europe/Berlin",
        "alice",
    )
    assert task.config == {"retention_days": 30, "paths": ["/a", "/b"], "nested": {"flag": True}}
    assert task.misfire_policy == {"mode": "run_once", "grace_s": 60.0}
    assert task.retry_policy == {"max_attempts": 4}
    assert task.run_policy == {
        "dst": {"gap": "shift", "fold": "first"},
        "jitter_s": 5,
        "timeout_s": 60.0,
    }
    assert (task.created_at, task.updated_at, task.next_run, task.last_run) == (
        at(0),
        at(0),
        at(3600),
        None,
    )
    assert (task.enabled, task.version) == (True, 1)


async def test_changing_a_task_bumps_its_version_and_an_unchanged_put_is_a_duplicate(
    store: LibsqlStore,
) -> None:
    await store.put_task(spec(), now=at(0))
    same = await store.put_task(spec(), now=at(10))
    assert same.duplicate
    assert (same.record.version, same.record.updated_at) == (1, at(0))
    changed = await store.put_task(spec(schedule="@hourly", enabled=False), now=at(20))
    assert not changed.duplicate
    assert (changed.record.version, changed.record.schedule, changed.record.enabled) == (
        2,
        "@hourly",
        False,
    )
    assert (changed.record.created_at, changed.record.updated_at) == (at(0), at(20))


async def test_the_run_policy_is_part_of_the_definition(store: LibsqlStore) -> None:
    await store.put_task(spec(run_policy=None), now=at(0))
    assert (await store.get_task("user.report")).run_policy is None
    assert (await store.put_task(spec(run_policy=None), now=at(1))).duplicate
    added = await store.put_task(spec(run_policy={"timeout_s": 30.0}), now=at(2))
    assert (added.duplicate, added.record.version, added.record.run_policy) == (
        False,
        2,
        {"timeout_s": 30.0},
    )
    assert (await store.put_task(spec(run_policy={"timeout_s": 30.0}), now=at(3))).duplicate
    changed = await store.put_task(spec(run_policy={"timeout_s": 31.0}), now=at(4))
    assert (changed.duplicate, changed.record.version) == (False, 3)
    removed = await store.put_task(spec(run_policy=None), now=at(5))
    assert (removed.duplicate, removed.record.version, removed.record.run_policy) == (
        False,
        4,
        None,
    )


async def test_reset_clears_the_run_state_and_keeps_the_definition(store: LibsqlStore) -> None:
    await store.put_task(spec(next_run=at(3600)), now=at(0))
    marked = await store.mark_run("user.report", last_run=at(100), next_run=at(200), now=at(101))
    reset = await store.reset_task("user.report", now=at(150))
    assert (reset.last_run, reset.next_run, reset.updated_at) == (None, None, at(150))
    assert reset == replace(
        marked, last_run=None, next_run=None, updated_at=at(150), accounted_through=at(150)
    )
    assert await store.get_task("user.report") == reset
    # last_run may move to any instant again after a reset
    again = await store.mark_run("user.report", last_run=at(50), next_run=at(60), now=at(151))
    assert (again.last_run, again.next_run, again.version) == (at(50), at(60), 1)
    with pytest.raises(NotFound, match=r"task 'user\.nobody' not found"):
        await store.reset_task("user.nobody", now=at(0))
    with pytest.raises(InvalidValue) as caught:
        await store.reset_task("user.report", now=datetime(2024, 1, 1))
    assert caught.value.field == "now"


async def test_expected_version_makes_a_put_a_compare_and_set(store: LibsqlStore) -> None:
    await store.put_task(spec(), now=at(0), expected_version=0)
    with pytest.raises(Conflict, match=r"'user\.report' is at version 1, not at .* version 0"):
        await store.put_task(spec(), now=at(1), expected_version=0)
    updated = await store.put_task(spec(owner="bob"), now=at(2), expected_version=1)
    assert updated.record.version == 2
    with pytest.raises(Conflict, match="does not exist, not at the expected version 3"):
        await store.put_task(spec("user.other"), now=at(3), expected_version=3)


async def test_mark_run_moves_last_run_forward_only(store: LibsqlStore) -> None:
    await store.put_task(spec(), now=at(0))
    task = await store.mark_run("user.report", last_run=at(100), next_run=at(200), now=at(101))
    assert (task.last_run, task.next_run, task.version) == (at(100), at(200), 1)
    task = await store.mark_run("user.report", last_run=at(50), next_run=at(300), now=at(102))
    assert (task.last_run, task.next_run) == (at(100), at(300))
    with pytest.raises(NotFound, match=r"task 'user\.nobody' not found"):
        await store.mark_run("user.nobody", last_run=None, next_run=None, now=at(0))


async def test_a_task_is_accounted_for_through_its_creation_and_then_forward_only(
    store: LibsqlStore,
) -> None:
    created = (await store.put_task(spec(), now=at(10))).record
    assert created.accounted_through == at(10)  # nothing before its creation is owed
    same = await store.put_task(spec(accounted_through=at(15)), now=at(11))
    assert (same.duplicate, same.record.accounted_through) == (True, at(10))  # nothing written
    other = await store.put_task(spec("user.other", accounted_through=at(5)), now=at(12))
    assert other.record.accounted_through == at(5)  # the scheduler's instant, if it gives one
    kept = (await store.put_task(spec(enabled=False), now=at(20))).record
    assert kept.accounted_through == at(10)  # a change without an instant keeps it
    moved = await store.put_task(spec(accounted_through=at(30), enabled=True), now=at(31))
    assert moved.record.accounted_through == at(30)
    back = await store.put_task(spec(accounted_through=at(25), schedule="@daily"), now=at(32))
    assert back.record.accounted_through == at(30)  # never backwards
    fired = await store.mark_run("user.report", last_run=at(40), next_run=at(50), now=at(41))
    assert (fired.last_run, fired.accounted_through) == (at(40), at(40))
    noted = await store.mark_run("user.report", last_run=None, next_run=at(60), now=at(42))
    assert noted.accounted_through == at(40)  # a next run alone accounts for nothing
    reset = await store.reset_task("user.report", now=at(45), accounted_through=at(44))
    assert (reset.last_run, reset.accounted_through) == (None, at(44))


async def test_tasks_are_listed_in_pages_by_id(store: LibsqlStore) -> None:
    ids = [f"user.t{n:03d}" for n in range(25)]
    for task_id in reversed(ids):
        await store.put_task(spec(task_id), now=at(0))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_tasks(after=cursor, limit=10)
        seen.extend(task.task_id for task in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids


async def test_delete_removes_the_definition_and_keeps_the_history(store: LibsqlStore) -> None:
    await store.put_task(spec(), now=at(0))
    await store.record_execution(
        NewExecution(task_id="user.report", scheduled_at=at(0), started_at=at(0))
    )
    assert await store.delete_task("user.report")
    assert not await store.delete_task("user.report")
    with pytest.raises(NotFound) as caught:
        await store.get_task("user.report")
    assert isinstance(caught.value, LookupError)
    assert len((await store.history("user.report")).items) == 1


async def test_status_counts_runs_and_shows_the_last_error(store: LibsqlStore) -> None:
    await store.put_task(spec(), now=at(0))
    await store.mark_run("user.report", last_run=at(40), next_run=at(50), now=at(41))
    for n, (success, error) in enumerate(
        [(True, None), (False, "first failure"), (False, "second failure"), (True, None)]
    ):
        await store.record_execution(
            NewExecution(
                task_id="user.report",
                scheduled_at=at(10 * n),
                started_at=at(10 * n),
                outcome=ExecutionOutcome(
                    completed_at=at(10 * n + 1), success=success, error_message=error
                ),
            )
        )
    await store.record_execution(
        NewExecution(task_id="user.report", scheduled_at=at(40), started_at=at(40))
    )
    status = await store.task_status("user.report")
    assert (status.runs, status.succeeded, status.failed, status.running) == (5, 2, 2, 1)
    assert (status.last_error, status.last_error_at) == ("second failure", at(21))
    assert (status.last_run, status.next_run, status.enabled) == (at(40), at(50), True)
    with pytest.raises(NotFound):
        await store.task_status("user.nobody")


async def test_an_injection_shaped_task_id_round_trips_verbatim(store: LibsqlStore) -> None:
    task = spec(INJECTION, config={INJECTION: INJECTION}, owner=INJECTION)
    await store.put_task(task, now=at(0))
    await store.record_execution(
        NewExecution(
            task_id=INJECTION,
            scheduled_at=at(0),
            started_at=at(0),
            outcome=ExecutionOutcome(completed_at=at(1), success=False, error_message=INJECTION),
        )
    )
    stored = await store.get_task(INJECTION)
    assert (stored.task_id, stored.config, stored.owner) == (
        INJECTION,
        {INJECTION: INJECTION},
        INJECTION,
    )
    assert [t.task_id for t in (await store.list_tasks()).items] == [INJECTION]
    assert (await store.task_status(INJECTION)).last_error == INJECTION
    (run,) = (await store.history(INJECTION)).items
    assert run.idempotency_key.startswith(INJECTION + "@")
    assert (await store.stats(task_id=INJECTION)).overall.failed == 1
    assert await store.delete_task(INJECTION)
    assert await store.integrity_check() == ["ok"]


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"task_id": ""}, "task_id", "must not be empty"),
        ({"task_id": "a\x00b"}, "task_id", "must not contain NUL"),
        ({"task_id": "line\nbreak"}, "task_id", "must be printable"),
        ({"task_id": "x" * 257}, "task_id", "257 characters long, more than 256"),
        ({"task_id": 7}, "task_id", "expected a string, got int"),
        ({"schedule": ""}, "schedule", "must not be empty"),
        ({"enabled": "yes"}, "enabled", "expected true or false"),
        ({"config": ["not", "a", "map"]}, "config", "expected a map, got list"),
        ({"run_policy": "strict"}, "run_policy", "expected a map, got str"),
        ({"next_run": datetime(2024, 1, 1)}, "next_run", "must be an aware datetime"),
    ],
)
def test_an_out_of_domain_task_field_is_refused_by_name(
    changes: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        spec(**changes)
    assert caught.value.field == field
    assert problem in str(caught.value)
    assert isinstance(caught.value, StoreError)


async def test_an_oversize_or_unencodable_config_is_refused(make_store: StoreFactory) -> None:
    store = await make_store(settings=StoreSettings(max_value_bytes=1024))
    with pytest.raises(InvalidValue, match=r"config: is 2\d{3} bytes encoded, more than the 1024"):
        await store.put_task(spec(config={"blob": "x" * 2000}), now=at(0))
    with pytest.raises(InvalidValue, match="config: cannot be stored as msgpack"):
        await store.put_task(spec(config={"when": at(0)}), now=at(0))
    with pytest.raises(InvalidValue, match="config: cannot be stored as msgpack"):
        await store.put_task(spec(config={1: "integer key"}), now=at(0))
    with pytest.raises(InvalidValue, match=r"run_policy: is 2\d{3} bytes encoded, more than the"):
        await store.put_task(spec(config={}, run_policy={"blob": "x" * 2000}), now=at(0))
    with pytest.raises(InvalidValue, match="run_policy: cannot be stored as msgpack"):
        await store.put_task(spec(config={}, run_policy={"at": at(0)}), now=at(0))
    with pytest.raises(NotFound):
        await store.get_task("user.report")


async def test_instants_in_any_offset_are_stored_as_the_same_utc_instant(
    store: LibsqlStore,
) -> None:
    tokyo = timezone(timedelta(hours=9))
    await store.put_task(spec(next_run=datetime(2024, 5, 1, 21, 0, 0, 1, tzinfo=tokyo)), now=at(0))
    assert (await store.get_task("user.report")).next_run == at(0.000001)
