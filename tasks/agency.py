"""Built-in agency task: the idle-time, off-the-loop pattern on our own data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from config import topics
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.digest import summarise
from tasks.options import TaskOptions, require_option
from tasks.result import TaskResult


@dataclass(frozen=True)
class DailyDigestOptions(TaskOptions):
    window_h: float = 24.0
    top: int = 5
    failures_per_task: int = 10
    ask_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        require_option(0 < self.window_h <= 24 * 366, "window_h", "hours in (0, 8784]")
        require_option(1 <= self.top <= 50, "top", "an integer from 1 to 50")
        require_option(
            1 <= self.failures_per_task <= 1000, "failures_per_task", "an integer from 1 to 1000"
        )
        require_option(self.ask_timeout_s > 0, "ask_timeout_s", "seconds > 0")


class DailyDigest(BaseTask):
    """Summarises the last ``window_h`` hours of executions (``store.stats`` and the recent
    failures of the most failing tasks) into a digest, computed in the process pool; the digest
    is the run's result, stored with the execution. Idle-only, as every agency task by default.
    """

    task_id = "agency.daily_digest"
    default_schedule = "30 23 * * *"
    description = "the last day's runs, slowest and failing tasks, as a stored digest"
    Options = DailyDigestOptions
    timeout_s = 300.0

    async def execute(self, ctx: TaskContext[DailyDigestOptions]) -> TaskResult:
        options = ctx.options
        until = ctx.scheduled_at.astimezone(UTC)
        since = until - timedelta(hours=options.window_h)
        stats = await ctx.services.ask(
            topics.STORE_STATS, {"since": since.isoformat()}, timeout=options.ask_timeout_s
        )
        failing = sorted(
            (task for task in stats.get("tasks") or [] if task.get("failed")),
            key=lambda task: (-task["failed"], task["task_id"]),
        )[: options.top]
        executions: list[dict[str, Any]] = []
        for done, task in enumerate(failing, start=1):
            ctx.check_cancelled()
            page = await ctx.services.ask(
                topics.STORE_EXECUTION_HISTORY,
                {"task_id": task["task_id"], "limit": options.failures_per_task},
                timeout=options.ask_timeout_s,
            )
            executions.extend(page.get("executions") or [])
            await ctx.progress(0.8 * done / len(failing), f"history of {task['task_id']}")
        ctx.check_cancelled()
        digest = await ctx.run_in_process(
            summarise, stats, executions, since.isoformat(), until.isoformat(), options.top
        )
        return TaskResult.ok(**digest)
