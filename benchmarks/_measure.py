"""What ``bus.py`` and ``actors.py`` measure with (not a benchmark itself).

The receiver's meter, percentiles, the median run, the table printer and the error a failed phase
raises. The scripts import it as ``benchmarks._measure``: run as ``python benchmarks/<name>.py``,
each first swaps its own directory on ``sys.path`` (where it would shadow the package it
measures) for the repository root.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class BenchError(RuntimeError):
    """A phase failed or missed its deadline; the message says which and why."""


@dataclass(slots=True)
class Meter:
    """Counts received items; times them from the end of the warm-up to the last one.

    The clock starts when the ``warmup``-th item arrives (the first one if ``warmup`` is 0), and
    the rate is the items counted after it divided by the time from it to the last item.
    """

    warmup: int
    count: int = 0
    start_count: int = 0
    t_start: float = 0.0
    t_last: float = 0.0

    def add(self, received: int = 1) -> None:
        now = time.perf_counter()
        before = self.count
        self.count += received
        if before < self.warmup <= self.count or (self.warmup == 0 and before == 0):
            self.t_start, self.start_count = now, self.count
        self.t_last = now

    def rate(self) -> float:
        elapsed = self.t_last - self.t_start
        timed = self.count - self.start_count
        return timed / elapsed if elapsed > 0 and timed > 0 else 0.0

    def result(self) -> dict[str, Any]:
        elapsed = self.t_last - self.t_start
        return {
            "received": self.count,
            "timed": self.count - self.start_count,
            "seconds": round(elapsed, 4),
            "msgs_s": round(self.rate()),
        }


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def median_by(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median ``key`` (the lower median for an even count); ``{}`` if none."""
    ordered = sorted(runs, key=lambda run: run.get(key, 0))
    return ordered[(len(ordered) - 1) // 2] if ordered else {}


def print_aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """``header`` and ``rows`` in left-aligned columns, the header underlined."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for index, line in enumerate([header, *rows]):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    """Count, p50, p99 and max of latencies in milliseconds."""
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50), 3),
        "p99_ms": round(percentile(ordered, 0.99), 3),
        "max_ms": round(ordered[-1], 3),
    }


async def aps3_fire_latencies(fires: int, spacing_ms: float, timeout_s: float) -> list[float]:
    """APScheduler 3 in memory (AsyncIOScheduler, UTC): ``fires`` one-shot jobs ``spacing_ms``
    apart from a second from now; each notes when it starts minus its instant, in ms."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    latencies: list[float] = []
    done = asyncio.Event()

    async def job(instant: datetime) -> None:
        latencies.append((time.time() - instant.timestamp()) * 1e3)
        if len(latencies) >= fires:
            done.set()

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    first = datetime.now(UTC) + timedelta(seconds=1)
    for index in range(fires):
        instant = first + timedelta(milliseconds=index * spacing_ms)
        scheduler.add_job(job, "date", run_date=instant, args=[instant], misfire_grace_time=60)
    await asyncio.wait_for(done.wait(), timeout_s)
    scheduler.shutdown(wait=False)
    return latencies
