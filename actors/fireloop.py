"""The timing engine's driver: sleeps precisely until the next due fire, in the host's loop.

``scheduler.TimingEngine`` decides what is due and how long to sleep; this runs it on an asyncio
event loop with the clock it is given. It reads the clock once per wake, hands each tick's plans to
a callback, and sleeps on a timer of that clock (monotonic) until the next fire, or until a task is
added, changed or removed: no polling.

With ``lead_s``, it wakes that long before a fire and hands over the fires due within it too
(planned ahead, on time): the scheduler records them durably first and dispatches each at its
instant, so the record's commit is not in the fire's latency.

Each wake also compares the wall clock with the time that passed (``scheduler.wall_jump_s``): a
wall clock that jumped by more than ``JUMP_TOLERANCE_S`` since the last wake (NTP, the user, a VM
resume) is logged and counted (``jumps``), and the wake's tick re-plans from the new wall time: the
fires a forward jump passed over go through their misfire policies, and after a backward jump no
fire runs twice (the engine's last-fire guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from scheduler import (
    Clock,
    MisfirePolicy,
    Reading,
    SystemClock,
    TaskPlan,
    TimingEngine,
    wall_jump_s,
)
from scheduler.misfire import FireTimes

log = logging.getLogger("taskbus.fireloop")

JUMP_TOLERANCE_S = 1.0  # a wall clock that moved this much more (or less) than time passed jumped

PlansHandler = Callable[[list[TaskPlan], datetime], Awaitable[None]]


class FireLoop:
    def __init__(
        self,
        on_plans: PlansHandler,
        *,
        clock: Clock | None = None,
        engine: TimingEngine | None = None,
        lead_s: float = 0.0,
    ) -> None:
        self._on_plans = on_plans
        self._lead = timedelta(seconds=lead_s)
        self._clock = clock or SystemClock()
        self.engine = engine if engine is not None else TimingEngine()  # an empty one is falsy
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[TaskPlan] = []  # due fires ticked by a change, for the loop to run
        self.wakes = 0
        self.jumps = 0  # wall-clock jumps noticed

    def put(
        self,
        task_id: str,
        fires: FireTimes,
        policy: MisfirePolicy,
        *,
        last_fired: datetime | None = None,
    ) -> datetime | None:
        """Add or change a task and wake the loop; returns its next fire."""
        self._drain_due()
        next_fire = self.engine.put(
            task_id, fires, policy, self._clock.wall(), last_fired=last_fired
        )
        self._wake()
        return next_fire

    def remove(self, task_id: str) -> bool:
        removed = self.engine.remove(task_id)
        self._wake()
        return removed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fireloop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def done(self) -> asyncio.Task[None] | None:
        """The loop's task: a supervisor awaits it to notice that the loop died."""
        return self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock
        previous = Reading.of(clock)
        while True:
            reading = Reading.of(clock)
            self._notice_jump(previous, reading)
            previous = reading
            now = reading.wall
            plans = [*self._pending, *self.engine.tick(now, ahead_s=self._lead.total_seconds())]
            self._pending = []
            if plans:
                await self._on_plans(plans, now)
                continue  # the handler took time: re-read the clock before sleeping
            # until lead_s before the next fire (at most the engine's cap)
            delay = self.engine.sleep_s(self._clock.wall() + self._lead)
            waiter = self._waiter = loop.create_future()
            timer = (
                None if delay is None else clock.call_later(delay, functools.partial(_wake, waiter))
            )
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._waiter = None
            self.wakes += 1

    def _notice_jump(self, before: Reading, after: Reading) -> None:
        jump_s = wall_jump_s(before, after)
        if abs(jump_s) > JUMP_TOLERANCE_S:
            self.jumps += 1
            log.warning(
                "wall clock jumped %+.3fs; fires re-planned from %s",
                jump_s,
                after.wall.isoformat(timespec="seconds"),
            )

    def _drain_due(self) -> None:
        """Tick before a change (the engine's rule), keeping what was due for the loop."""
        if self._task is not None:
            self._pending.extend(self.engine.tick(self._clock.wall()))

    def _wake(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
