"""Built-in maintenance tasks: history retention, health checks, vacuum. Each asks the store (or
the broker) over the bus through ``ctx.services``; nothing here opens the database itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from config import topics
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.options import TaskOptions, require_option
from tasks.result import TaskResult

_MIB = 1024 * 1024


@dataclass(frozen=True)
class LogCleanupOptions(TaskOptions):
    retention_days: float = 30.0
    max_executions: int = 1_000_000
    ask_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        require_option(0 < self.retention_days <= 36_500, "retention_days", "days in (0, 36500]")
        require_option(self.max_executions >= 1, "max_executions", "an integer >= 1")
        require_option(self.ask_timeout_s > 0, "ask_timeout_s", "seconds > 0")


class LogCleanup(BaseTask):
    """Deletes executions older than ``retention_days`` and beyond ``max_executions``, old dead
    letters, and the steps of the runs deleted (``store.retention.run``); the result is the
    store's report.
    """

    task_id = "maintenance.log_cleanup"
    default_schedule = "0 3 * * *"
    description = "history retention and size cap in the store"
    Options = LogCleanupOptions
    timeout_s = 600.0

    async def execute(self, ctx: TaskContext[LogCleanupOptions]) -> TaskResult:
        options = ctx.options
        report = await ctx.services.ask(
            topics.STORE_RETENTION_RUN,
            {"retention_days": options.retention_days, "max_executions": options.max_executions},
            timeout=options.ask_timeout_s,
        )
        ctx.log.info("retention: %s", report)
        return TaskResult.ok(**report)


@dataclass(frozen=True)
class DatabaseVacuumOptions(TaskOptions):
    ask_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        require_option(self.ask_timeout_s > 0, "ask_timeout_s", "seconds > 0")


class DatabaseVacuum(BaseTask):
    """VACUUM and ANALYZE the store (``store.maintenance.vacuum``); the result is its reply,
    ``pages_before`` and ``pages_after``.
    """

    task_id = "maintenance.database_vacuum"
    default_schedule = "0 4 * * 0"
    description = "vacuum and analyze the store"
    Options = DatabaseVacuumOptions
    timeout_s = 900.0

    async def execute(self, ctx: TaskContext[DatabaseVacuumOptions]) -> TaskResult:
        reply = await ctx.services.ask(topics.STORE_VACUUM, {}, timeout=ctx.options.ask_timeout_s)
        return TaskResult.ok(**reply)


@dataclass(frozen=True)
class HealthCheckOptions(TaskOptions):
    min_free_mb: float = 500.0
    max_lag_ms: float = 100.0
    ask_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        require_option(self.min_free_mb >= 0, "min_free_mb", "MiB >= 0")
        require_option(self.max_lag_ms > 0, "max_lag_ms", "milliseconds > 0")
        require_option(self.ask_timeout_s > 0, "ask_timeout_s", "seconds > 0")


class HealthCheck(BaseTask):
    """Store reachable, bus round trip, free disk under the data directory, event-loop lag.

    Each check is ``{ok, value, limit, unit}`` (plus ``error`` when it could not be made); all
    are published on ``scheduler.health.check`` and are the result's ``checks``. The run fails
    if any check does.
    """

    task_id = "maintenance.health_check"
    default_schedule = "*/5 * * * *"
    description = "store reachable, bus round trip, disk space, event-loop lag"
    Options = HealthCheckOptions
    timeout_s = 60.0

    async def execute(self, ctx: TaskContext[HealthCheckOptions]) -> TaskResult:
        options = ctx.options
        # Statistics of this task alone: an indexed count, cheap whatever the history's size.
        store = {"task_id": ctx.task_id}
        checks = {
            "store": await _round_trip(ctx, topics.STORE_STATS, store, options.ask_timeout_s),
            "bus": await _round_trip(ctx, topics.BUS_STATS, {}, options.ask_timeout_s),
            "disk": await _disk(ctx, options.min_free_mb),
            "loop_lag": _check(ctx.loop_lag_s() * 1000.0, options.max_lag_ms, "ms"),
        }
        failed = [name for name, check in checks.items() if not check["ok"]]
        await ctx.services.publish(
            topics.HEALTH_CHECK_EVENTS,
            {
                "task_id": ctx.task_id,
                "execution_id": ctx.execution_id,
                "ok": not failed,
                "checks": checks,
            },
        )
        if failed:
            return TaskResult.fail(f"health check failed: {', '.join(failed)}", checks=checks)
        return TaskResult.ok(checks=checks)


def _check(value: float, limit: float, unit: str, *, at_least: bool = False) -> dict[str, Any]:
    ok = value >= limit if at_least else value <= limit
    return {"ok": ok, "value": round(value, 3), "limit": limit, "unit": unit}


def _failed(limit: float | None, unit: str, error: BaseException | str) -> dict[str, Any]:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"ok": False, "value": None, "limit": limit, "unit": unit, "error": reason}


async def _round_trip(
    ctx: TaskContext[Any], topic: str, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """The ask's round trip in ms; not ok if it is refused or not answered in ``timeout``."""
    start = ctx.clock.monotonic()
    try:
        await ctx.services.ask(topic, payload, timeout=timeout)
    except Exception as error:  # any failure to answer is the finding, not a crash
        return _failed(None, "ms", error)
    elapsed_ms = (ctx.clock.monotonic() - start) * 1000.0
    return {"ok": True, "value": round(elapsed_ms, 3), "limit": None, "unit": "ms"}


async def _disk(ctx: TaskContext[Any], min_free_mb: float) -> dict[str, Any]:
    if ctx.data_dir is None:
        return _failed(min_free_mb, "MiB", "no data directory was given to check")
    try:
        usage = await ctx.run_in_thread(shutil.disk_usage, ctx.data_dir)
    except OSError as error:
        return _failed(min_free_mb, "MiB", error)
    return _check(usage.free / _MIB, min_free_mb, "MiB", at_least=True)
