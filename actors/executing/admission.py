"""Admission: when a dispatched run may start, and the slots it holds while it runs.

A start waits, deferred and never dropped, while the category or the global limit is full, the
same task is still running (unless it allows overlap), the machine is above the resource
thresholds, the event loop lags, or (idle-only tasks) the machine is not idle. Each new reason to
wait is announced once. A run ending wakes the waiting starts at once; load, lag and idleness,
which nothing announces, are looked at again every ``recheck_s`` on the executor's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from actors.executing.lag import LagMonitor
from actors.executing.resources import ResourceProbe, idle, overloaded
from actors.scheduling.protocol import Dispatch
from config.sections import ResourceSettings
from scheduler import Clock
from tasks.base import BaseTask

MAX_RECHECK_S = 1.0
Deferred = Callable[[str], Awaitable[None]]  # told each new reason a start waits


class Admission:
    """The category's slots (``limit``), the process-wide ones (``global_slots``, shared by the
    executors of one process) and which tasks run here."""

    def __init__(
        self,
        *,
        limit: int,
        global_slots: asyncio.Semaphore,
        probe: ResourceProbe,
        resources: ResourceSettings,
        lag: LagMonitor,
        clock: Clock,
    ) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._global = global_slots
        self._probe = probe
        self._resources = resources
        self._lag = lag
        self._clock = clock
        self.recheck_s = min(MAX_RECHECK_S, resources.check_interval_s)
        self.running: dict[str, int] = {}  # task id -> runs in progress here
        self._waiting: set[asyncio.Future[None]] = set()

    def idle(self) -> bool:
        return idle(self._probe.load(), self._resources)

    async def admit(
        self, dispatch: Dispatch, task_class: type[BaseTask], deferred: Deferred
    ) -> None:
        """Return once the run may start, holding its slots (``release`` gives them back)."""
        announced = ""
        while True:
            reason = self.wait_reason(dispatch, task_class)
            if reason is None and not self._slots.locked() and not self._global.locked():
                await self._slots.acquire()  # neither waits: both were free
                await self._global.acquire()
                self.running[dispatch.task_id] = self.running.get(dispatch.task_id, 0) + 1
                return
            reason = reason or "concurrency limit reached"
            if reason != announced:
                announced = reason
                await deferred(reason)
            await self._until_change()

    def wait_reason(self, dispatch: Dispatch, task_class: type[BaseTask]) -> str | None:
        """Why the run may not start now (None: it may, if a slot is free)."""
        if not dispatch.allow_overlap and self.running.get(dispatch.task_id):
            return "the previous run of this task is still running"
        if self._lag.lagging:
            return f"event loop lags {self._lag.lag_s * 1000:.0f} ms"
        load = self._probe.load()
        busy = overloaded(load, self._resources)
        if busy is not None:
            return busy
        if task_class.idle_only and not idle(load, self._resources):
            return "waiting for the system to be idle"
        return None

    def release(self, dispatch: Dispatch) -> None:
        """The run ended: its slots are free, and every waiting start looks again."""
        self.running[dispatch.task_id] -= 1
        if not self.running[dispatch.task_id]:
            del self.running[dispatch.task_id]
        self._slots.release()
        self._global.release()
        for waiting in self._waiting:
            if not waiting.done():
                waiting.set_result(None)

    async def _until_change(self) -> None:
        """Until a run ends here, or ``recheck_s`` has passed."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        self._waiting.add(woken)
        timer = self._clock.call_later(self.recheck_s, wake)
        try:
            await woken
        finally:
            timer.cancel()
            self._waiting.discard(woken)
