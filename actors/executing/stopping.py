"""When a run's code is stopped: once its timeout has passed, or a grace period after its run
was cancelled (``scheduler.run.cancel``) if it has not ended by itself.

The attempt's code runs in a task of its own, watched by one alarm: the task ending, the timeout
timer, the run's cancel event (:class:`CancelEvent`, which rings it as it is set) and the grace
timer each ring it. Nothing else waits per run (no task on the event, no timeout scope): a burst
of thousands of short runs costs one task each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from scheduler import Clock, Timer
from scheduler.errors import TimedOut
from tasks.errors import RunCancelled

T = TypeVar("T")
CANCEL_GRACE_S = 1.0  # a cancelled run's code may end by itself this long before it is stopped


class CancelEvent(asyncio.Event):
    """A run's ``cancelled`` event (``TaskContext.cancelled``) that also calls ``on_set`` when
    it is set: how the watch of its attempt learns of a cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.on_set: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        if self.on_set is not None:
            self.on_set()


class Cancellable(Protocol):
    """What the watch reads of a run's context (``tasks.context.TaskContext``)."""

    @property
    def run_cancelled(self) -> bool: ...

    @property
    def cancel_reason(self) -> str: ...


class _Alarm:
    """Rung by whatever may end the wait; a ring before ``wait`` is not lost."""

    __slots__ = ("_future", "_rung", "expired", "graced")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._rung = False
        self.expired = False  # the timeout passed
        self.graced = False  # the grace after a cancel of the run passed

    def ring(self, *_: object) -> None:
        self._rung = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def expire(self) -> None:
        self.expired = True
        self.ring()

    def grace_over(self) -> None:
        self.graced = True
        self.ring()

    async def wait(self) -> None:
        if not self._rung:
            self._future = asyncio.get_running_loop().create_future()
            try:
                await self._future
            finally:
                self._future = None
        self._rung = False


async def watched(
    clock: Clock,
    context: Cancellable,
    cancelled: CancelEvent,
    work: Coroutine[Any, Any, T],
    timeout_s: float,
) -> T:
    """``await work``, stopped (cancelled, and awaited) once ``timeout_s`` has passed on
    ``clock``'s monotonic time (``TimedOut``, a TimeoutError; one that ``work`` raised of its
    own passes through), or once its run was cancelled (``context.run_cancelled``, which sets
    ``cancelled``) and it has not ended ``CANCEL_GRACE_S`` later (RunCancelled): a plain task that
    never looks at its context stops too. Cancelling the caller cancels ``work`` and waits for
    it (a shutdown asks, never forces)."""
    running = asyncio.ensure_future(work)
    alarm = _Alarm()
    running.add_done_callback(alarm.ring)
    cancelled.on_set = alarm.ring
    deadline = clock.call_later(timeout_s, alarm.expire)
    grace: Timer | None = None
    try:
        while not running.done():
            await alarm.wait()
            if alarm.expired or alarm.graced:
                break
            if grace is None and context.run_cancelled:
                grace = clock.call_later(CANCEL_GRACE_S, alarm.grace_over)
        if running.done():
            return running.result()
        await _stop(running)
        if alarm.expired:
            raise TimedOut(timeout_s)
        raise RunCancelled(context.cancel_reason)
    finally:
        cancelled.on_set = None
        deadline.cancel()
        if grace is not None:
            grace.cancel()
        if not running.done():
            await _stop(running)


async def _stop(running: asyncio.Future[Any]) -> None:
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
