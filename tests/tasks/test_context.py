"""TaskContext: progress, cancellation, probes, and work kept off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime

import pytest

from scheduler import FakeClock
from tasks import TaskCancelled, TaskContext, TaskOptions, TaskUsageError
from tests.tasks.kit import SCHEDULED_AT, FakeServices, ProgressLog, make_context


async def test_progress_calls_the_executor_s_callback() -> None:
    log = ProgressLog()
    ctx = make_context(on_progress=log)
    await ctx.progress(0, "start")
    await ctx.progress(0.25)
    await ctx.progress(1)
    assert log.calls == [(0.0, "start"), (0.25, ""), (1.0, "")]
    assert all(type(fraction) is float for fraction, _ in log.calls)


@pytest.mark.parametrize("fraction", [-0.01, 1.01, float("nan"), float("inf"), True, "0.5"])
async def test_progress_outside_0_to_1_is_refused_and_not_published(fraction: object) -> None:
    log = ProgressLog()
    ctx = make_context(on_progress=log)
    with pytest.raises(TaskUsageError) as caught:
        await ctx.progress(fraction)  # type: ignore[arg-type]
    assert str(caught.value) == f"progress is a number from 0.0 to 1.0, not {fraction!r}"
    assert log.calls == []


async def test_a_progress_note_is_short_text() -> None:
    log = ProgressLog()
    ctx = make_context(on_progress=log)
    with pytest.raises(TaskUsageError, match="at most 500 chars"):
        await ctx.progress(0.5, "x" * 501)
    assert log.calls == []


async def test_progress_without_a_callback_does_nothing() -> None:
    await make_context().progress(0.5, "fine")


async def test_cancel_sets_the_event_and_check_cancelled_raises_the_first_reason() -> None:
    ctx = make_context()
    ctx.check_cancelled()  # not cancelled yet: nothing happens
    ctx.cancel("timed out after 300s")
    ctx.cancel("shutdown")
    assert ctx.cancelled.is_set()
    with pytest.raises(TaskCancelled) as caught:
        ctx.check_cancelled()
    assert caught.value.reason == "timed out after 300s"
    assert str(caught.value) == "task cancelled: timed out after 300s"


def test_the_executor_s_own_event_cancels_too() -> None:
    event = asyncio.Event()
    ctx = make_context(cancelled=event)
    assert ctx.cancelled is event
    assert ctx.cancel_reason == ""
    event.set()
    with pytest.raises(TaskCancelled, match=r"^task cancelled: cancelled$"):
        ctx.check_cancelled()


def test_scheduled_at_must_be_aware() -> None:
    with pytest.raises(TaskUsageError, match=r"^scheduled_at must be aware, not 2024-05-01T00:00"):
        TaskContext(
            task_id="user.x",
            execution_id="e",
            scheduled_at=datetime(2024, 5, 1),
            attempt=1,
            options=TaskOptions(),
            services=FakeServices(),
            clock=FakeClock(SCHEDULED_AT),
        )


def test_probes_are_injected_and_safe_by_default() -> None:
    ctx = make_context()
    assert ctx.system_idle() is False  # unknown: not idle
    assert ctx.loop_lag_s() == 0.0
    idle = make_context(idle_probe=lambda: True, loop_lag_s=lambda: 0.125)
    assert idle.system_idle() is True
    assert idle.loop_lag_s() == 0.125


def test_the_logger_adds_task_and_execution_ids(caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_context(task_id="user.report")
    with caplog.at_level(logging.INFO, logger="taskbus.task"):
        ctx.log.info("hello %s", "world")
    (record,) = caplog.records
    assert record.getMessage() == f"user.report [{ctx.execution_id}] hello world"
    assert record.task_id == "user.report"  # type: ignore[attr-defined]
    assert record.execution_id == ctx.execution_id  # type: ignore[attr-defined]
    assert record.filename == "test_context.py"  # the caller's line, not the adapter's
    ((_at, level, text),) = ctx.log.lines()  # kept for the run's outcome
    assert (level, text) == ("INFO", "hello world")


async def test_run_in_thread_keeps_the_loop_responsive() -> None:
    """A CPU-bound function spins until the ticker, on the loop, has ticked 20 times: it can
    only return if the loop kept running beside it (run on the loop, it would never return).
    """
    ctx = make_context()
    loop = asyncio.get_running_loop()
    started, stop = asyncio.Event(), threading.Event()
    ticks = 0

    def spin() -> int:
        """Busy, CPU-bound; returns the ticks the loop made while it ran."""
        loop.call_soon_threadsafe(started.set)
        turns = 0
        while not stop.is_set():
            turns += 1
        return ticks

    async def ticker() -> None:
        nonlocal ticks
        await started.wait()
        while ticks < 20:
            ticks += 1
            await asyncio.sleep(0)
        stop.set()

    seen, _ = await asyncio.wait_for(asyncio.gather(ctx.run_in_thread(spin), ticker()), 10)
    assert seen == 20


async def test_run_in_thread_uses_the_injected_pool() -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-pool") as pool:
        ctx = make_context(threads=pool)
        name = await ctx.run_in_thread(lambda: threading.current_thread().name)
        total = await ctx.run_in_thread(sum, [1, 2, 3])
    assert name.startswith("task-pool")
    assert total == 6


async def test_run_in_process_runs_in_another_process(process_pool: ProcessPoolExecutor) -> None:
    ctx = make_context(processes=process_pool)
    assert await ctx.run_in_process(os.getpid) != os.getpid()
    assert await ctx.run_in_process(pow, 2, 10) == 1024


async def test_run_in_process_without_a_pool_says_so() -> None:
    ctx = make_context(task_id="agency.x")
    with pytest.raises(TaskUsageError) as caught:
        await ctx.run_in_process(os.getpid)
    assert str(caught.value) == (
        "task agency.x: run_in_process needs a process pool, and the executor gave this "
        "context none"
    )
