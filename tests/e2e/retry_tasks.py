"""Task classes of the ``run retry`` test with real processes (imported by name through
``scheduler.task_modules``, not collected). Each step writes a file named after itself, the run
and the attempt that ran it, so a test counts, outside any run, which steps really ran."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

FIXED = "fixed"  # step three succeeds once this file exists in the marker directory
RELEASE = "release"  # a held run ends once this exists
HOLD_LIMIT_S = 120.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetryOptions(TaskOptions):
    marker_dir: str = ""


def mark(directory: str, step: str, ctx: TaskContext[Any]) -> str:
    """A step's work: a file ``<step>-<run>-<attempt>`` (a plain function: the thread pool)."""
    micros = (ctx.scheduled_at - EPOCH) // timedelta(microseconds=1)
    (Path(directory) / f"{step}-{micros}-{ctx.attempt}").write_text(step)
    return f"{step} at attempt {ctx.attempt}"


def third(directory: str, ctx: TaskContext[Any]) -> str:
    if not (Path(directory) / FIXED).exists():
        raise RuntimeError("step three cannot work yet")
    return mark(directory, "three", ctx)


class ThreeStepsThirdFails(BaseTask):
    """Steps one, two and three; three fails until the test writes ``fixed``."""

    category = "user"
    Options = RetryOptions

    async def execute(self, ctx: TaskContext[RetryOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        one = await ctx.step("one", mark, directory, "one", ctx)
        two = await ctx.step("two", mark, directory, "two", ctx)
        three = await ctx.step("three", third, directory, ctx)
        return TaskResult.ok(steps=[one, two, three])


class Held(BaseTask):
    """One step, then holds until the test's ``release``: a run that has not ended."""

    category = "user"
    Options = RetryOptions

    async def execute(self, ctx: TaskContext[RetryOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        await ctx.step("held", mark, directory, "held", ctx)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT_S
        while not (Path(directory) / RELEASE).exists():
            if loop.time() > deadline:
                return TaskResult.fail("never released")
            await asyncio.sleep(0.05)
        return TaskResult.ok()
