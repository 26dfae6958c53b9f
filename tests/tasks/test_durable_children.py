"""``ctx.spawn``, ``ChildRun.result()`` and ``ctx.gather`` over a journal and an inbox in memory,
a fake spawner (the edge the executor provides) and a fake clock: spawning is a step (a replay
starts nothing new), a child's outcome is the internal signal ``child:<key>`` taken as a signal
wait does (suspending while it is not there), a failed child raises ChildFailed the parent can
catch, gather awaits every child; the reserved ``child:*`` names are refused to users; a pause
interrupts a wait in place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from scheduler import FakeClock
from tasks import (
    BaseTask,
    ChildFailed,
    ChildRun,
    MemoryInbox,
    MemoryJournal,
    Signal,
    Suspended,
    TaskContext,
    TaskOptions,
    TaskResult,
    TaskUsageError,
    signal_handler,
)
from tests.bus.waits import eventually
from tests.tasks.kit import SCHEDULED_AT, make_context

NOW = SCHEDULED_AT
PARENT_RUN = "user.parent@1714606200000000"


class FakeSpawner:
    """Records every spawn; answers a child task id and run key derived from the key."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def spawn(
        self, *, key: str, task_class: str, config: dict[str, Any], on_parent_cancel: str
    ) -> dict[str, Any]:
        self.calls.append(
            {
                "key": key,
                "task_class": task_class,
                "config": config,
                "on_parent_cancel": on_parent_cancel,
            }
        )
        return {"task_id": f"user.child-{key}", "run": f"user.child-{key}@1"}


class Child(BaseTask):
    category = "user"

    @dataclass(frozen=True)
    class Options(TaskOptions):
        size: int = 1

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult(success=True)


def outcome(
    inbox: MemoryInbox, key: str, state: str, result: Any = None, error: Any = None
) -> None:
    payload = {"state": state, "result": result, "error": error}
    inbox.put(f"child:{key}", payload, sent_at=NOW, sender="scheduler")


async def test_spawn_is_a_step_a_replay_does_not_spawn_again() -> None:
    journal, spawner = MemoryJournal(), FakeSpawner()
    ctx = make_context(steps=journal, spawner=spawner)
    handle = await ctx.spawn(Child, Child.Options(size=3), key="resize", on_parent_cancel="abandon")
    assert handle == ChildRun(key="resize", task_id="user.child-resize", run="user.child-resize@1")
    assert spawner.calls == [
        {
            "key": "resize",
            "task_class": f"{__name__}:Child",
            "config": {"size": 3},
            "on_parent_cancel": "abandon",
        }
    ]
    assert journal.steps["spawn:resize"].result == {
        "task_id": "user.child-resize",
        "run": "user.child-resize@1",
    }
    again = await ctx.spawn(Child, key="resize")  # the same key in the same attempt: kept
    assert again == handle

    replay = make_context(steps=journal, spawner=spawner)
    assert await replay.spawn(Child, {"size": 3}, key="resize") == handle
    assert len(spawner.calls) == 1
    replay.check_steps()
    bare = make_context(steps=journal)  # no spawner: a kept spawn still replays
    assert (await bare.spawn("some.module:Child", key="resize")).run == handle.run


async def test_spawn_takes_a_class_key_and_a_config_map() -> None:
    spawner = FakeSpawner()
    ctx = make_context(spawner=spawner)
    await ctx.spawn("tasks.builtins:Thing", {"a": [1, 2]}, key="k")
    assert spawner.calls[0] | {"key": "k"} == {
        "key": "k",
        "task_class": "tasks.builtins:Thing",
        "config": {"a": [1, 2]},
        "on_parent_cancel": "cancel",
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ctx: ctx.spawn(Child, key=""), "a child run's key is printable text"),
        (lambda ctx: ctx.spawn(Child, key="x" * 95), "1..94 characters"),
        (lambda ctx: ctx.spawn(Child, key="a\nb"), "printable"),
        (lambda ctx: ctx.spawn(42, key="k"), "a BaseTask subclass or its key"),
        (lambda ctx: ctx.spawn(Child, [1], key="k"), "a map or a TaskOptions"),
        (lambda ctx: ctx.spawn(Child, {"at": object()}, key="k"), "not a plain value"),
        (lambda ctx: ctx.spawn(Child, key="k", on_parent_cancel="x"), "cancel, abandon"),
    ],
)
async def test_spawn_usage_errors_spawn_nothing(call: Any, message: str) -> None:
    journal, spawner = MemoryJournal(), FakeSpawner()
    ctx = make_context(steps=journal, spawner=spawner)
    with pytest.raises(TaskUsageError, match=message):
        await call(ctx)
    assert (spawner.calls, journal.steps) == ([], {})


async def test_a_context_without_a_spawner_cannot_spawn() -> None:
    journal = MemoryJournal()
    with pytest.raises(TaskUsageError, match="this context cannot spawn"):
        await make_context(steps=journal).spawn(Child, key="k")
    assert journal.steps == {}


async def test_result_suspends_until_the_child_signal_is_in_the_inbox() -> None:
    journal, inbox, spawner = MemoryJournal(), MemoryInbox(), FakeSpawner()
    ctx = make_context(steps=journal, signals=inbox, spawner=spawner, suspend_after_s=0)
    handle = await ctx.spawn(Child, key="c1")
    with pytest.raises(Suspended) as suspended:
        await handle.result()
    assert (suspended.value.waiting, suspended.value.consumed) == ("child:c1", 0)
    assert (suspended.value.wake_at, suspended.value.paused) == (None, False)

    outcome(inbox, "c1", "succeeded", {"rows": 7})
    replay = make_context(steps=journal, signals=inbox, spawner=spawner, suspend_after_s=0)
    handle = await replay.spawn(Child, key="c1")
    assert await handle.result() == {"rows": 7}
    assert await handle.result() == {"rows": 7}  # asked again: the same kept outcome
    assert journal.steps["signal:child:c1#1"].result["payload"]["state"] == "succeeded"
    replay.check_steps()
    assert len(spawner.calls) == 1


async def test_a_pushed_child_signal_wakes_result_waiting_in_place() -> None:
    clock, spawner = FakeClock(NOW), FakeSpawner()
    ctx = make_context(clock=clock, signals=MemoryInbox(), spawner=spawner, suspend_after_s=60)
    handle = await ctx.spawn(Child, key="c1")
    waiting = asyncio.ensure_future(handle.result())
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    ctx.deliver(
        Signal(
            seq=4,
            name="child:c1",
            payload={"state": "succeeded", "result": None, "error": None},
            sender="scheduler",
            sent_at=NOW,
        )
    )
    assert await asyncio.wait_for(waiting, 5) == {}  # no result map: an empty one


@pytest.mark.parametrize("state", ["failed", "cancelled"])
async def test_a_child_that_did_not_succeed_raises_child_failed(state: str) -> None:
    inbox, spawner = MemoryInbox(), FakeSpawner()
    outcome(inbox, "c1", state, error="ValueError: bad row")
    ctx = make_context(signals=inbox, spawner=spawner, suspend_after_s=0)
    handle = await ctx.spawn(Child, key="c1")
    try:
        await handle.result()
    except Exception as caught:  # a parent may catch it: an Exception
        error: Any = caught
    assert isinstance(error, ChildFailed)
    assert (error.key, error.state, error.error) == ("c1", state, "ValueError: bad row")
    assert str(error) == f"child run 'c1' {state}: ValueError: bad row"


async def test_a_malformed_child_outcome_is_a_usage_error() -> None:
    inbox = MemoryInbox()
    inbox.put("child:c1", {"state": "odd"}, sent_at=NOW, sender="scheduler")
    ctx = make_context(signals=inbox, spawner=FakeSpawner(), suspend_after_s=0)
    handle = await ctx.spawn(Child, key="c1")
    with pytest.raises(TaskUsageError, match="malformed"):
        await handle.result()


async def test_a_handle_built_by_hand_cannot_wait() -> None:
    with pytest.raises(TaskUsageError, match=r"only a handle from ctx\.spawn"):
        await ChildRun(key="k", task_id="user.x", run="user.x@1").result()


async def test_gather_waits_for_every_child_then_raises_the_first_failure() -> None:
    journal, inbox, spawner = MemoryJournal(), MemoryInbox(), FakeSpawner()

    async def run() -> list[dict[str, Any]]:
        ctx = make_context(steps=journal, signals=inbox, spawner=spawner, suspend_after_s=0)
        one = await ctx.spawn(Child, key="one")
        two = await ctx.spawn(Child, key="two")
        return await ctx.gather(one, two)

    with pytest.raises(Suspended) as suspended:
        await run()
    assert suspended.value.waiting == "child:one"
    outcome(inbox, "two", "succeeded", {"n": 2})
    with pytest.raises(Suspended) as still:  # two is there, one is not: all are awaited
        await run()
    assert still.value.waiting == "child:one"
    outcome(inbox, "one", "succeeded", {"n": 1})
    assert await run() == [{"n": 1}, {"n": 2}]
    assert len(spawner.calls) == 2


async def test_gather_raises_the_first_failure_after_all_are_in() -> None:
    inbox, spawner = MemoryInbox(), FakeSpawner()
    outcome(inbox, "two", "failed", error="RuntimeError: two")
    outcome(inbox, "three", "cancelled")
    ctx = make_context(signals=inbox, spawner=spawner, suspend_after_s=0)
    handles = [await ctx.spawn(Child, key=key) for key in ("one", "two", "three")]
    with pytest.raises(Suspended) as suspended:  # a failure is there, "one" is not yet
        await ctx.gather(*handles)
    assert suspended.value.waiting == "child:one"
    outcome(inbox, "one", "succeeded", {})
    replay = make_context(signals=inbox, spawner=spawner, suspend_after_s=0)
    handles = [await replay.spawn(Child, key=key) for key in ("one", "two", "three")]
    with pytest.raises(ChildFailed) as failed:
        await replay.gather(*handles)
    assert (failed.value.key, failed.value.state) == ("two", "failed")
    assert await replay.gather() == []


async def test_gather_takes_handles_only() -> None:
    with pytest.raises(TaskUsageError, match="gather takes ChildRun handles"):
        await make_context().gather("user.x@1")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["child:c1", "child:"])
async def test_child_names_are_reserved(name: str) -> None:
    with pytest.raises(TaskUsageError, match="internal"):
        await make_context(signals=MemoryInbox()).wait_signal(name)
    with pytest.raises(TaskUsageError, match="internal"):
        signal_handler(name)


async def test_a_child_signal_never_reaches_a_handler() -> None:
    class Noted(BaseTask):
        category = "user"
        seen: list[Any]

        @signal_handler("note")
        async def on_note(self, ctx: TaskContext[Any], payload: Any) -> None:
            self.seen.append(payload)

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult(success=True)

    inbox = MemoryInbox()
    outcome(inbox, "c1", "succeeded", {})
    inbox.put("note", "hi", sent_at=NOW)
    task = Noted.__new__(Noted)
    task.seen = []
    ctx = make_context(signals=inbox, spawner=FakeSpawner(), suspend_after_s=0)
    assert await ctx.handle_signals(task) == 1
    assert task.seen == ["hi"]
    assert await (await ctx.spawn(Child, key="c1")).result() == {}


# ---------------------------------------------------------------- pause interrupts waits in place


async def test_pause_interrupts_a_signal_wait_in_place() -> None:
    clock, journal = FakeClock(NOW), MemoryJournal()
    ctx = make_context(clock=clock, steps=journal, signals=MemoryInbox(), suspend_after_s=60)
    waiting = asyncio.ensure_future(ctx.wait_signal("go", timeout=600))
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    ctx.pause()
    with pytest.raises(Suspended) as suspended:
        await asyncio.wait_for(waiting, 5)
    deadline = NOW.replace(minute=40)
    assert (suspended.value.paused, suspended.value.waiting) == (True, "go")
    assert (suspended.value.wake_at, suspended.value.consumed) == (deadline, 0)
    assert journal.steps["signal:go#1:deadline"].result == deadline.isoformat()
    assert clock.next_timer_s is None  # its timer was cancelled


async def test_pause_interrupts_a_sleep_in_place() -> None:
    clock, journal = FakeClock(NOW), MemoryJournal()
    ctx = make_context(clock=clock, steps=journal, suspend_after_s=60)
    sleeping = asyncio.ensure_future(ctx.sleep(30, name="nap"))
    await eventually(lambda: clock.next_timer_s is not None, "the sleep's timer")
    ctx.pause()
    with pytest.raises(Suspended) as suspended:
        await asyncio.wait_for(sleeping, 5)
    wake_at = NOW.replace(second=30)
    assert (suspended.value.paused, suspended.value.wake_at) == (True, wake_at)
    assert suspended.value.waiting is None
    assert journal.steps["sleep:nap"].result == wake_at.isoformat()


async def test_pause_interrupts_a_child_wait_in_place_but_not_a_running_step() -> None:
    clock = FakeClock(NOW)
    ctx = make_context(
        clock=clock, signals=MemoryInbox(), spawner=FakeSpawner(), suspend_after_s=60
    )
    handle = await ctx.spawn(Child, key="c1")
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    step = asyncio.ensure_future(ctx.step("work", work))
    waiting = asyncio.ensure_future(handle.result())
    await eventually(lambda: clock.next_timer_s is not None, "the wait's timer")
    ctx.pause()
    with pytest.raises(Suspended) as suspended:
        await asyncio.wait_for(waiting, 5)
    assert (suspended.value.paused, suspended.value.waiting) == (True, "child:c1")
    assert not step.done()  # a step running goes on: the boundary is before new work
    release.set()
    assert await asyncio.wait_for(step, 5) == "done"
