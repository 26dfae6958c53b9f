"""Task classes of the history tests (imported by name through ``scheduler.task_modules``, not
collected)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult


@dataclass(frozen=True)
class NapOptions(TaskOptions):
    seconds: float = 1.0
    lines: int = 2


class Nap(BaseTask):
    """A user task that logs ``lines`` lines through ``ctx.log``, then sleeps ``seconds``."""

    category = "user"
    Options = NapOptions

    async def execute(self, ctx: TaskContext[NapOptions]) -> TaskResult:
        for step in range(1, ctx.options.lines + 1):
            ctx.log.info("step %d of %d", step, ctx.options.lines)
        await asyncio.sleep(ctx.options.seconds)
        return TaskResult.ok(slept_s=ctx.options.seconds)
