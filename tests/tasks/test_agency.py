"""The daily digest: the store's data fetched over the bus, summarised in a process pool."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from tasks import TaskCancelled, TaskResult
from tasks.agency import DailyDigest, DailyDigestOptions
from tasks.digest import summarise
from tests.tasks.kit import FakeServices, ProgressLog, make_context

SINCE, UNTIL = "2024-04-30T23:30:00+00:00", "2024-05-01T23:30:00+00:00"


def stats(task_id: str | None, runs: int, failed: int, p95_s: float | None) -> dict[str, Any]:
    finished = runs
    return {
        "task_id": task_id,
        "runs": runs,
        "succeeded": runs - failed,
        "failed": failed,
        "running": 0,
        "success_rate": (runs - failed) / finished if finished else None,
        "failure_rate": failed / finished if finished else None,
        "mean_s": None if p95_s is None else p95_s / 2,
        "min_s": None if p95_s is None else 0.001,
        "max_s": p95_s,
        "p95_s": p95_s,
    }


STATS = {
    "overall": stats(None, 40, 4, 12.0),
    "tasks": [
        stats("maintenance.health_check", 30, 0, 0.05),
        stats("maintenance.database_vacuum", 1, 0, 12.0),
        stats("user.mail_sync", 6, 3, 2.5),
        stats("user.backup", 3, 1, 8.0),
    ],
    "since": SINCE,
}


def run(
    task_id: str, started_at: str, success: bool | None, error: str | None = None
) -> dict[str, Any]:
    return {
        "execution_id": f"{task_id}@{started_at}",
        "task_id": task_id,
        "scheduled_at": started_at,
        "started_at": started_at,
        "completed_at": started_at,
        "success": success,
        "duration_seconds": 1.0,
        "result": None,
        "error_message": error,
        "retry_count": 0,
        "idempotency_key": f"{task_id}@{started_at}",
    }


HISTORY = {
    "user.mail_sync": [
        run("user.mail_sync", "2024-05-01T22:00:00+00:00", True),
        run("user.mail_sync", "2024-05-01T21:00:00+00:00", False, "imap: connection refused"),
        run("user.mail_sync", "2024-05-01T09:00:00+00:00", False, "imap: timeout"),
        run("user.mail_sync", "2024-04-30T12:00:00+00:00", False, "before the period"),
    ],
    "user.backup": [run("user.backup", "2024-05-01T02:00:00+00:00", False, "x" * 500)],
}


def history(payload: dict[str, Any]) -> dict[str, Any]:
    executions = HISTORY[payload["task_id"]][: payload["limit"]]
    return {"executions": executions, "next_cursor": None}


async def test_the_digest_is_the_result_and_is_computed_in_another_process(
    process_pool: ProcessPoolExecutor,
) -> None:
    services = FakeServices({"store.stats": STATS, "store.execution.history": history})
    progress = ProgressLog()
    ctx = make_context(
        DailyDigestOptions(),
        services=services,
        task_id=DailyDigest.task_id,
        processes=process_pool,
        on_progress=progress,
    )
    result = await DailyDigest().execute(ctx)

    assert services.asks == [
        ("store.stats", {"since": SINCE}, 30.0),
        ("store.execution.history", {"task_id": "user.mail_sync", "limit": 10}, 30.0),
        ("store.execution.history", {"task_id": "user.backup", "limit": 10}, 30.0),
    ]
    assert [fraction for fraction, _ in progress.calls] == [0.4, 0.8]
    executions = HISTORY["user.mail_sync"] + HISTORY["user.backup"]
    assert result == TaskResult.ok(**summarise(STATS, executions, SINCE, UNTIL, 5))
    digest = result.data
    assert digest["period"] == {"since": SINCE, "until": UNTIL}
    assert (digest["runs"], digest["succeeded"], digest["failed"]) == (40, 36, 4)
    assert digest["success_rate"] == 0.9
    assert [t["task_id"] for t in digest["slowest"]] == [
        "maintenance.database_vacuum",
        "user.backup",
        "user.mail_sync",
        "maintenance.health_check",
    ]
    assert digest["failing"] == [
        {
            "task_id": "user.mail_sync",
            "failed": 3,
            "runs": 6,
            "failure_rate": 0.5,
            "last_error": "imap: connection refused",
            "last_error_at": "2024-05-01T21:00:00+00:00",
        },
        {
            "task_id": "user.backup",
            "failed": 1,
            "runs": 3,
            "failure_rate": 1 / 3,
            "last_error": "x" * 199 + "…",
            "last_error_at": "2024-05-01T02:00:00+00:00",
        },
    ]
    assert digest["text"] == (
        f"{SINCE} to {UNTIL}: 40 runs, 36 succeeded, 4 failed, 0 running; success rate 90.0%. "
        "Slowest (p95): maintenance.database_vacuum 12.00s, user.backup 8.00s, "
        "user.mail_sync 2.50s, maintenance.health_check 0.05s. "
        "Failing: user.mail_sync failed 3 of 6 runs, last at 2024-05-01T21:00:00+00:00: "
        "imap: connection refused. "
        f"Failing: user.backup failed 1 of 3 runs, last at 2024-05-01T02:00:00+00:00: {'x' * 199}…."
    )


async def test_options_bound_the_window_and_the_lists(process_pool: ProcessPoolExecutor) -> None:
    services = FakeServices({"store.stats": STATS, "store.execution.history": history})
    options = DailyDigest.read_options({"window_h": 1, "top": 1, "failures_per_task": 2})
    ctx = make_context(options, services=services, processes=process_pool)
    result = await DailyDigest().execute(ctx)
    assert services.asks == [
        ("store.stats", {"since": "2024-05-01T22:30:00+00:00"}, 30.0),
        ("store.execution.history", {"task_id": "user.mail_sync", "limit": 2}, 30.0),
    ]
    assert [t["task_id"] for t in result.data["slowest"]] == ["maintenance.database_vacuum"]
    (failing,) = result.data["failing"]
    assert (failing["task_id"], failing["last_error"]) == ("user.mail_sync", None)


async def test_a_cancelled_digest_stops_between_steps() -> None:
    services = FakeServices({"store.stats": STATS, "store.execution.history": history})
    ctx = make_context(DailyDigestOptions(), services=services)
    ctx.cancel("shutdown")
    with pytest.raises(TaskCancelled, match="shutdown"):
        await DailyDigest().execute(ctx)
    assert services.topics() == ["store.stats"]


def test_a_period_without_runs() -> None:
    empty = {"overall": stats(None, 0, 0, None), "tasks": [], "since": SINCE}
    digest = summarise(empty, [], SINCE, UNTIL)
    assert digest == {
        "period": {"since": SINCE, "until": UNTIL},
        "runs": 0,
        "succeeded": 0,
        "failed": 0,
        "running": 0,
        "success_rate": None,
        "slowest": [],
        "failing": [],
        "text": f"{SINCE} to {UNTIL}: no runs.",
    }


def test_only_failures_within_the_period_count_as_last_error() -> None:
    old_only = {"user.mail_sync": [HISTORY["user.mail_sync"][3], HISTORY["user.mail_sync"][0]]}
    executions = [run for runs in old_only.values() for run in runs]
    digest = summarise(STATS, executions, SINCE, UNTIL, top=5)
    mail = next(t for t in digest["failing"] if t["task_id"] == "user.mail_sync")
    assert (mail["last_error"], mail["last_error_at"]) == (None, None)
    assert "Failing: user.mail_sync failed 3 of 6 runs." in digest["text"]


def test_the_digest_task_is_idle_only() -> None:
    assert DailyDigest.idle_only is True
    assert DailyDigest.category == "agency"
