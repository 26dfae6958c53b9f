"""The task classes ``benchmarks/peers.py`` registers with an embedded taskbus (``task_modules``).

``Noop`` returns at once: what is left is taskbus's own cost per task. ``Latency`` also notes how
late it started against its scheduled instant, in this module's ``LATENESS_MS``; the benchmark
embeds taskbus, so the executor runs it in the benchmark's own process and the list is read there.
``Stamped`` (the shipped burst) notes the same per run, under its task id in ``STARTS``, so the
benchmark can also check that every task ran exactly once.
"""

from __future__ import annotations

import time
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult

LATENESS_MS: list[float] = []  # Latency runs: start time minus scheduled instant, in ms
STARTS: dict[str, list[float]] = {}  # Stamped runs: task id -> each run's lateness, in s


class Noop(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()


class Latency(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        LATENESS_MS.append((time.time() - ctx.scheduled_at.timestamp()) * 1e3)
        return TaskResult.ok()


class Stamped(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        late_s = time.time() - ctx.scheduled_at.timestamp()
        STARTS.setdefault(ctx.task_id, []).append(late_s)
        return TaskResult.ok()
