"""Run steps: kept once per (run key, step name), the first write winning, listed in the order
stored, bounded like other values, encrypted with the file, and deleted by retention with the
last kept attempt of their run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store import (
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    NewExecution,
    StepOutcome,
    StepRecord,
    run_key,
)
from tests.store.conftest import StoreFactory, at

RUN = "user.report@1714564800000000"


def ok(name: str, result: Any, n: float = 0, attempts: int = 1) -> StepOutcome:
    return StepOutcome(
        name=name,
        status="ok",
        result=result,
        attempts=attempts,
        started_at=at(n),
        finished_at=at(n + 1),
    )


async def test_a_step_is_kept_and_listed_with_its_result(store: LibsqlStore) -> None:
    recorded = await store.put_step(RUN, ok("collect", {"rows": [1, 2, 3]}, attempts=2))
    assert not recorded.duplicate
    assert recorded.record == StepRecord(
        run_key=RUN,
        name="collect",
        status="ok",
        result={"rows": [1, 2, 3]},
        error=None,
        attempts=2,
        started_at=at(0),
        finished_at=at(1),
        size_bytes=recorded.record.size_bytes,
    )
    assert recorded.record.size_bytes > 0
    await store.put_step(RUN, ok("page[2]", None, n=5))
    failed = StepOutcome(
        name="upload", status="error", error="OSError: gone", started_at=at(6), finished_at=at(7)
    )
    await store.put_step(RUN, failed)
    steps = await store.run_steps(RUN)
    assert [(s.name, s.status, s.result, s.error) for s in steps] == [
        ("collect", "ok", {"rows": [1, 2, 3]}, None),
        ("page[2]", "ok", None, None),
        ("upload", "error", None, "OSError: gone"),
    ]
    assert await store.run_steps("user.report@1") == ()


async def test_the_first_write_of_a_step_wins(store: LibsqlStore) -> None:
    first = await store.put_step(RUN, ok("collect", [1]))
    again = await store.put_step(RUN, ok("collect", [2], n=10))
    assert again.duplicate
    assert again.record == first.record
    assert [s.result for s in await store.run_steps(RUN)] == [[1]]
    other = await store.put_step("user.report@2", ok("collect", [3]))  # another run: its own
    assert not other.duplicate


async def test_an_oversize_or_unplain_result_is_refused_and_stores_nothing(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    big = "x" * (store.settings.max_value_bytes + 1)
    with pytest.raises(InvalidValue, match=r"^result: is \d+ bytes encoded, more than"):
        await store.put_step(RUN, ok("collect", big))
    with pytest.raises(InvalidValue, match=r"^result: cannot be stored as msgpack"):
        await store.put_step(RUN, ok("collect", {"when": object()}))
    with pytest.raises(InvalidValue, match=r"^run_key: must not be empty"):
        await store.put_step("", ok("collect", 1))
    assert await store.run_steps(RUN) == ()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "maybe"}, "status"),
        ({"name": ""}, "name"),
        ({"attempts": 0}, "attempts"),
        ({"finished_at": at(-1)}, "finished_at"),
        ({"status": "error", "error": None}, "error"),
        ({"error": "boom"}, "error"),
    ],
)
def test_a_step_outcome_checks_its_fields(fields: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "name": "collect",
        "status": "ok",
        "started_at": at(0),
        "finished_at": at(1),
    }
    with pytest.raises(InvalidValue) as caught:
        StepOutcome(**(values | fields))
    assert caught.value.field == field


async def test_steps_are_encrypted_with_the_file(make_store: StoreFactory, data_dir: Path) -> None:
    store = await make_store()
    await store.put_step(RUN, ok("collect", {"secret": "plain-text-marker-7431"}))
    assert [s.result for s in await store.run_steps(RUN)] == [{"secret": "plain-text-marker-7431"}]
    await store.close()
    stored = {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())}  # noqa: ASYNC240
    assert "taskbus.db" in stored
    for name, content in stored.items():
        assert b"plain-text-marker-7431" not in content, name


async def test_retention_deletes_the_steps_of_runs_it_deletes(store: LibsqlStore) -> None:
    # fire A: its first attempt is old, its retry recent (kept): its steps stay;
    # fire B: its only attempt is old: deleted, and its steps with it.
    old, recent = at(0), at(40 * 86_400)
    fire_a, fire_b = at(10), at(20)
    for fire, retry, started in ((fire_a, 0, old), (fire_a, 1, recent), (fire_b, 0, old)):
        new = NewExecution(
            task_id="user.x", scheduled_at=fire, started_at=started, retry_count=retry
        )
        recorded = await store.record_execution(new)
        outcome = ExecutionOutcome(completed_at=started, success=retry == 1)
        await store.finish_execution(recorded.record.execution_id, outcome)
    for fire in (fire_a, fire_b):
        await store.put_step(run_key("user.x", fire), ok("collect", 1))
    report = await store.run_retention(now=at(41 * 86_400), retention_days=30)
    assert report.executions_expired == 2
    assert report.steps_deleted == 1
    assert [s.name for s in await store.run_steps(run_key("user.x", fire_a))] == ["collect"]
    assert await store.run_steps(run_key("user.x", fire_b)) == ()
