"""The batched execution topics on a real store actor and encrypted file: several fires and their
tasks' run state in one fenced write (``store.execution.record_many``), several outcomes in one
write (``store.execution.finish_many``), and whether executions finished, in one read
(``store.execution.outcomes``); the store thread answers reads queued together in one go.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors import ActorSystem
from store import LibsqlStore
from store.records import NewExecution
from tests.store.conftest import T0, at
from tests.storing.test_actor import Served, serve, system  # noqa: F401  (the fixture)


def _fire(task_id: str, seconds: int, retry_count: int = 0) -> dict[str, object]:
    return {
        "task_id": task_id,
        "scheduled_at": at(seconds).isoformat(),
        "started_at": at(seconds + 1).isoformat(),
        "retry_count": retry_count,
    }


async def _task(served: Served, task_id: str) -> None:
    await served.ask(
        "store.task.put", task_id=task_id, task_class="tasks.Report", schedule="0 3 * * *"
    )


async def test_fires_and_run_state_are_recorded_in_one_write(
    system: ActorSystem,  # noqa: F811
    db_path: Path,
) -> None:
    served = await serve(system, db_path)
    for task_id in ("user.a", "user.b"):
        await _task(served, task_id)
    lease = await served.ask("store.lease.acquire", name="scheduler", ttl_s=30)
    fence = {"lease": "scheduler", "token": lease["lease"]["token"]}
    served.clock.advance(5)

    first = await served.ask(
        "store.execution.record_many",
        executions=[_fire("user.a", 0), _fire("user.b", 0), _fire("user.a", 0)],
        marks=[
            {"task_id": "user.a", "last_run": at(0).isoformat(), "next_run": at(60).isoformat()},
            {"task_id": "user.b", "last_run": at(0).isoformat()},
            {"task_id": "user.gone", "last_run": at(0).isoformat()},  # passed over
        ],
        fence=fence,
    )
    a, b, a_again = first["executions"]
    assert (a["duplicate"], b["duplicate"], a_again["duplicate"]) == (False, False, True)
    assert a_again["execution_id"] == a["execution_id"]
    assert (a["success"], b["success"]) == (None, None)
    got = await served.ask("store.execution.get", execution_id=a["execution_id"])
    assert got["execution"]["scheduled_at"] == at(0).isoformat()
    task_a = (await served.ask("store.task.get", task_id="user.a"))["task"]
    assert (task_a["last_run"], task_a["next_run"], task_a["updated_at"]) == (
        at(0).isoformat(),
        at(60).isoformat(),
        at(5).isoformat(),
    )
    task_b = (await served.ask("store.task.get", task_id="user.b"))["task"]
    assert (task_b["last_run"], task_b["next_run"]) == (at(0).isoformat(), None)

    # a finished fire recorded again is a duplicate that says it finished
    await served.ask(
        "store.execution.finish",
        execution_id=a["execution_id"],
        completed_at=at(2).isoformat(),
        success=True,
    )
    again = await served.ask("store.execution.record_many", executions=[_fire("user.a", 0)])
    assert again["executions"] == [
        {"execution_id": a["execution_id"], "duplicate": True, "success": True}
    ]


async def test_a_stale_fence_writes_nothing_of_the_batch(
    system: ActorSystem,  # noqa: F811
    db_path: Path,
) -> None:
    served = await serve(system, db_path)
    await _task(served, "user.a")
    await served.ask("store.lease.acquire", name="scheduler", ttl_s=30)
    served.clock.advance(30)
    await served.ask("store.lease.acquire", name="scheduler", ttl_s=30, holder="other")
    refusal = await served.refused(
        "store.execution.record_many",
        executions=[_fire("user.a", 0)],
        marks=[{"task_id": "user.a", "last_run": at(0).isoformat()}],
        fence={"lease": "scheduler", "token": 1},
    )
    assert refusal.code == "lease_lost"
    history = await served.ask("store.execution.history", task_id="user.a")
    assert history["executions"] == []
    task = (await served.ask("store.task.get", task_id="user.a"))["task"]
    assert task["last_run"] is None


async def test_a_bad_entry_is_refused_naming_it_before_anything_is_written(
    system: ActorSystem,  # noqa: F811
    db_path: Path,
) -> None:
    served = await serve(system, db_path)
    bad = {"task_id": "user.a", "started_at": at(1).isoformat()}
    refusal = await served.refused(
        "store.execution.record_many", executions=[_fire("user.a", 0), bad]
    )
    assert (refusal.code, refusal.reason) == ("invalid", "executions[1].scheduled_at: is required")
    assert (await served.ask("store.execution.history", task_id="user.a"))["executions"] == []
    refusal = await served.refused(
        "store.execution.record_many", executions=[{**_fire("user.a", 0), "success": True}]
    )
    assert refusal.reason == "executions[0].success: is not a field of this request"
    refusal = await served.refused("store.execution.outcomes", execution_ids=[])
    assert refusal.reason == "execution_ids: has 0 entries, expected 1..1000"
    refusal = await served.refused("store.execution.finish_many", executions=[{}])
    assert refusal.reason == "executions[0].execution_id: is required"


async def test_outcomes_are_finished_together_and_read_together(
    system: ActorSystem,  # noqa: F811
    db_path: Path,
) -> None:
    served = await serve(system, db_path)
    recorded = await served.ask(
        "store.execution.record_many",
        executions=[_fire("user.a", 0), _fire("user.a", 10), _fire("user.a", 20)],
    )
    ok, failed, unfinished = (e["execution_id"] for e in recorded["executions"])
    finished = await served.ask(
        "store.execution.finish_many",
        executions=[
            {"execution_id": ok, "completed_at": at(3).isoformat(), "success": True},
            {
                "execution_id": failed,
                "completed_at": at(13).isoformat(),
                "success": False,
                "result": {"error_type": ["ValueError"]},
                "error_message": "boom",
            },
            {"execution_id": ok, "completed_at": at(4).isoformat(), "success": False},
            {"execution_id": "nope", "completed_at": at(4).isoformat(), "success": True},
            {"execution_id": unfinished, "completed_at": at(0).isoformat(), "success": True},
        ],
    )
    answers = finished["executions"]
    assert answers[:3] == [
        {"execution_id": ok, "duplicate": False},
        {"execution_id": failed, "duplicate": False},
        {"execution_id": ok, "duplicate": True},  # finishing a finished run writes nothing
    ]
    assert answers[3] == {
        "execution_id": "nope",
        "error": {"code": "not_found", "reason": "execution 'nope' not found"},
    }
    assert answers[4]["error"]["code"] == "invalid"  # completed before it started
    run = (await served.ask("store.execution.get", execution_id=failed))["execution"]
    assert (run["success"], run["error_message"], run["duration_seconds"]) == (False, "boom", 2.0)
    assert (await served.ask("store.execution.get", execution_id=ok))["execution"]["success"]

    outcomes = await served.ask(
        "store.execution.outcomes", execution_ids=[ok, failed, unfinished, "nope", ok]
    )
    assert outcomes == {"outcomes": {ok: True, failed: False, unfinished: None}}


async def test_reads_queued_together_are_answered_in_one_go(db_path: Path) -> None:
    store = LibsqlStore(db_path, environ={})
    await store.start()
    try:
        news = [
            NewExecution(task_id=f"user.t{n}", scheduled_at=T0, started_at=at(1)) for n in range(50)
        ]
        recorded = await store.record_fires(news, now=at(2))
        ids = [r.record.execution_id for r in recorded]
        before = store.worker.stats.reads
        results = await asyncio.gather(*(store.get_execution(i) for i in ids))
        assert [r.execution_id for r in results] == ids
        assert store.worker.stats.reads - before == 50
        missing = await asyncio.gather(store.get_execution("nope"), return_exceptions=True)
        assert isinstance(missing[0], LookupError)
        assert await store.execution_outcomes(ids[:2]) == {ids[0]: None, ids[1]: None}
    finally:
        await store.close()
