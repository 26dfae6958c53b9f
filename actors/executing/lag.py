"""Event-loop lag: how late a timer fires. Above the limit the executor starts nothing new and
health turns degraded, until it recovers: a task that blocks the loop shows up here."""

from __future__ import annotations

import asyncio
import time

LAG_LIMIT_S = 0.1


class LagMonitor:
    def __init__(self, interval_s: float = 0.05, limit_s: float = LAG_LIMIT_S) -> None:
        self.interval_s = interval_s
        self.limit_s = limit_s
        self.lag_s = 0.0
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def lagging(self) -> bool:
        return self.lag_s > self.limit_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, time.monotonic() - before - self.interval_s)
            self.worst_s = max(self.worst_s, self.lag_s)
