"""``reopen_run`` (``run retry``) on a real encrypted file: an ended run made to run again in one
write, from a step on (that step and those stored after it deleted, earlier ones kept) or for
its failed steps only; its row made or set ``running`` with the attempt to fire; a run that has
not ended, or succeeded without a step named, refused ``conflict``, an unknown run or step
``not_found`` and bad input ``invalid``, each having written nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from store import (
    Conflict,
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewExecution,
    NotFound,
    RunSuspension,
    StepOutcome,
    run_key,
)
from tests.store.conftest import StoreFactory, at

TASK = "user.report"
FIRE = at(0)
RUN = run_key(TASK, FIRE)


def step(name: str, *, failed: bool = False, result: Any = None, n: float = 1) -> StepOutcome:
    return StepOutcome(
        name=name,
        status="error" if failed else "ok",
        result=None if failed else result,
        error="RuntimeError: boom" if failed else None,
        attempts=1,
        started_at=at(n),
        finished_at=at(n + 1),
    )


async def attempt(store: LibsqlStore, retry: int, *, success: bool | None) -> str:
    """Record the fire's attempt ``retry + 1`` and finish it (None: it runs on)."""
    (fired,) = await store.record_fires(
        [
            NewExecution(
                task_id=TASK,
                scheduled_at=FIRE,
                started_at=at(10 * retry + 1),
                retry_count=retry,
                trigger="schedule" if retry == 0 else "retry",
            )
        ],
        now=at(10 * retry + 1),
    )
    execution_id = fired.record.execution_id
    if success is not None:
        outcome = ExecutionOutcome(
            completed_at=at(10 * retry + 5),
            success=success,
            error_message=None if success else "RuntimeError: boom",
        )
        await store.finish_execution(execution_id, outcome)
    return execution_id


async def three_steps(store: LibsqlStore, *, third_failed: bool = True) -> None:
    await store.put_step(RUN, step("one", result={"n": 1}, n=1))
    await store.put_step(RUN, step("two", result="plain-text-step-marker-7311", n=2))
    await store.put_step(RUN, step("three", failed=third_failed, result=3, n=3))


async def names(store: LibsqlStore) -> list[str]:
    return [s.name for s in await store.run_steps(RUN)]


async def reopen(
    store: LibsqlStore, from_step: str | None = None, *, now: datetime | None = None
) -> tuple[Any, tuple[str, ...]]:
    return await store.reopen_run(
        RUN, task_id=TASK, scheduled_at=FIRE, from_step=from_step, now=now or at(100)
    )


async def test_from_a_step_deletes_it_and_every_later_step(store: LibsqlStore) -> None:
    await attempt(store, 0, success=False)
    await three_steps(store)
    run, deleted = await reopen(store, "two")
    assert deleted == ("two", "three")
    assert await names(store) == ["one"]
    assert (run.run_key, run.state, run.attempt, run.paused) == (RUN, "running", 2, False)
    assert (run.created_at, run.updated_at) == (at(100), at(100))
    # the kept step keeps its result
    (kept,) = await store.run_steps(RUN)
    assert kept.result == {"n": 1}


async def test_without_a_step_only_the_failed_steps_are_deleted(store: LibsqlStore) -> None:
    await attempt(store, 0, success=False)
    await attempt(store, 1, success=False)
    await three_steps(store)
    run, deleted = await reopen(store)
    assert deleted == ("three",)
    assert await names(store) == ["one", "two"]
    assert (run.state, run.attempt) == ("running", 3)  # after the latest attempt, 2


async def test_a_failed_or_cancelled_row_is_reopened(store: LibsqlStore) -> None:
    await attempt(store, 0, success=False)
    await store.suspend_run(
        RunSuspension(
            run_key=RUN,
            task_id=TASK,
            scheduled_at=FIRE,
            attempt=1,
            wake_at=at(1000),
            waiting=None,
            consumed=0,
            paused=True,
            at=at(6),
        )
    )
    await store.control_run(
        RUN, task_id=TASK, scheduled_at=FIRE, action="cancel", reason="no", now=at(7)
    )
    run, deleted = await reopen(store)
    assert deleted == ()
    assert (run.state, run.paused, run.wake_at, run.waiting, run.reason) == (
        "running",
        False,
        None,
        None,
        None,
    )
    assert run.attempt == 2
    await store.finish_run(RUN, "failed", reason="given up", now=at(200))
    again, _ = await reopen(store, now=at(300))
    assert (again.state, again.attempt, again.updated_at) == ("running", 2, at(300))


async def test_a_succeeded_run_is_reopened_only_from_a_step(store: LibsqlStore) -> None:
    await attempt(store, 0, success=True)
    await three_steps(store, third_failed=False)
    with pytest.raises(Conflict, match=f"run {RUN} is succeeded"):
        await reopen(store)
    assert await names(store) == ["one", "two", "three"]
    run, deleted = await reopen(store, "three")
    assert (run.state, deleted) == ("running", ("three",))


async def test_a_run_that_has_not_ended_is_refused(store: LibsqlStore) -> None:
    await attempt(store, 0, success=None)
    await three_steps(store)
    with pytest.raises(Conflict, match=f"run {RUN} is running"):
        await reopen(store, "two")
    with pytest.raises(NotFound):
        await store.get_run(RUN)  # no row made
    await store.suspend_run(
        RunSuspension(
            run_key=RUN,
            task_id=TASK,
            scheduled_at=FIRE,
            attempt=1,
            wake_at=at(1000),
            waiting=None,
            consumed=0,
            at=at(6),
        )
    )
    with pytest.raises(Conflict, match=f"run {RUN} is sleeping"):
        await reopen(store, "one")
    assert await names(store) == ["one", "two", "three"]
    assert (await store.get_run(RUN)).state == "sleeping"


async def test_a_cancelled_run_whose_attempt_is_still_ending_is_refused(
    store: LibsqlStore,
) -> None:
    execution_id = await attempt(store, 0, success=None)
    await three_steps(store)
    await store.control_run(
        RUN, task_id=TASK, scheduled_at=FIRE, action="cancel", reason="no", now=at(7)
    )
    with pytest.raises(Conflict, match=f"run {RUN} is cancelled, but its attempt 1 has not"):
        await reopen(store, "two")
    assert await names(store) == ["one", "two", "three"]
    assert (await store.get_run(RUN)).state == "cancelled"
    ended = ExecutionOutcome(completed_at=at(8), success=False, error_message="RunCancelled")
    await store.finish_execution(execution_id, ended)
    run, deleted = await reopen(store, "two")
    assert (run.state, run.attempt, deleted) == ("running", 2, ("two", "three"))


async def test_an_unknown_run_or_step_is_not_found_and_writes_nothing(
    store: LibsqlStore,
) -> None:
    with pytest.raises(NotFound, match="not found"):
        await reopen(store)
    await attempt(store, 0, success=False)
    await three_steps(store)
    with pytest.raises(NotFound, match=f"run {RUN} has no step 'four'"):
        await reopen(store, "four")
    assert await names(store) == ["one", "two", "three"]
    with pytest.raises(NotFound):
        await store.get_run(RUN)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"task_id": "user.other"}, "run_key"),
        ({"scheduled_at": at(1)}, "run_key"),
        ({"from_step": ""}, "from_step"),
        ({"from_step": 3}, "from_step"),
        ({"from_step": "a\nb"}, "from_step"),
        ({"now": "today"}, "now"),
    ],
)
async def test_bad_input_is_invalid_and_writes_nothing(
    store: LibsqlStore, fields: dict[str, Any], field: str
) -> None:
    await attempt(store, 0, success=False)
    await three_steps(store)
    ask: dict[str, Any] = {"task_id": TASK, "scheduled_at": FIRE, "from_step": "two", "now": at(9)}
    with pytest.raises(InvalidValue) as caught:
        await store.reopen_run(RUN, **(ask | fields))
    assert caught.value.field == field
    assert await names(store) == ["one", "two", "three"]


async def test_the_kept_steps_stay_encrypted(make_store: StoreFactory, data_dir: Path) -> None:
    store = await make_store()
    await attempt(store, 0, success=False)
    await three_steps(store)
    await reopen(store, "three")
    await store.close()
    stored = {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())}  # noqa: ASYNC240
    assert "taskbus.db" in stored
    for name, content in stored.items():
        assert b"plain-text-step-marker-7311" not in content, name
    reopened = await make_store()
    assert [s.name for s in await reopened.run_steps(RUN)] == ["one", "two"]
