"""``ctx.sleep``/``ctx.sleep_until`` over a journal in memory and a fake clock: the wake instant
is kept, so a replay (a new context over the same journal) returns once it is due without
suspending; a short sleep waits in place; a long one raises Suspended with its wake instant.
Run control: ``cancel_run`` reaches a running coroutine or thread step at once, ``pause`` stops
the run at its next boundary; Suspended is not an Exception.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from scheduler import FakeClock
from tasks import MemoryJournal, RunCancelled, Suspended, TaskCancelled, TaskUsageError
from tests.bus.waits import eventually
from tests.tasks.kit import SCHEDULED_AT, make_context

NOW = SCHEDULED_AT


async def timer_set(clock: FakeClock) -> None:
    """Until something waits on ``clock`` (a sleep in place has set its timer)."""
    await eventually(lambda: clock.next_timer_s is not None, "a timer on the clock")


async def test_a_long_sleep_suspends_and_its_replay_returns_once_due() -> None:
    journal, clock = MemoryJournal(), FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock)
    with pytest.raises(Suspended) as suspended:
        await ctx.sleep(timedelta(hours=2))
    wake_at = NOW + timedelta(hours=2)
    assert (suspended.value.wake_at, suspended.value.waiting) == (wake_at, None)
    assert (suspended.value.paused, suspended.value.consumed) == (False, 0)
    assert journal.steps["sleep:sleep-1"].result == wake_at.isoformat()
    assert ctx.durable_used

    clock.advance(3600)  # woken early: the kept instant holds, not a new delay
    with pytest.raises(Suspended) as again:
        await make_context(steps=journal, clock=clock).sleep(timedelta(hours=2))
    assert again.value.wake_at == wake_at

    clock.advance(3600)
    replay = make_context(steps=journal, clock=clock)
    await replay.sleep(timedelta(hours=2))  # due: returns without suspending
    assert clock.next_timer_s is None
    replay.check_steps()
    assert list(journal.steps) == ["sleep:sleep-1"]


async def test_a_short_sleep_waits_in_place_on_the_clock() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(clock=clock, suspend_after_s=5.0)
    sleeping = asyncio.ensure_future(ctx.sleep(2.5))
    await timer_set(clock)
    assert not sleeping.done()
    assert clock.next_timer_s == 2.5
    clock.advance(2.5)
    await asyncio.wait_for(sleeping, 5)


async def test_sleep_until_keeps_its_instant_and_a_past_one_returns_at_once() -> None:
    journal, clock = MemoryJournal(), FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock)
    await ctx.sleep_until(NOW - timedelta(minutes=1), name="past")
    paris = timezone(timedelta(hours=2))
    when = datetime(2024, 5, 2, 12, 0, tzinfo=paris)
    with pytest.raises(Suspended) as suspended:
        await ctx.sleep_until(when, name="noon")
    assert suspended.value.wake_at == when
    assert suspended.value.wake_at.tzinfo == UTC
    assert journal.steps["sleep:noon"].result == when.astimezone(UTC).isoformat()
    assert sorted(journal.steps) == ["sleep:noon", "sleep:past"]


async def test_sleeps_are_known_by_name_not_by_order() -> None:
    journal, clock = MemoryJournal(), FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock, suspend_after_s=0)
    for name, minutes in (("b", 20), ("a", 10)):
        with pytest.raises(Suspended):
            await ctx.sleep(timedelta(minutes=minutes), name=name)
    clock.advance(15 * 60)
    replay = make_context(steps=journal, clock=clock, suspend_after_s=0)
    await replay.sleep(timedelta(minutes=10), name="a")  # asked first now: its own instant
    with pytest.raises(Suspended) as suspended:
        await replay.sleep(timedelta(minutes=20), name="b")
    assert suspended.value.wake_at == NOW + timedelta(minutes=20)


async def test_unnamed_sleeps_count_from_one_per_run() -> None:
    journal, clock = MemoryJournal(), FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock)
    await ctx.sleep(0)
    await ctx.sleep(timedelta(0))
    assert sorted(journal.steps) == ["sleep:sleep-1", "sleep:sleep-2"]
    replay = make_context(steps=journal, clock=clock)
    await replay.sleep(0)
    await replay.sleep(0)
    replay.check_steps()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ctx: ctx.sleep(-1), "a sleep's delay is a finite number of seconds >= 0, not -1$"),
        (
            lambda ctx: ctx.sleep(timedelta(seconds=-2)),
            "a sleep's delay is a finite number of seconds >= 0, not -2$",
        ),
        (
            lambda ctx: ctx.sleep(float("nan")),
            "a sleep's delay is a finite number of seconds >= 0, not nan$",
        ),
        (
            lambda ctx: ctx.sleep(True),
            "a sleep's delay is a timedelta or a number of seconds, not True",
        ),
        (
            lambda ctx: ctx.sleep_until(datetime(2024, 5, 2, 12, 0)),
            "sleep_until's instant is an aware datetime \\(with a timezone\\), "
            "not the naive 2024-05-02T12:00:00",
        ),
        (
            lambda ctx: ctx.sleep_until("2024-05-02"),
            "sleep_until's instant is an aware datetime, not '2024-05-02'",
        ),
        (
            lambda ctx: ctx.sleep(1, name=""),
            "a sleep's name is printable text of 1..100 characters, not ''",
        ),
        (
            lambda ctx: ctx.sleep(1, name="a\nb"),
            "a sleep's name is printable text of 1..100 characters, not 'a\\\\nb'",
        ),
        (
            lambda ctx: ctx.sleep(1, name="x" * 101),
            "a sleep's name is printable text of 1..100 characters",
        ),
        (
            lambda ctx: ctx.sleep(1, name="sleep-3"),
            "sleep name 'sleep-3': the names sleep-<n> are those of unnamed sleeps",
        ),
    ],
)
async def test_usage_errors_are_refused_before_anything_is_kept(call: Any, message: str) -> None:
    journal = MemoryJournal()
    ctx = make_context(steps=journal)
    with pytest.raises(TaskUsageError, match=f"^{message}"):
        await call(ctx)
    assert journal.steps == {}


async def test_except_exception_in_task_code_does_not_catch_suspended() -> None:
    ctx = make_context()
    caught: list[BaseException] = []

    async def task_code() -> None:
        try:
            await ctx.sleep(3600)
        except Exception as exc:  # what careless task code does
            caught.append(exc)

    with pytest.raises(Suspended):
        await task_code()
    assert caught == []
    assert not isinstance(Suspended(), Exception)


# ---------------------------------------------------------------- run control


async def test_cancel_run_stops_awaiting_a_running_coroutine_step_at_once() -> None:
    journal = MemoryJournal()
    ctx = make_context(steps=journal)
    started, stopped = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    step = asyncio.ensure_future(ctx.step("long", forever))
    await asyncio.wait_for(started.wait(), 5)
    ctx.cancel_run("the user said stop")
    with pytest.raises(RunCancelled, match=r"^run cancelled: the user said stop$") as cancelled:
        await asyncio.wait_for(step, 5)
    assert isinstance(cancelled.value, TaskCancelled)
    assert cancelled.value.reason == "the user said stop"
    await asyncio.wait_for(stopped.wait(), 5)  # the coroutine was cancelled too
    assert journal.steps == {}
    assert ctx.cancelled.is_set()
    assert ctx.run_cancelled
    assert ctx.durable_used
    with pytest.raises(RunCancelled):
        ctx.check_cancelled()


async def test_cancel_run_stops_awaiting_a_thread_step_at_once() -> None:
    ctx = make_context()
    started, release = threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(5)
        return "late"

    step = asyncio.ensure_future(ctx.step("blocking", blocking))
    await eventually(started.is_set, "the thread step started")
    ctx.cancel_run("stop")
    try:
        with pytest.raises(RunCancelled):
            await asyncio.wait_for(step, 5)
        assert not release.is_set()  # the thread still runs: it was only no longer awaited
    finally:
        release.set()


async def test_after_cancel_run_steps_sleeps_and_waits_raise_run_cancelled() -> None:
    journal = MemoryJournal()
    clock = FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock, suspend_after_s=60)
    assert await ctx.step("kept", lambda: 1) == 1
    sleeping = asyncio.ensure_future(ctx.sleep(30))
    await timer_set(clock)
    ctx.cancel_run("stop")
    ctx.cancel_run("a second reason")  # the first stays
    with pytest.raises(RunCancelled, match="stop"):
        await asyncio.wait_for(sleeping, 5)
    for call in (
        lambda: ctx.step("kept", lambda: 2),
        lambda: ctx.step("new", lambda: 3),
        lambda: ctx.sleep(1),
        lambda: ctx.wait_signal("go"),
    ):
        with pytest.raises(RunCancelled, match=r"^run cancelled: stop$"):
            await call()
    assert ctx.cancel_reason == "stop"


async def test_pause_suspends_at_the_next_boundary_after_kept_steps() -> None:
    journal = MemoryJournal()
    first = make_context(steps=journal)
    assert await first.step("a", lambda: "A") == "A"
    ctx = make_context(steps=journal)
    ctx.pause()
    assert await ctx.step("a", lambda: "again") == "A"  # kept: returns before the boundary
    ran: list[str] = []
    with pytest.raises(Suspended) as suspended:
        await ctx.step("b", lambda: ran.append("b"))
    assert (suspended.value.paused, suspended.value.wake_at, suspended.value.waiting) == (
        True,
        None,
        None,
    )
    assert ran == []
    for call in (lambda: ctx.sleep(10), lambda: ctx.wait_signal("go")):
        with pytest.raises(Suspended) as again:
            await call()
        assert again.value.paused
    assert sorted(journal.steps) == ["a"]  # nothing new kept
    ctx.resume()  # a pause not reached yet can be taken back
    assert await ctx.step("b", lambda: "B") == "B"


async def test_end_attempt_stops_work_a_suspended_attempt_left_running() -> None:
    ctx = make_context()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    sibling = asyncio.ensure_future(ctx.step("long", forever))
    await asyncio.wait_for(started.wait(), 5)
    with pytest.raises(Suspended):
        await ctx.sleep(3600)  # the attempt ends here; its sibling step still runs
    assert not sibling.done()
    ctx.end_attempt()
    with pytest.raises(TaskCancelled, match="the attempt ended"):
        await asyncio.wait_for(sibling, 5)
    await asyncio.wait_for(stopped.wait(), 5)
    with pytest.raises(TaskCancelled, match="the attempt ended"):
        await ctx.step("next", lambda: 1)
