"""Task classes of the dependency tests with real processes (imported by name through
``scheduler.task_modules``, not collected)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult


@dataclass(frozen=True)
class WorkOptions(TaskOptions):
    seconds: float = 1.0
    fail: bool = False


class Work(BaseTask):
    """A user task that works ``seconds``, then succeeds, or fails if ``fail``."""

    category = "user"
    Options = WorkOptions

    async def execute(self, ctx: TaskContext[WorkOptions]) -> TaskResult:
        await asyncio.sleep(ctx.options.seconds)
        if ctx.options.fail:
            raise RuntimeError("the work failed on purpose")
        return TaskResult.ok(worked_s=ctx.options.seconds)
