"""``@update`` methods over a journal and an inbox in memory, on a fake clock: the validator
refuses before anything is stored, an accepted update kept as ``update:<name>`` is handled once
(step ``handled:<seq>``) in seq order with the run's signal handlers, and its result is the
reply, the same on a replay; ``update:*`` names are internal; misuse is refused."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler import FakeClock
from tasks import (
    BaseTask,
    MemoryInbox,
    MemoryJournal,
    Signal,
    TaskContext,
    TaskDefinitionError,
    TaskResult,
    TaskUsageError,
    signal_handler,
    update,
    updates_of,
    validate_update,
)
from tasks.children import is_reserved_signal
from tasks.updates import update_handlers, update_signal
from tests.tasks.kit import SCHEDULED_AT, make_context

NOW = SCHEDULED_AT
handled: list[tuple[str, Any]] = []


class Cart(BaseTask):
    category = "user"

    @update("add")
    async def add(self, ctx: TaskContext[Any], payload: Any) -> dict[str, Any]:
        handled.append(("add", payload))
        return {"added": payload["sku"], "count": sum(1 for n, _ in handled if n == "add")}

    @add.validator
    def check_add(self, ctx: TaskContext[Any], payload: Any) -> None:
        if not isinstance(payload, dict) or not payload.get("sku"):
            raise ValueError("an item needs a sku")

    @update("clear")
    async def clear(self, ctx: TaskContext[Any], payload: Any) -> str:
        handled.append(("clear", payload))
        return "cleared"

    @signal_handler("note")
    async def on_note(self, ctx: TaskContext[Any], payload: Any) -> None:
        handled.append(("note", payload))

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()


def kept(inbox: MemoryInbox, name: str, payload: Any) -> Signal:
    return inbox.put(update_signal(name), payload, sent_at=NOW, sender="user:ana")


@pytest.fixture(autouse=True)
def fresh() -> None:
    handled.clear()


def test_updates_are_found_with_their_validators() -> None:
    methods = updates_of(Cart)
    assert sorted(methods) == ["add", "clear"]
    assert methods["add"].check is not None
    assert methods["clear"].check is None
    assert update_handlers(Cart) == {"update:add": "add", "update:clear": "clear"}
    assert is_reserved_signal("update:add")
    assert not is_reserved_signal("updates")


async def test_a_refused_update_raises_and_nothing_is_kept() -> None:
    inbox, journal = MemoryInbox(), MemoryJournal()
    task = Cart()
    ctx = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    with pytest.raises(ValueError, match="an item needs a sku"):
        validate_update(task, ctx, "add", {"qty": 1})
    with pytest.raises(TaskUsageError, match=r"no update 'remove' \(it has: add, clear\)"):
        validate_update(task, ctx, "remove", None)
    assert inbox.signals == []
    assert journal.steps == {}
    assert handled == []


async def test_an_accepted_update_is_handled_once_and_its_result_replayed() -> None:
    inbox, journal = MemoryInbox(), MemoryJournal()
    task = Cart()
    ctx = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    assert validate_update(task, ctx, "add", {"sku": "A1"}).name == "add"
    signal = kept(inbox, "add", {"sku": "A1"})
    assert await ctx.handle_update(task, signal) == {"added": "A1", "count": 1}
    assert journal.steps[f"handled:{signal.seq}"].result == {"added": "A1", "count": 1}
    # asked again (a duplicate push): the kept result, the handler not run again
    assert await ctx.handle_update(task, signal) == {"added": "A1", "count": 1}
    # a replay handles nothing again
    replay = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    assert await replay.handle_signals(Cart()) == 0
    assert handled == [("add", {"sku": "A1"})]


async def test_updates_and_signals_are_handled_in_seq_order() -> None:
    inbox, journal = MemoryInbox(), MemoryJournal()
    inbox.put("note", "first", sent_at=NOW)
    task = Cart()
    ctx = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    cleared = kept(inbox, "clear", None)
    assert await ctx.handle_update(task, cleared) == "cleared"
    assert handled == [("note", "first"), ("clear", None)]
    assert sorted(journal.steps) == ["handled:1", "handled:2"]


async def test_a_failing_handler_keeps_no_step_and_runs_again() -> None:
    class Flaky(BaseTask):
        category = "user"
        calls = 0

        @update("go")
        async def go(self, ctx: TaskContext[Any], payload: Any) -> int:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            return Flaky.calls

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    inbox, journal = MemoryInbox(), MemoryJournal()
    ctx = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    signal = kept(inbox, "go", None)
    with pytest.raises(RuntimeError, match="boom"):
        await ctx.handle_update(Flaky(), signal)
    assert journal.steps == {}
    replay = make_context(steps=journal, signals=inbox, clock=FakeClock(NOW))
    assert await replay.handle_signals(Flaky()) == 1  # at least once: a later attempt retries
    assert journal.steps[f"handled:{signal.seq}"].result == 2


async def test_update_names_cannot_be_signalled_waited_for_or_handled() -> None:
    ctx = make_context(signals=MemoryInbox(), suspend_after_s=0)
    with pytest.raises(TaskUsageError, match="internal"):
        await ctx.wait_signal("update:add")
    with pytest.raises(TaskUsageError, match="internal"):
        signal_handler("update:add")


def test_misuse_is_refused() -> None:
    with pytest.raises(TaskUsageError):
        update("")
    with pytest.raises(TaskUsageError):
        update("x" * 94)
    with pytest.raises(TaskDefinitionError, match="async def"):
        update("sync")(lambda self, ctx, payload: None)  # type: ignore[arg-type, return-value]

    async def handler(self: Any, ctx: Any, payload: Any) -> None:
        return None

    method = update("one")(handler)
    with pytest.raises(TaskDefinitionError, match="plain def"):
        method.validator(handler)  # type: ignore[arg-type]
    method.validator(lambda self, ctx, payload: None)
    with pytest.raises(TaskDefinitionError, match="two validators"):
        method.validator(lambda self, ctx, payload: None)

    class Twice(BaseTask):
        category = "user"
        a = update("same")(handler)
        b = update("same")(handler)

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    with pytest.raises(TaskDefinitionError, match="two methods"):
        updates_of(Twice)
