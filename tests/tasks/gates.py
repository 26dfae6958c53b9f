"""User task classes the executor tests drive (not collected): each run announces itself and
waits at a gate the test opens, or fails, or never ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult


@dataclass
class Gates:
    """Runs in progress and the gate they wait at; one per test (``reset``)."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    running: set[str] = field(default_factory=set)
    most_at_once: int = 0
    started: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self, execution_id: str) -> None:
        self.running.add(execution_id)
        self.started.append(execution_id)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.changed.set()

    def leave(self, execution_id: str) -> None:
        self.running.discard(execution_id)
        self.changed.set()

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


GATES = Gates()


class Gated(BaseTask):
    """Holds until the test opens the gate."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        GATES.enter(ctx.execution_id)
        try:
            await GATES.opened.wait()
        finally:
            GATES.leave(ctx.execution_id)
        return TaskResult.ok(attempt=ctx.attempt)


class Forever(BaseTask):
    """Never ends by itself: only its timeout stops it."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        GATES.enter(ctx.execution_id)
        try:
            await asyncio.Event().wait()
        finally:
            GATES.leave(ctx.execution_id)
        return TaskResult.ok()


class IdleWork(BaseTask):
    """An idle-only user task."""

    category = "user"
    idle_only = True

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        GATES.enter(ctx.execution_id)
        GATES.leave(ctx.execution_id)
        return TaskResult.ok()
