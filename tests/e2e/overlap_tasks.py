"""Task classes of the end-to-end overlap and concurrency tests (imported by name through
``scheduler.task_modules``, not collected): each run appends one line to a stamps file when it
ends, with when it started and ended and which process ran it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult


@dataclass(frozen=True)
class StampOptions(TaskOptions):
    stamps: str = ""  # the file the run's line is appended to
    seconds: float = 1.0  # how long the run takes
    account: str = ""  # a concurrency key's option


class Stamp(BaseTask):
    """A user task that takes ``seconds`` (a plain sleep) and appends
    ``{task_id, scheduled_at, pid, start, end}`` (wall-clock seconds) to ``stamps`` as it
    ends, in one write."""

    category = "user"
    Options = StampOptions

    async def execute(self, ctx: TaskContext[StampOptions]) -> TaskResult:
        start = time.time()
        await asyncio.sleep(ctx.options.seconds)
        line = {
            "task_id": ctx.task_id,
            "scheduled_at": ctx.scheduled_at.isoformat(),
            "pid": os.getpid(),
            "start": start,
            "end": time.time(),
        }
        descriptor = os.open(ctx.options.stamps, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (json.dumps(line) + "\n").encode())
        finally:
            os.close(descriptor)
        return TaskResult.ok()


def read_stamps(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
