"""The clock's timers: a FakeClock runs them as ``advance`` passes them, with the clocks at their
due time; a jump runs none; ``sleep`` waits on the clock it is given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scheduler import FakeClock, ScheduleError, SystemClock, sleep, within
from scheduler.errors import TimedOut

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_advance_runs_the_timers_it_passes_in_order_with_the_clock_at_their_due_time() -> None:
    clock = FakeClock(T0, monotonic=10.0)
    seen: list[tuple[str, float, datetime]] = []

    def note(name: str) -> None:
        seen.append((name, clock.monotonic(), clock.wall()))

    clock.call_later(5, lambda: note("b"))
    clock.call_later(2, lambda: note("a"))
    later = clock.call_later(30, lambda: note("never"))
    clock.call_later(5, lambda: note("b2"))  # same due time: in the order they were set
    assert clock.next_timer_s == 2
    clock.advance(10)
    assert seen == [
        ("a", 12.0, T0 + timedelta(seconds=2)),
        ("b", 15.0, T0 + timedelta(seconds=5)),
        ("b2", 15.0, T0 + timedelta(seconds=5)),
    ]
    assert (clock.monotonic(), clock.wall()) == (20.0, T0 + timedelta(seconds=10))
    later.cancel()
    assert clock.next_timer_s is None
    clock.advance(100)
    assert [name for name, *_ in seen] == ["a", "b", "b2"]


def test_a_timer_set_by_a_timer_runs_in_the_same_advance_if_it_is_due() -> None:
    clock = FakeClock(T0)
    seen: list[float] = []
    clock.call_later(1, lambda: clock.call_later(1, lambda: seen.append(clock.monotonic())))
    clock.advance(5)
    assert seen == [2.0]


def test_a_jump_moves_the_wall_clock_alone_and_runs_no_timer() -> None:
    clock = FakeClock(T0)
    seen: list[str] = []
    clock.call_later(1, lambda: seen.append("ran"))
    clock.jump(3600)
    assert (seen, clock.monotonic(), clock.wall()) == ([], 0.0, T0 + timedelta(hours=1))
    clock.advance(1)
    assert seen == ["ran"]
    assert clock.wall() == T0 + timedelta(hours=1, seconds=1)


def test_a_clock_never_goes_back() -> None:
    with pytest.raises(ScheduleError, match="advances by 0 seconds or more"):
        FakeClock(T0).advance(-1)


async def test_sleep_waits_on_the_fake_clock_and_cancelling_it_cancels_its_timer() -> None:
    clock = FakeClock(T0)
    sleeper = asyncio.create_task(sleep(clock, 30))
    await asyncio.sleep(0)  # let it set its timer
    assert clock.next_timer_s == 30
    clock.advance(29)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(1)
    await asyncio.wait_for(sleeper, 1)
    cancelled = asyncio.create_task(sleep(clock, 5))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert clock.next_timer_s is None


async def test_the_system_clock_sleeps_on_the_event_loop() -> None:
    clock, seen = SystemClock(), asyncio.Event()
    clock.call_later(0.01, seen.set)
    await asyncio.wait_for(sleep(clock, 0.01), 5)
    await asyncio.wait_for(seen.wait(), 5)


def test_many_small_advances_reach_a_timer_due_at_a_whole_instant() -> None:
    """A hundred steps of a tenth of a second sum to a hair under 10 s in floating point; the timer
    set for 10 s runs all the same, with the wall clock reading exactly 10 s later (a fire due
    then must not wait for the next step)."""
    clock = FakeClock(T0, monotonic=1322.7)
    fired: list[datetime] = []
    clock.call_later(10.0, lambda: fired.append(clock.wall()))
    total = 0.0
    for _ in range(100):
        clock.advance(0.1)
        total += 0.1
    assert total < 10.0  # the trap this guards against
    assert fired == [T0 + timedelta(seconds=10)]
    assert clock.wall() == T0 + timedelta(seconds=10)


async def test_within_says_whose_timeout_it_was() -> None:
    """The clock's deadline is ``TimedOut``; a TimeoutError the work raised of its own is not."""
    clock = FakeClock(T0)
    never = asyncio.Event()
    waiting = asyncio.ensure_future(within(clock, 5.0, never.wait()))
    await asyncio.sleep(0)
    clock.advance(5.0)
    with pytest.raises(TimedOut) as expired:
        await waiting
    assert (expired.value.timeout_s, str(expired.value)) == (5.0, "timed out after 5s")

    async def gives_up() -> None:
        raise TimeoutError("the work's own")

    with pytest.raises(TimeoutError) as own:
        await within(clock, 5.0, gives_up())
    assert not isinstance(own.value, TimedOut)
