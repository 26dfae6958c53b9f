"""``ctx.step`` over a journal in memory: a finished step returns its stored result without
running; steps are known by id, not position; a step's own retry stores its final error; a
non-plain result, a bad name or a bad policy is refused before anything is stored; a changed
code path is found once the run ends.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from scheduler import FakeClock
from tasks import (
    MemoryJournal,
    StepFailed,
    StepRetry,
    StepsChanged,
    StepTimedOut,
    StoredStep,
    TaskUsageError,
)
from tests.bus.waits import eventually
from tests.tasks.kit import SCHEDULED_AT, make_context


def kept(name: str, result: Any = None, *, ok: bool = True, error: str | None = None) -> StoredStep:
    return StoredStep(
        name=name,
        ok=ok,
        result=result,
        error=error,
        started_at=SCHEDULED_AT,
        finished_at=SCHEDULED_AT,
    )


async def test_a_step_runs_once_and_its_result_is_kept() -> None:
    journal = MemoryJournal()
    calls: list[int] = []

    async def collect(n: int) -> dict[str, Any]:
        calls.append(n)
        return {"rows": (n, n + 1)}

    ctx = make_context(steps=journal)
    assert await ctx.step("collect", collect, 3) == {"rows": (3, 4)}
    assert await ctx.step("collect", collect, 9) == {"rows": (3, 4)}  # asked again: kept
    again = make_context(steps=journal)  # the run, run again
    assert await again.step("collect", collect, 5) == {"rows": (3, 4)}
    assert calls == [3]
    assert journal.steps["collect"].attempts == 1


async def test_a_recorded_step_is_not_run_and_a_final_error_is_raised_again() -> None:
    journal = MemoryJournal([kept("a", [1]), kept("b", ok=False, error="OSError: gone")])
    ctx = make_context(steps=journal)

    def never() -> None:
        raise AssertionError("ran")

    assert await ctx.step("a", never) == [1]
    with pytest.raises(StepFailed, match="step 'b' failed: OSError: gone") as failed:
        await ctx.step("b", never)
    assert (failed.value.step, failed.value.error) == ("b", "OSError: gone")


async def test_concurrent_steps_are_known_by_id_not_by_position() -> None:
    journal = MemoryJournal()
    runs: list[str] = []

    async def page(n: int) -> int:
        await asyncio.sleep(0.001 * (3 - n))  # finish in the reverse order
        runs.append(f"page[{n}]")
        return n * 10

    ctx = make_context(steps=journal)
    assert await asyncio.gather(*(ctx.step("page", page, n, key=n) for n in range(3))) == [
        0,
        10,
        20,
    ]
    assert sorted(journal.steps) == ["page[0]", "page[1]", "page[2]"]
    again = make_context(steps=journal)
    order = [2, 0, 1]  # asked in another order: each gets its own result
    assert await asyncio.gather(*(again.step("page", page, n, key=n) for n in order)) == [
        20,
        0,
        10,
    ]
    assert len(runs) == 3
    again.check_steps()


async def test_the_same_step_asked_twice_at_once_runs_once() -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "done"

    ctx = make_context(steps=MemoryJournal())
    assert await asyncio.gather(ctx.step("s", slow), ctx.step("s", slow)) == ["done", "done"]
    assert calls == 1


async def test_without_a_retry_a_failure_propagates_and_nothing_is_stored() -> None:
    journal = MemoryJournal()

    async def boom() -> None:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        await make_context(steps=journal).step("upload", boom)
    assert journal.steps == {}


async def test_a_step_retry_tries_again_then_stores_its_final_error() -> None:
    clock = FakeClock(SCHEDULED_AT)
    journal = MemoryJournal()
    tries: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OSError(f"try {len(tries)}")
        return "ok"

    async def advance_while(work: asyncio.Future[Any]) -> None:
        while not work.done():
            await asyncio.sleep(0)
            clock.advance(10)

    ctx = make_context(steps=journal, clock=clock)
    work = asyncio.ensure_future(ctx.step("u", flaky, retry=StepRetry(attempts=3, delay_s=1)))
    await advance_while(work)
    assert work.result() == "ok"
    assert journal.steps["u"].attempts == 3

    async def broken() -> None:
        raise OSError("gone")

    work = asyncio.ensure_future(ctx.step("v", broken, retry=StepRetry(attempts=2, delay_s=1)))
    await advance_while(work)
    with pytest.raises(StepFailed, match=r"OSError: gone \(after 2 attempts\)"):
        work.result()
    assert not journal.steps["v"].ok
    with pytest.raises(StepFailed):  # and in a later run, without running it
        await make_context(steps=journal).step("v", broken)


async def test_a_step_attempt_times_out_on_the_run_s_clock() -> None:
    clock = FakeClock(SCHEDULED_AT)

    async def forever() -> None:
        await asyncio.Event().wait()

    ctx = make_context(steps=MemoryJournal(), clock=clock)
    work = asyncio.ensure_future(ctx.step("wait", forever, timeout_s=5))
    await eventually(lambda: clock.next_timer_s is not None, "the step's timer", 5)
    assert clock.next_timer_s == 5
    clock.advance(5)
    done, _ = await asyncio.wait([work], timeout=1)
    assert done, "the step's timeout did not fire"
    with pytest.raises(StepTimedOut, match="step 'wait' timed out after 5s"):
        work.result()


async def test_a_plain_function_runs_in_the_thread_pool() -> None:
    def where() -> str:
        return threading.current_thread().name

    ctx = make_context(steps=MemoryJournal())
    assert await ctx.step("where", where) != threading.current_thread().name


async def test_a_result_that_is_not_plain_is_refused_before_anything_is_stored() -> None:
    journal = MemoryJournal()

    async def dated() -> object:
        return {"at": SCHEDULED_AT}

    with pytest.raises(TaskUsageError, match=r"result of step 'd'\.at: datetime is not a plain"):
        await make_context(steps=journal).step("d", dated)
    assert journal.steps == {}


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("", {}, "a step's name is a non-empty str"),
        ("a\nb", {}, "printable text"),
        ("x" * 257, {}, "at most 256"),
        ("p", {"key": 1.5}, "a step's key is a str or an int"),
        ("p", {"retry": 3}, "retry is a StepRetry"),
        ("p", {"timeout_s": 0}, "timeout_s is a number > 0"),
    ],
)
async def test_bad_step_arguments_are_refused(
    name: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(TaskUsageError, match=problem):
        await make_context(steps=MemoryJournal()).step(name, lambda: 1, **options)


def test_a_step_retry_checks_its_values() -> None:
    with pytest.raises(TaskUsageError, match="attempts"):
        StepRetry(attempts=0)
    with pytest.raises(TaskUsageError, match="delay_s"):
        StepRetry(delay_s=-1)


async def test_a_recorded_step_the_run_never_asks_for_fails_it_with_the_names() -> None:
    journal = MemoryJournal([kept("a", 1), kept("b", 2), kept("c", 3)])
    ctx = make_context(steps=journal)
    assert await ctx.step("a", lambda: 0) == 1
    assert await ctx.step("new", lambda: 4) == 4  # a step never reached before is fine
    with pytest.raises(StepsChanged, match=r"never asked for: 'b', 'c'") as changed:
        ctx.check_steps()
    assert changed.value.steps == ("b", "c")
