"""Task classes of the executor's durable-run tests (not collected): a run that sleeps between
two steps, one that waits for a signal, one held in a step until it is cancelled. ``CALLS``
counts, outside any run, how often each step really ran (``hold``: once a run is inside its held
step)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult

CALLS: Counter[str] = Counter()


def reset() -> None:
    CALLS.clear()


async def counted(name: str) -> str:
    CALLS[name] += 1
    return name


@dataclass(frozen=True)
class NapOptions(TaskOptions):
    nap_s: float = 3600.0


class Napping(BaseTask):
    """A step, a durable sleep of ``nap_s``, another step."""

    category = "user"
    Options = NapOptions

    async def execute(self, ctx: TaskContext[NapOptions]) -> TaskResult:
        before = await ctx.step("before", counted, "before")
        await ctx.sleep(ctx.options.nap_s, name="nap")
        after = await ctx.step("after", counted, "after")
        return TaskResult.ok(steps=[before, after])


class Approval(BaseTask):
    """Waits for the signal ``approve`` and returns what it said."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        CALLS["waiting"] += 1
        approval = await ctx.wait_signal("approve")
        return TaskResult.ok(approval=approval)


class Held(BaseTask):
    """A step that never ends by itself: only a cancel ends the run."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        async def hold() -> str:
            CALLS["hold"] += 1
            await asyncio.Event().wait()
            return "never"

        await ctx.step("hold", hold)
        return TaskResult.ok()
