"""Task classes of the durable-run tests with real processes (imported by name through
``scheduler.task_modules``, not collected). Each step leaves a file named after itself and the
process that ran it, so that a test counts, outside any run, how often each really ran."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

IN_STEP = "in-step"  # written (with the pid) once a run is inside its long step
HOLD_LIMIT_S = 120.0  # a step that is never cancelled gives up


@dataclass(frozen=True)
class MarkedOptions(TaskOptions):
    marker_dir: str = ""
    sleep_s: float = 3.0


def mark(directory: str, step: str, note: str = "") -> str:
    """A step's work: a file ``<step>-<pid>`` holding ``note`` (a plain function: it runs in
    the thread pool)."""
    (Path(directory) / f"{step}-{os.getpid()}").write_text(note or step)
    return f"{step} by {os.getpid()}"


class SleepAcrossRestart(BaseTask):
    """A step, a durable sleep of ``sleep_s`` (long enough to suspend), another step."""

    category = "user"
    Options = MarkedOptions

    async def execute(self, ctx: TaskContext[MarkedOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        before = await ctx.step("before", mark, directory, "before")
        await ctx.sleep(timedelta(seconds=ctx.options.sleep_s), name="nap")
        after = await ctx.step("after", mark, directory, "after")
        return TaskResult.ok(steps=[before, after], pid=os.getpid())


class SleepThenApproval(BaseTask):
    """A step, a durable sleep, then waits for ``approve`` and keeps what it said in a step."""

    category = "user"
    Options = MarkedOptions

    async def execute(self, ctx: TaskContext[MarkedOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        await ctx.step("prepare", mark, directory, f"prepare-{ctx.task_id}")
        await ctx.sleep(timedelta(seconds=ctx.options.sleep_s), name="nap")
        approval: Any = await ctx.wait_signal("approve")
        await ctx.step("done", mark, directory, f"done-{ctx.task_id}", repr(approval))
        return TaskResult.ok(approval=approval, pid=os.getpid())


class StuckInStep(BaseTask):
    """A step that waits far longer than any test: only a cancel ends it early."""

    category = "user"
    Options = MarkedOptions

    async def execute(self, ctx: TaskContext[MarkedOptions]) -> TaskResult:
        directory = ctx.options.marker_dir

        async def hold() -> str:
            (Path(directory) / f"{IN_STEP}-{os.getpid()}").touch()
            await asyncio.sleep(HOLD_LIMIT_S)
            return "never cancelled"

        await ctx.step("hold", hold)
        return TaskResult.ok()
