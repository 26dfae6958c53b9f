"""StoreClient against a real store actor on a real bus over a real encrypted file: what a caller
gets back is the store's own records, and what it catches is the store's own exception classes.
"""

from __future__ import annotations

import pytest

from actors import ActorSystem
from actors.storing.client import RecordedFire, StoreClient
from bus import RemoteError
from store import (
    Conflict,
    ExecutionOutcome,
    InvalidValue,
    LeaseLost,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NotFound,
    TaskSpec,
)
from store.records import RunMark
from tests.store.conftest import T0, at
from tests.storing.test_actor import Served

SPEC = TaskSpec(
    task_id="user.report",
    task_class="tasks.reminders:Reminder",
    schedule="0 3 * * *",
    config={"message": "hi", "nested": {"a": [1, 2]}},
    timezone="Europe/Berlin",
    retry_policy={"max_retries": 2},
    owner="cli",
    next_run=at(3600),
)


async def test_tasks_come_back_as_the_store_s_own_records(
    served: Served, store: StoreClient
) -> None:
    put = await store.put_task(SPEC, expected_version=0)
    assert put.duplicate is False
    direct = await served.actor.store.get_task("user.report")
    assert put.record == direct  # every field, instants as aware datetimes, maps as maps
    assert put.record.next_run == at(3600)
    assert await store.get_task("user.report") == direct
    again = await store.put_task(SPEC)
    assert (again.duplicate, again.record) == (True, direct)

    page = await store.list_tasks(limit=10, owner="cli")
    assert (page.items, page.next_cursor) == ((direct,), None)
    assert (await store.list_tasks(owner="someone-else")).items == ()

    marked = await store.mark_run("user.report", next_run=at(7200))
    assert marked.next_run == at(7200)
    reset = await store.reset_task("user.report", accounted_through=at(10))
    assert (reset.last_run, reset.accounted_through) == (None, at(10))
    status = await store.task_status("user.report")
    assert (status.task_id, status.runs, status.enabled) == ("user.report", 0, True)

    assert await store.delete_task("user.report") is True
    assert await store.delete_task("user.report") is False


async def test_refusals_raise_the_store_s_exception_classes(store: StoreClient) -> None:
    with pytest.raises(NotFound, match=r"'user\.none'"):
        await store.get_task("user.none")
    await store.put_task(SPEC, expected_version=0)
    with pytest.raises(Conflict, match="version") as stale:
        await store.put_task(SPEC, expected_version=7)
    assert not isinstance(stale.value, LeaseLost)
    with pytest.raises(InvalidValue) as invalid:
        await store.history("", limit=5)
    assert invalid.value.field == "task_id"
    assert str(invalid.value).startswith("task_id: ")


async def test_fires_finishes_and_outcomes(served: Served, store: StoreClient) -> None:
    await store.put_task(SPEC, expected_version=0)
    first = NewExecution(task_id="user.report", scheduled_at=at(60), started_at=at(61))
    recorded = await store.record_fires(
        [first], marks=[RunMark(task_id="user.report", last_run=at(60), next_run=at(120))]
    )
    assert len(recorded) == 1
    assert isinstance(recorded[0], RecordedFire)
    assert (recorded[0].duplicate, recorded[0].success) == (False, None)
    execution_id = recorded[0].execution_id
    assert (await store.get_task("user.report")).last_run == at(60)

    again = await store.record_fires([first])
    assert again == [RecordedFire(execution_id, True, None)]

    outcome = ExecutionOutcome(completed_at=at(62), success=True, result={"n": 1})
    finished = await store.finish_executions(
        [(execution_id, outcome), ("00000000-0000-4000-8000-000000000000", outcome)]
    )
    assert finished[0] is False
    assert isinstance(finished[1], NotFound)
    assert await store.execution_outcomes(
        [execution_id, "00000000-0000-4000-8000-00000000000f"]
    ) == {execution_id: True}
    record = await store.get_execution(execution_id)
    assert record == await served.actor.store.get_execution(execution_id)
    assert (record.success, record.result, record.completed_at) == (True, {"n": 1}, at(62))
    history = await store.history("user.report")
    assert history.items == (record,)

    single = await store.record_execution(
        NewExecution(task_id="user.report", scheduled_at=at(120), started_at=at(121))
    )
    done = await store.finish_execution(
        single.record.execution_id,
        ExecutionOutcome(completed_at=at(122), success=False, error_message="boom"),
    )
    assert (done.duplicate, done.record.success, done.record.error_message) == (
        False,
        False,
        "boom",
    )

    stats = await store.stats(per_task=False)
    assert (stats.overall.runs, stats.overall.succeeded, stats.overall.failed) == (2, 1, 1)
    assert stats.tasks == ()
    assert [t.task_id for t in (await store.stats()).tasks] == ["user.report"]


async def test_dead_letters_missed_runs_and_retention(store: StoreClient) -> None:
    await store.put_task(SPEC, expected_version=0)
    letter = NewDeadLetter(
        task_id="user.report",
        scheduled_at=at(60),
        attempts=3,
        error_type="ValueError",
        last_error="bad",
        reason="retries exhausted",
        failed_at=at(90),
    )
    added = await store.add_dead_letter(letter)
    assert (added.duplicate, added.record.scheduled_at, added.record.attempts) == (False, at(60), 3)
    assert (await store.dead_letters(task_id="user.report")).items == (added.record,)

    run = NewMissedRun(first_at=at(0), last_at=at(60), count=2, reason="down")
    assert await store.record_missed("user.report", [run]) == 1
    assert await store.record_missed("user.report", [run]) == 0
    (missed,) = (await store.missed_runs("user.report")).items
    assert (missed.first_at, missed.last_at, missed.count, missed.recorded_at) == (
        at(0),
        at(60),
        2,
        T0,
    )
    report = await store.run_retention(retention_days=1.0)
    assert report.executions_expired == 0


async def test_the_lease_fences_by_class(served: Served, store: StoreClient) -> None:
    grant = await store.acquire_lease("scheduler", "one", ttl_s=10)
    assert grant.granted
    token = grant.lease.token
    refused = await store.acquire_lease("scheduler", "two", ttl_s=10)
    assert (refused.granted, refused.lease.holder, refused.lease.token) == (False, "one", 0)
    renewed = await store.renew_lease("scheduler", "one", token, ttl_s=20)
    assert renewed.expires_at == at(20)
    with pytest.raises(LeaseLost):
        await store.renew_lease("scheduler", "one", token + 1, ttl_s=20)
    assert await store.release_lease("scheduler", "one", token) is True


async def test_what_the_store_did_not_decide_stays_the_bus_s(system: ActorSystem) -> None:
    """No store on the bus: the bus's RemoteError, not a store error."""
    client = await system.client("lonely")
    store = StoreClient(client.ask, timeout_s=5)
    with pytest.raises(RemoteError) as caught:
        await store.get_task("user.x")
    assert caught.value.code == "no_responder"
