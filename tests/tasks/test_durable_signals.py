"""``ctx.wait_signal`` and signal handlers over a journal and an inbox in memory, on a fake
clock: each signal is taken once per run across replays, the k-th wait for a name replays what
it took; a timeout is kept and replayed as SignalTimedOut; a pushed signal wakes a waiter with
no time passing (no polling); handlers run once per signal, in seq order; misuse is refused.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest

from scheduler import FakeClock
from tasks import (
    BaseTask,
    MemoryInbox,
    MemoryJournal,
    RunCancelled,
    Signal,
    SignalTimedOut,
    Suspended,
    TaskContext,
    TaskDefinitionError,
    TaskResult,
    TaskUsageError,
    handlers_of,
    signal_handler,
)
from tests.bus.waits import eventually
from tests.tasks.kit import SCHEDULED_AT, make_context

NOW = SCHEDULED_AT


def signal(seq: int, name: str, payload: Any = None) -> Signal:
    return Signal(seq=seq, name=name, payload=payload, sender="user:ana", sent_at=NOW)


async def test_each_signal_is_taken_once_across_replays() -> None:
    journal = MemoryJournal()
    inbox = MemoryInbox([signal(7, "approve", "first"), signal(3, "other"), signal(9, "approve")])
    ctx = make_context(steps=journal, signals=inbox, suspend_after_s=0)
    assert await ctx.wait_signal("approve") == "first"
    assert await ctx.wait_signal("approve") is None  # the second, seq 9
    assert journal.steps["signal:approve#1"].result == {"seq": 7, "payload": "first"}
    assert journal.steps["signal:approve#2"].result == {"seq": 9, "payload": None}
    with pytest.raises(Suspended) as suspended:
        await ctx.wait_signal("approve")
    assert (suspended.value.waiting, suspended.value.consumed) == ("approve", 2)
    assert (suspended.value.wake_at, suspended.value.paused) == (None, False)

    inbox.put("approve", {"n": 3}, sent_at=NOW)  # seq 10: woken by it
    replay = make_context(steps=journal, signals=inbox, suspend_after_s=0)
    taken = [await replay.wait_signal("approve") for _ in range(3)]
    assert taken == ["first", None, {"n": 3}]
    replay.check_steps()
    assert journal.steps["signal:approve#3"].result == {"seq": 10, "payload": {"n": 3}}


async def test_concurrent_waits_on_two_names_each_take_their_own() -> None:
    journal, clock = MemoryJournal(), FakeClock(NOW)
    ctx = make_context(steps=journal, clock=clock, signals=MemoryInbox(), suspend_after_s=30)
    waits = asyncio.ensure_future(asyncio.gather(ctx.wait_signal("left"), ctx.wait_signal("right")))
    await eventually(lambda: clock.next_timer_s is not None, "the waits' timers")
    ctx.deliver(signal(2, "right", "R"))
    ctx.deliver(signal(1, "left", "L"))
    assert await asyncio.wait_for(waits, 5) == ["L", "R"]
    replay = make_context(steps=journal, signals=MemoryInbox(), suspend_after_s=0)
    assert await asyncio.gather(replay.wait_signal("right"), replay.wait_signal("left")) == [
        "R",
        "L",
    ]


async def test_concurrent_waits_on_one_name_take_distinct_signals() -> None:
    inbox = MemoryInbox([signal(1, "job", "a"), signal(2, "job", "b")])
    ctx = make_context(signals=inbox, suspend_after_s=0)
    taken = await asyncio.gather(ctx.wait_signal("job"), ctx.wait_signal("job"))
    assert sorted(taken) == ["a", "b"]


async def test_a_pushed_signal_wakes_a_waiter_without_time_passing() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(clock=clock, signals=MemoryInbox(), suspend_after_s=60)
    waiting = asyncio.ensure_future(ctx.wait_signal("go"))
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    before = clock.monotonic()
    ctx.deliver(signal(4, "other"))  # not for it: it goes on waiting
    await asyncio.sleep(0)
    assert not waiting.done()
    ctx.signals.deliver(signal(5, "go", [1, 2]))
    assert await asyncio.wait_for(waiting, 5) == [1, 2]
    assert clock.monotonic() == before  # woken by the push, not by a timer or a poll
    assert clock.next_timer_s is None  # its timer was cancelled


async def test_a_wait_with_nothing_sent_suspends_after_waiting_in_place() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(clock=clock, suspend_after_s=2)
    waiting = asyncio.ensure_future(ctx.wait_signal("go"))
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    clock.advance(2)
    with pytest.raises(Suspended) as suspended:
        await asyncio.wait_for(waiting, 5)
    assert (suspended.value.waiting, suspended.value.wake_at) == ("go", None)


async def test_a_timeout_is_kept_and_replayed_as_signal_timed_out() -> None:
    journal, clock, inbox = MemoryJournal(), FakeClock(NOW), MemoryInbox()
    ctx = make_context(steps=journal, clock=clock, signals=inbox, suspend_after_s=0)
    deadline = NOW + timedelta(minutes=10)
    with pytest.raises(Suspended) as suspended:
        await ctx.wait_signal("approve", timeout=timedelta(minutes=10))
    assert (suspended.value.wake_at, suspended.value.waiting) == (deadline, "approve")
    assert journal.steps["signal:approve#1:deadline"].result == deadline.isoformat()

    clock.advance(300)  # replayed early: the kept deadline holds
    with pytest.raises(Suspended) as again:
        await make_context(
            steps=journal, clock=clock, signals=inbox, suspend_after_s=0
        ).wait_signal("approve", timeout=600)
    assert again.value.wake_at == deadline

    clock.advance(300)
    message = f"^signal 'approve' did not come by {re.escape(deadline.isoformat())}$"
    with pytest.raises(SignalTimedOut, match=message) as timed_out:
        await make_context(steps=journal, clock=clock, signals=inbox).wait_signal(
            "approve", timeout=600
        )
    assert (timed_out.value.name, timed_out.value.deadline) == ("approve", deadline)
    assert journal.steps["signal:approve#1"].result == {"timeout": True}

    inbox.put("approve", "late", sent_at=NOW)  # too late: the timeout is kept
    replay = make_context(steps=journal, clock=clock, signals=inbox)
    with pytest.raises(SignalTimedOut):
        await replay.wait_signal("approve", timeout=600)
    assert await replay.wait_signal("approve") == "late"  # the next wait takes it
    replay.check_steps()


async def test_a_timeout_passing_while_waiting_in_place_times_out() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(clock=clock, suspend_after_s=60)
    waiting = asyncio.ensure_future(ctx.wait_signal("go", timeout=5))
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    clock.advance(5)
    with pytest.raises(SignalTimedOut):
        await asyncio.wait_for(waiting, 5)


async def test_cancel_run_reaches_a_wait_in_place() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(clock=clock, suspend_after_s=60)
    waiting = asyncio.ensure_future(ctx.wait_signal("go"))
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    ctx.cancel_run("no longer needed")
    with pytest.raises(RunCancelled, match="no longer needed"):
        await asyncio.wait_for(waiting, 5)


# ---------------------------------------------------------------- handlers


class Notes(BaseTask):
    category = "user"

    def __init__(self) -> None:
        self.notes: list[Any] = []

    @signal_handler("note")
    async def on_note(self, ctx: TaskContext[Any], payload: Any) -> None:
        self.notes.append(payload)

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()


async def test_handlers_run_once_per_signal_in_seq_order() -> None:
    journal = MemoryJournal()
    inbox = MemoryInbox([signal(3, "note", "b"), signal(1, "note", "a"), signal(2, "other")])
    task = Notes()
    ctx = make_context(steps=journal, signals=inbox)
    assert await ctx.handle_signals(task) == 2
    assert task.notes == ["a", "b"]
    assert await ctx.handle_signals(task) == 0
    ctx.deliver(inbox.put("note", "c", sent_at=NOW))  # seq 4: stored, then pushed
    assert await ctx.handle_signals(task) == 1
    assert task.notes == ["a", "b", "c"]
    assert sorted(journal.steps) == ["handled:1", "handled:3", "handled:4"]
    assert await ctx.wait_signal("other") is None  # an unhandled name is waited for

    inbox.put("note", "d", sent_at=NOW)  # seq 5
    again = Notes()
    replay = make_context(steps=journal, signals=inbox)
    assert await replay.handle_signals(again) == 1
    assert again.notes == ["d"]  # the handled ones are not handled again


async def test_a_handled_name_cannot_be_waited_for() -> None:
    ctx = make_context()
    await ctx.handle_signals(Notes())
    with pytest.raises(
        TaskUsageError, match=r"^signal 'note' is handled by on_note\(\) and cannot be waited for$"
    ):
        await ctx.wait_signal("note")


async def test_a_task_without_handlers_reads_no_inbox() -> None:
    class Counting(MemoryInbox):
        loads = 0

        async def load(self) -> Any:
            Counting.loads += 1
            return await super().load()

    ctx = make_context(signals=Counting([signal(1, "note")]))
    assert await ctx.handle_signals(object()) == 0
    assert Counting.loads == 0
    assert not ctx.durable_used


def test_handlers_of_reads_the_class_and_refuses_two_handlers_of_one_name() -> None:
    class More(Notes):
        @signal_handler("tag")
        async def on_tag(self, ctx: TaskContext[Any], payload: Any) -> None:
            return None

    assert handlers_of(More) == {"note": "on_note", "tag": "on_tag"}

    class Twice(Notes):
        @signal_handler("note")
        async def on_note_too(self, ctx: TaskContext[Any], payload: Any) -> None:
            return None

    with pytest.raises(TaskDefinitionError, match="signal 'note' has two handlers"):
        handlers_of(Twice)

    with pytest.raises(TaskDefinitionError, match="marks an async def method"):

        class Sync(Notes):
            @signal_handler("x")
            def on_x(self, ctx: TaskContext[Any], payload: Any) -> None:
                return None


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("name", "timeout", "message"),
    [
        ("", None, "a signal's name is printable text of 1..100 characters, not ''$"),
        (5, None, "a signal's name is printable text of 1..100 characters, not 5$"),
        ("a\tb", None, "a signal's name is printable text of 1..100 characters"),
        ("x" * 101, None, "a signal's name is printable text of 1..100 characters"),
        (
            "cancel",
            None,
            "signal 'cancel': the names cancel, pause, resume control the run "
            "and never reach a task$",
        ),
        ("go", -1, "wait_signal's timeout is a finite number of seconds >= 0, not -1$"),
        (
            "go",
            "soon",
            "wait_signal's timeout is a timedelta or a number of seconds, not 'soon'$",
        ),
    ],
)
async def test_wait_signal_usage_errors(name: Any, timeout: Any, message: str) -> None:
    journal = MemoryJournal()
    with pytest.raises(TaskUsageError, match=f"^{message}"):
        await make_context(steps=journal).wait_signal(name, timeout=timeout)
    assert journal.steps == {}


def test_signal_handler_refuses_a_bad_name() -> None:
    with pytest.raises(TaskUsageError, match=r"^a signal_handler's name is printable text"):
        signal_handler("")
    with pytest.raises(TaskUsageError, match=r"^signal 'pause': the names"):
        signal_handler("pause")
