"""Task classes that run in steps, for the step tests (not collected). ``CALLS`` counts, outside
any run, how many times each step really ran; ``ATTEMPTS`` how many times each task's run began."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult

CALLS: Counter[str] = Counter()
ATTEMPTS: Counter[str] = Counter()


def reset() -> None:
    CALLS.clear()
    ATTEMPTS.clear()


async def counted(name: str, value: Any) -> Any:
    CALLS[name] += 1
    return value


async def store_once_failing() -> str:
    """Fails the first time it runs, succeeds the next."""
    CALLS["store"] += 1
    if CALLS["store"] == 1:
        raise OSError("disk full")
    return "stored"


class ThreeSteps(BaseTask):
    """collect, summarise, store; store fails the first time."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        ATTEMPTS["three"] += 1
        rows = await ctx.step("collect", counted, "collect", [1, 2, 3])
        total = await ctx.step("summarise", counted, "summarise", sum(rows))
        stored = await ctx.step("store", store_once_failing)
        return TaskResult.ok(total=total, stored=stored)


async def page(n: int) -> int:
    CALLS[f"page[{n}]"] += 1
    await asyncio.sleep(0.001 * (3 - n))  # finish in reverse order
    if n == 1 and CALLS["page[1]"] == 1:
        raise OSError("page 1 timed out")
    return n * 10


class Pages(BaseTask):
    """Three pages fetched at once; page 1 fails the first time."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        ATTEMPTS["pages"] += 1
        order = [0, 1, 2] if ATTEMPTS["pages"] == 1 else [2, 1, 0]
        found = await asyncio.gather(*(ctx.step("page", page, n, key=n) for n in order))
        return TaskResult.ok(pages=dict(zip((str(n) for n in order), found, strict=True)))


class Changing(BaseTask):
    """Its first run asks for steps a and b and fails; the next (its code "changed") asks for a
    and c only."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        ATTEMPTS["changing"] += 1
        await ctx.step("a", counted, "a", 1)
        if ATTEMPTS["changing"] == 1:
            await ctx.step("b", counted, "b", 2)
            raise OSError("first run fails after b")
        await ctx.step("c", counted, "c", 3)
        return TaskResult.ok()
