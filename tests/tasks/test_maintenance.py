"""The built-in maintenance tasks against a fake of the bus that records what they ask."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from config.topics import HEALTH_CHECK_EVENTS
from scheduler import FakeClock
from tasks import TaskResult
from tasks.maintenance import (
    DatabaseVacuum,
    DatabaseVacuumOptions,
    HealthCheck,
    HealthCheckOptions,
    LogCleanup,
)
from tests.tasks.kit import SCHEDULED_AT, FakeServices, make_context

RETENTION_REPORT = {
    "executions_expired": 120,
    "executions_over_cap": 3,
    "dead_letters_expired": 1,
    "pages_freed": 42,
    "cutoff": "2024-04-01T23:30:00+00:00",
}


async def test_log_cleanup_runs_retention_with_its_options() -> None:
    services = FakeServices({"store.retention.run": RETENTION_REPORT})
    ctx = make_context(
        LogCleanup.read_options({"retention_days": 7, "max_executions": 5000}),
        services=services,
        task_id=LogCleanup.task_id,
    )
    result = await LogCleanup().execute(ctx)
    assert services.asks == [
        ("store.retention.run", {"retention_days": 7.0, "max_executions": 5000}, 300.0)
    ]
    assert result == TaskResult.ok(**RETENTION_REPORT)


async def test_log_cleanup_defaults_are_the_aico_ones() -> None:
    services = FakeServices({"store.retention.run": RETENTION_REPORT})
    ctx = make_context(LogCleanup.read_options({}), services=services)
    await LogCleanup().execute(ctx)
    assert services.asks[0][1] == {"retention_days": 30.0, "max_executions": 1_000_000}


async def test_a_store_refusal_fails_the_run() -> None:
    services = FakeServices({"store.retention.run": RuntimeError("store_error: disk I/O")})
    ctx = make_context(LogCleanup.read_options({}), services=services)
    with pytest.raises(RuntimeError, match="disk I/O"):
        await LogCleanup().execute(ctx)


async def test_database_vacuum_asks_the_store_and_returns_its_reply() -> None:
    services = FakeServices({"store.maintenance.vacuum": {"pages_before": 900, "pages_after": 610}})
    ctx = make_context(DatabaseVacuumOptions(), services=services)
    result = await DatabaseVacuum().execute(ctx)
    assert services.asks == [("store.maintenance.vacuum", {}, 600.0)]
    assert result == TaskResult.ok(pages_before=900, pages_after=610)


# ---------------------------------------------------------------- health check


def timed(clock: FakeClock, seconds: float, reply: dict[str, Any]) -> Any:
    """A reply that takes ``seconds`` on the fake clock: a known round trip."""

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        clock.advance(seconds)
        return reply

    return answer


def health_context(
    tmp_path: Path | None,
    replies: dict[str, Any] | None = None,
    lag_s: float = 0.02,
    **options: Any,
) -> tuple[Any, FakeServices]:
    clock = FakeClock(SCHEDULED_AT)
    services = FakeServices(
        replies
        if replies is not None
        else {
            "store.stats": timed(clock, 0.002, {"overall": {}, "tasks": []}),
            "bus.stats": timed(clock, 0.0005, {"peers": 3}),
        }
    )
    ctx = make_context(
        HealthCheck.read_options(options),
        services=services,
        clock=clock,
        task_id=HealthCheck.task_id,
        data_dir=tmp_path,
        loop_lag_s=lambda: lag_s,
    )
    return ctx, services


async def test_health_check_passes_and_publishes_each_check(tmp_path: Path) -> None:
    ctx, services = health_context(tmp_path, min_free_mb=0)
    result = await HealthCheck().execute(ctx)

    assert services.asks == [
        ("store.stats", {"task_id": "maintenance.health_check"}, 5.0),
        ("bus.stats", {}, 5.0),
    ]
    checks = result.data["checks"]
    assert checks["store"] == {"ok": True, "value": 2.0, "limit": None, "unit": "ms"}
    assert checks["bus"] == {"ok": True, "value": 0.5, "limit": None, "unit": "ms"}
    assert checks["loop_lag"] == {"ok": True, "value": 20.0, "limit": 100.0, "unit": "ms"}
    disk = checks["disk"]
    assert (disk["ok"], disk["limit"], disk["unit"]) == (True, 0.0, "MiB")
    assert 0 < disk["value"] <= shutil.disk_usage(tmp_path).total / 2**20
    assert result == TaskResult.ok(checks=checks)
    assert services.published == [
        (
            HEALTH_CHECK_EVENTS,
            {
                "task_id": "maintenance.health_check",
                "execution_id": ctx.execution_id,
                "ok": True,
                "checks": checks,
            },
        )
    ]
    assert HEALTH_CHECK_EVENTS == "scheduler.health.check"


async def test_health_check_fails_when_the_store_does_not_answer(tmp_path: Path) -> None:
    replies = {"store.stats": TimeoutError("no reply in 5.0s"), "bus.stats": {"peers": 1}}
    ctx, services = health_context(tmp_path, replies, min_free_mb=0)
    result = await HealthCheck().execute(ctx)
    assert result.data["checks"]["store"] == {
        "ok": False,
        "value": None,
        "limit": None,
        "unit": "ms",
        "error": "TimeoutError: no reply in 5.0s",
    }
    assert (result.success, result.error) == (False, "health check failed: store")
    assert services.published[0][1]["ok"] is False


async def test_health_check_fails_when_the_bus_does_not_answer(tmp_path: Path) -> None:
    replies = {"store.stats": {}, "bus.stats": PermissionError("forbidden: bus.stats")}
    ctx, _ = health_context(tmp_path, replies, min_free_mb=0)
    result = await HealthCheck().execute(ctx)
    assert result.data["checks"]["bus"]["error"] == "PermissionError: forbidden: bus.stats"
    assert result.error == "health check failed: bus"


async def test_health_check_fails_when_the_disk_is_short(tmp_path: Path) -> None:
    too_much = float(shutil.disk_usage(tmp_path).total)  # MiB: a million times the disk
    ctx, _ = health_context(tmp_path, min_free_mb=too_much)
    result = await HealthCheck().execute(ctx)
    disk = result.data["checks"]["disk"]
    assert (disk["ok"], disk["limit"]) == (False, too_much)
    assert disk["value"] < too_much
    assert result.error == "health check failed: disk"


async def test_health_check_fails_without_a_disk_to_check(tmp_path: Path) -> None:
    ctx, _ = health_context(None, min_free_mb=0)
    result = await HealthCheck().execute(ctx)
    assert result.data["checks"]["disk"]["error"] == "no data directory was given to check"
    ctx, _ = health_context(tmp_path / "gone", min_free_mb=0)
    result = await HealthCheck().execute(ctx)
    assert result.data["checks"]["disk"]["error"].startswith("FileNotFoundError: ")
    assert result.error == "health check failed: disk"


async def test_health_check_fails_when_the_loop_lags(tmp_path: Path) -> None:
    ctx, _ = health_context(tmp_path, lag_s=0.25, min_free_mb=0, max_lag_ms=200)
    result = await HealthCheck().execute(ctx)
    assert result.data["checks"]["loop_lag"] == {
        "ok": False,
        "value": 250.0,
        "limit": 200.0,
        "unit": "ms",
    }
    assert result.error == "health check failed: loop_lag"


def test_health_check_options_are_checked() -> None:
    assert HealthCheck.read_options({}) == HealthCheckOptions(
        min_free_mb=500.0, max_lag_ms=100.0, ask_timeout_s=5.0
    )
    with pytest.raises(ValueError, match=r"options.max_lag_ms: expected milliseconds > 0$"):
        HealthCheck.read_options({"max_lag_ms": 0})
