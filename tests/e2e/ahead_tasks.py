"""The task class of the fire-ahead test (imported by name through ``scheduler.task_modules``,
not collected): each run notes when its code began, against the instant it was due."""

from __future__ import annotations

import time
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult

BEGAN: dict[str, tuple[float, float]] = {}  # task id -> (wall time the code began, its instant)


class Stamp(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        BEGAN[ctx.task_id] = (time.time(), ctx.scheduled_at.timestamp())
        return TaskResult.ok()
