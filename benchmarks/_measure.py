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
