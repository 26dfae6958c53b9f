"""Task classes of the end-to-end crash tests (imported by name through
``scheduler.task_modules``, not collected): each run says which process ran it."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

RELEASE = "release"  # the file whose existence lets a Held run finish
HOLD_LIMIT_S = 120.0  # a Held run never released gives up (fails) after this long


class Pid(BaseTask):
    """A user task: its result is the pid of the executor process that ran it."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok(pid=os.getpid())


class Probe(BaseTask):
    """A code-defined task of a second category: the pid of the process that ran it."""

    task_id = "maintenance.crash_probe"
    default_schedule = "@yearly"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok(pid=os.getpid())


@dataclass(frozen=True)
class HeldOptions(TaskOptions):
    marker_dir: str = ""


class Held(BaseTask):
    """A user task that says it started, then holds until released.

    Each start writes a new file ``start-<pid>-<uuid>`` in ``options.marker_dir``; the run then
    waits for ``<marker_dir>/release`` to exist and returns its pid. The test counts the starts.
    """

    category = "user"
    Options = HeldOptions

    async def execute(self, ctx: TaskContext[HeldOptions]) -> TaskResult:
        directory = Path(ctx.options.marker_dir)
        marker = directory / f"start-{os.getpid()}-{uuid.uuid4().hex}"
        marker.write_text(f"{ctx.execution_id} {ctx.attempt}\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT_S
        while not (directory / RELEASE).exists():
            if loop.time() > deadline:
                return TaskResult.fail("never released")
            await asyncio.sleep(0.02)
        return TaskResult.ok(pid=os.getpid())
