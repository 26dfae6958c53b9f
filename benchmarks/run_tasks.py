"""The task classes ``benchmarks/runs.py`` registers with an embedded taskbus (``task_modules``).

The benchmark embeds taskbus, so the ``user`` executor runs these in the benchmark's own process:
what they measure goes into this module's globals and the benchmark reads it there. Each child
process of the benchmark sets the knobs (``STEPS``, ``SIGNALS``, ``SLEEP_S``) before it starts
taskbus.

- ``Steps``: ``STEPS`` empty steps, one after the other (``await ctx.step("s", noop, key=i)``,
  each stored before it returns); times them with ``time.perf_counter`` from before the first to
  after the last and appends the seconds to ``STEP_SECONDS``.
- ``Waiter``: loops ``SIGNALS`` times on ``ctx.wait_signal("ping")``; each payload carries the
  sender's ``time.perf_counter()`` (``t``) and its number (``k``); the latency (ms) from the
  send to the return of ``wait_signal`` is kept in ``SIGNAL_MS[k]`` the first time ``k`` is seen
  (a replay after a suspension returns kept payloads again: they are not counted twice).
- ``Sleeper``: ``ctx.sleep_until(scheduled_at + SLEEP_S)``, then returns; notes when its first
  attempt started (``SLEEPERS_STARTED``) and when it ended (``SLEEPERS_DONE_AT``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult

STEPS = 1_000
STEP_SECONDS: list[float] = []

SIGNALS = 200
SIGNAL_MS: dict[int, float] = {}
SIGNAL_ATTEMPTS: set[int] = set()  # the attempts of the Waiter run that received signals
WAITING: asyncio.Event | None = None  # set by Waiter before each wait_signal (the sender waits)

SLEEP_S = 30.0
SLEEPERS_STARTED: list[float] = []  # time.time() of each first attempt's start
SLEEPERS_DONE_AT: list[float] = []  # time.time() of each end


async def noop() -> None:
    return None


class Steps(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        count = STEPS
        started = time.perf_counter()
        for index in range(count):
            await ctx.step("s", noop, key=index)
        seconds = time.perf_counter() - started
        STEP_SECONDS.append(seconds)
        return TaskResult.ok(steps=count, seconds=seconds)


class Waiter(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        SIGNAL_ATTEMPTS.add(ctx.attempt)
        for _ in range(SIGNALS):
            if WAITING is not None:
                WAITING.set()
            payload = await ctx.wait_signal("ping")
            now = time.perf_counter()
            key = int(payload["k"])
            if key not in SIGNAL_MS:
                SIGNAL_MS[key] = (now - float(payload["t"])) * 1e3
        return TaskResult.ok(signals=SIGNALS)


class Sleeper(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        if ctx.attempt == 1:
            SLEEPERS_STARTED.append(time.time())
        wake = ctx.scheduled_at + timedelta(seconds=SLEEP_S)
        await ctx.sleep_until(wake)
        SLEEPERS_DONE_AT.append(time.time())
        return TaskResult.ok()
