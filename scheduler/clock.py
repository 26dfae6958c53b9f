"""The clock the scheduler is given: wall time for schedule maths, a monotonic clock for sleeping,
and timers on that monotonic clock.

Schedule maths never reads a clock (STYLE item 1): the driver reads its ``Clock`` once per tick and
passes ``now`` down, and it sleeps and sets timers through the same clock. Tests drive a
``FakeClock`` whose wall time can jump back or forward without its monotonic time moving, which is
how clock jumps are simulated, and whose timers fire when ``advance`` moves its monotonic time
past them, so that no test waits real time for a schedule, a backoff or a jitter.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from scheduler._instants import utc
from scheduler.errors import ScheduleError, TimedOut

T = TypeVar("T")


class Timer(Protocol):
    """A callback set to run later; ``cancel`` stops it (a no-op once it ran)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Two readings: ``wall()`` is an aware UTC datetime that may jump (NTP, the user, a VM
    resume); ``monotonic()`` is seconds from an arbitrary origin that never goes backwards.
    ``call_later`` runs a callback once ``delay_s`` seconds have passed on the monotonic clock,
    in the running event loop.

    Fire instants are wall instants; sleeps are measured on the monotonic clock.
    """

    def wall(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer: ...


async def within(clock: Clock, timeout_s: float, work: Awaitable[T]) -> T:
    """``await work``, cancelled once ``timeout_s`` has passed on ``clock``'s monotonic time
    (``TimedOut``, a TimeoutError); a TimeoutError ``work`` raised of its own passes through."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            timer = clock.call_later(timeout_s, lambda: deadline.reschedule(loop.time()))
            try:
                return await work
            finally:
                timer.cancel()
    except TimeoutError as exc:
        if deadline.expired():
            raise TimedOut(timeout_s) from exc
        raise


async def sleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on ``clock``'s monotonic time (cancelling the wait cancels its timer)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    timer = clock.call_later(max(0.0, seconds), wake)
    try:
        await done
    finally:
        timer.cancel()


class SystemClock:
    """The host's clocks: ``datetime.now(UTC)``, ``time.monotonic()`` and the running event
    loop's timers (which run on the same monotonic clock)."""

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay_s), callback)


@dataclass(order=True, slots=True)
class _FakeTimer:
    due: int  # microseconds of the clock's elapsed time
    sequence: int
    callback: Callable[[], object] | None = field(compare=False)

    def cancel(self) -> None:
        self.callback = None


class FakeClock:
    """A clock that moves only when told to: ``advance`` moves both readings (time passing) and
    runs the timers it passes, in order; ``jump`` moves the wall clock alone (someone set the
    clock), which runs no timer.

    The wall reading and the timers count whole microseconds (a datetime's resolution) of the
    time passed, rounded from the sum of what was asked: many small advances reach exactly the
    instant one large advance would, and a timer set for the instant a fire is due runs when the
    wall clock reads that instant (floating-point seconds summed over hundreds of small steps
    land a hair before it, and the fire would wait for the next step).
    """

    def __init__(self, wall: datetime, monotonic: float = 0.0) -> None:
        self._origin = utc("wall", wall)  # the wall reading at monotonic ``_start``, plus jumps
        self._start = float(monotonic)
        self._passed_us = 0.0  # since ``_start``, as the advances asked
        self._timers: list[_FakeTimer] = []
        self._sequence = itertools.count()

    @property
    def _elapsed_us(self) -> int:
        return round(self._passed_us)

    def wall(self) -> datetime:
        return self._origin + timedelta(microseconds=self._elapsed_us)

    def monotonic(self) -> float:
        return self._start + self._passed_us / 1e6

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        due = round(self._passed_us + max(0.0, delay_s) * 1e6)
        timer = _FakeTimer(due, next(self._sequence), callback)
        heapq.heappush(self._timers, timer)
        return timer

    @property
    def next_timer_s(self) -> float | None:
        """Seconds until the earliest pending timer (None: none is pending)."""
        while self._timers and self._timers[0].callback is None:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0, self._timers[0].due - self._elapsed_us) / 1e6

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` (>= 0) pass on both clocks, running each timer due on the way with
        the clocks at its due time."""
        if not seconds >= 0:
            raise ScheduleError(f"a clock advances by 0 seconds or more, not {seconds!r}")
        end = self._passed_us + seconds * 1e6
        while self._timers and self._timers[0].due <= round(end):
            timer = heapq.heappop(self._timers)
            if timer.callback is None:
                continue
            self._passed_us = max(self._passed_us, float(timer.due))
            callback, timer.callback = timer.callback, None
            callback()
        self._passed_us = max(self._passed_us, end)

    def jump(self, seconds: float) -> None:
        """Move the wall clock alone, forward (> 0) or backward (< 0)."""
        self._origin += timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Reading:
    """Both clocks read at the same moment."""

    wall: datetime
    monotonic: float

    @classmethod
    def of(cls, clock: Clock) -> Reading:
        return cls(utc("wall", clock.wall()), clock.monotonic())


def wall_jump_s(before: Reading, after: Reading) -> float:
    """Seconds the wall clock moved beyond the time that passed between two readings.

    0 when the clocks agree, > 0 after a forward jump, < 0 after a backward one. The driver logs
    a jump larger than its tolerance; correctness does not depend on detecting it.
    """
    wall_s = (after.wall - before.wall).total_seconds()
    return wall_s - (after.monotonic - before.monotonic)
