"""Task classes of the step tests with real processes (imported by name through
``scheduler.task_modules``, not collected). Each step writes a file named after itself and the
process that ran it, so a test counts, outside any run, how many times each step really ran."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

AFTER_TWO = "after-two"  # written (with the pid) once steps one and two are done
RELEASE = "release"  # the run goes on to step three once this exists
HOLD_LIMIT_S = 120.0  # a run never released gives up


@dataclass(frozen=True)
class StepsOptions(TaskOptions):
    marker_dir: str = ""


def mark(directory: str, step: str) -> str:
    """A step's work: a file ``<step>-<pid>`` (a plain function: it runs in the thread pool)."""
    (Path(directory) / f"{step}-{os.getpid()}").write_text(step)
    return f"{step} by {os.getpid()}"


class ThreeSteps(BaseTask):
    """Steps one and two, then waits for the test's release, then step three."""

    category = "user"
    Options = StepsOptions

    async def execute(self, ctx: TaskContext[StepsOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        one = await ctx.step("one", mark, directory, "one")
        two = await ctx.step("two", mark, directory, "two")
        (Path(directory) / f"{AFTER_TWO}-{os.getpid()}").touch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT_S
        while not (Path(directory) / RELEASE).exists():
            if loop.time() > deadline:
                return TaskResult.fail("never released")
            await asyncio.sleep(0.05)
        three = await ctx.step("three", mark, directory, "three")
        return TaskResult.ok(steps=[one, two, three], pid=os.getpid())


class GatheredSteps(BaseTask):
    """Three steps awaited together: ``a`` and ``b`` finish at once, ``c`` waits for the test's
    release, so a kill lands while ``c`` runs; a re-run asks for them in the reverse order."""

    category = "user"
    Options = StepsOptions

    async def execute(self, ctx: TaskContext[StepsOptions]) -> TaskResult:
        directory = ctx.options.marker_dir

        async def held(name: str) -> str:
            (Path(directory) / f"{AFTER_TWO}-{os.getpid()}").touch()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HOLD_LIMIT_S
            while not (Path(directory) / RELEASE).exists():
                if loop.time() > deadline:
                    raise TimeoutError("never released")
                await asyncio.sleep(0.05)
            return mark(directory, name)

        async def quick(name: str) -> str:
            return mark(directory, name)

        names = ["c", "b", "a"] if _ran_before(directory) else ["a", "b", "c"]
        work = {"a": quick, "b": quick, "c": held}

        async def one(name: str) -> str:
            if name == "c":  # c starts once a and b are kept, so the kill finds them stored
                await ctx.step("a", quick, "a")
                await ctx.step("b", quick, "b")
            return str(await ctx.step(name, work[name], name))

        results = await asyncio.gather(*(one(name) for name in names))
        return TaskResult.ok(order=names, steps=sorted(results), pid=os.getpid())


def _ran_before(directory: str) -> bool:
    """Whether an earlier process already started this run (it left its marker)."""
    return any(Path(directory).glob(f"{AFTER_TWO}-*"))
