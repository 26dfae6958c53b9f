"""Task classes of the shutdown tests (imported by name through ``scheduler.task_modules``, not
collected)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

STARTED = "started"  # the file a Sleeper run writes once it runs


@dataclass(frozen=True)
class SleeperOptions(TaskOptions):
    marker_dir: str = ""
    seconds: float = 3.0


class Sleeper(BaseTask):
    """A user task that says it started, then runs for ``options.seconds``."""

    category = "user"
    Options = SleeperOptions

    async def execute(self, ctx: TaskContext[SleeperOptions]) -> TaskResult:
        (Path(ctx.options.marker_dir) / STARTED).write_text(ctx.execution_id)
        await asyncio.sleep(ctx.options.seconds)
        return TaskResult.ok(slept_s=ctx.options.seconds)
