"""When a run's code is stopped (actors.executing.stopping): its timeout, the cancel of its run
after a grace period, the caller's cancellation; otherwise what it returns or raises."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.executing.stopping import CANCEL_GRACE_S, CancelEvent, watched
from scheduler import FakeClock
from scheduler.errors import TimedOut
from tasks import TaskContext
from tasks.errors import RunCancelled
from tests.tasks.kit import SCHEDULED_AT, make_context

TIMEOUT_S = 30.0


class Work:
    """A run's code: ends when told (``finish``), records how it ended."""

    def __init__(self) -> None:
        self.began = asyncio.Event()
        self.finish: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.cancelled = False
        self.ended = False

    async def __call__(self) -> str:
        self.began.set()
        try:
            return await self.finish
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.ended = True


async def _watching(
    timeout_s: float = TIMEOUT_S,
) -> tuple[FakeClock, Work, TaskContext[Any], asyncio.Task[str]]:
    """A run's code under ``watched`` on a fake clock, once the code has begun: the clock, the
    code, its context and the watch."""
    clock = FakeClock(SCHEDULED_AT)
    work = Work()
    cancelled = CancelEvent()
    context = make_context(clock=clock, cancelled=cancelled)
    watch = asyncio.create_task(watched(clock, context, cancelled, work(), timeout_s))
    await work.began.wait()
    return clock, work, context, watch


async def _settle() -> None:
    for _ in range(5):  # the watch, the work, their callbacks
        await asyncio.sleep(0)


async def test_what_the_work_returns_is_returned_and_its_timers_are_gone() -> None:
    clock, work, _, watch = await _watching()
    work.finish.set_result("done")
    assert await asyncio.wait_for(watch, 5) == "done"
    assert clock.next_timer_s is None


async def test_what_the_work_raises_passes_through_a_timeout_error_of_its_own_too() -> None:
    _, work, _, watch = await _watching()
    work.finish.set_exception(TimeoutError("its own"))
    with pytest.raises(TimeoutError, match="its own") as caught:
        await asyncio.wait_for(watch, 5)
    assert not isinstance(caught.value, TimedOut)


async def test_past_its_timeout_the_work_is_cancelled_and_awaited_then_timed_out() -> None:
    clock, work, _, watch = await _watching()
    clock.advance(TIMEOUT_S - 1)
    await _settle()
    assert not watch.done()
    clock.advance(1)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(watch, 5)
    assert work.cancelled
    assert work.ended


async def test_a_cancelled_run_may_end_by_itself_within_the_grace() -> None:
    clock, work, context, watch = await _watching()
    context.cancel_run("by the owner")
    await _settle()
    assert clock.next_timer_s == CANCEL_GRACE_S
    work.finish.set_result("stopped by itself")
    assert await asyncio.wait_for(watch, 5) == "stopped by itself"
    assert not work.cancelled
    assert clock.next_timer_s is None


async def test_a_cancelled_run_that_goes_on_is_stopped_after_the_grace() -> None:
    clock, work, context, watch = await _watching()
    context.cancel_run("by the owner")
    await _settle()
    clock.advance(CANCEL_GRACE_S / 2)
    await _settle()
    assert not watch.done()
    clock.advance(CANCEL_GRACE_S / 2)
    with pytest.raises(RunCancelled, match="by the owner"):
        await asyncio.wait_for(watch, 5)
    assert work.cancelled
    assert work.ended


async def test_the_timeout_still_holds_during_the_grace() -> None:
    clock, _, context, watch = await _watching(timeout_s=CANCEL_GRACE_S / 2)
    context.cancel_run("by the owner")
    await _settle()
    clock.advance(CANCEL_GRACE_S / 2)
    with pytest.raises(TimedOut):
        await asyncio.wait_for(watch, 5)


async def test_a_cancel_of_the_attempt_alone_waits_for_the_work() -> None:
    clock, work, context, watch = await _watching()
    context.cancel("shutdown")  # asks the code to stop; the run itself is not cancelled
    await _settle()
    clock.advance(CANCEL_GRACE_S * 2)
    await _settle()
    assert not watch.done()
    assert not work.cancelled
    work.finish.set_result("saw it")
    assert await asyncio.wait_for(watch, 5) == "saw it"


async def test_cancelling_the_caller_cancels_the_work_and_waits_for_it() -> None:
    clock, work, _, watch = await _watching()
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert work.cancelled
    assert work.ended
    assert clock.next_timer_s is None
