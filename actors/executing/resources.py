"""How busy this machine is, for admission control: CPU and memory use in percent.

Read from Linux's ``/proc`` without extra packages; elsewhere memory is unknown (0) and CPU
comes from the load average. The executor asks a probe before every start; tests inject one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from config.sections import ResourceSettings


@dataclass(frozen=True, slots=True)
class Load:
    cpu_percent: float
    memory_percent: float


class ResourceProbe(Protocol):
    def load(self) -> Load: ...


class SystemProbe:
    """CPU use since the previous reading by the processes other than this one (``/proc/stat``
    less ``/proc/self/stat``), memory in use (``/proc/meminfo``).

    This process's own CPU (its event loop, its store thread, the tasks it runs in threads) is
    left out: its starts are bounded by the concurrency settings, and counting its own load
    would make a busy executor defer its own starts (docs/configuration.md, ``[resources]``).

    A reading is kept for ``min_interval_s``: the executor asks before every start, and a burst
    of starts would otherwise read both files thousands of times a second (and measure CPU use
    over a few microseconds).
    """

    def __init__(
        self,
        proc: Path = Path("/proc"),
        *,
        min_interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._proc = proc
        self._last: tuple[int, int, int] | None = None  # idle, total, this process's
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._reading: tuple[float, Load] | None = None

    def load(self) -> Load:
        now = self._clock()
        if self._reading is not None and now - self._reading[0] < self._min_interval_s:
            return self._reading[1]
        load = Load(self._cpu(), self._memory())
        self._reading = (now, load)
        return load

    def _cpu(self) -> float:
        try:
            fields = (self._proc / "stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return min(100.0, 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1))
        ticks = [int(v) for v in fields]
        idle, total = ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)
        own = self._own_ticks()
        previous, self._last = self._last, (idle, total, own)
        if previous is None or total == previous[1]:
            return min(100.0, 100.0 * os.getloadavg()[0] / (os.cpu_count() or 1))
        busy = (total - previous[1]) - (idle - previous[0])
        others = max(0, busy - (own - previous[2]))
        return 100.0 * others / (total - previous[1])

    def _own_ticks(self) -> int:
        """This process's CPU time in clock ticks, all its threads (utime + stime: fields 14
        and 15 of ``/proc/self/stat``, in the unit of ``/proc/stat``); 0 if unreadable."""
        try:
            text = (self._proc / "self" / "stat").read_text()
        except OSError:
            return 0
        fields = text.rpartition(")")[2].split()  # the command name may hold spaces
        try:
            return int(fields[11]) + int(fields[12])
        except (IndexError, ValueError):
            return 0

    def _memory(self) -> float:
        try:
            lines = (self._proc / "meminfo").read_text().splitlines()
        except OSError:
            return 0.0
        info = {line.split(":")[0]: int(line.split()[1]) for line in lines if ":" in line}
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
        return 0.0 if total == 0 else 100.0 * (1 - available / total)


def overloaded(load: Load, settings: ResourceSettings) -> str | None:
    """Why a start must wait, or None."""
    if load.cpu_percent > settings.max_cpu_percent:
        return f"cpu {load.cpu_percent:.0f}% > {settings.max_cpu_percent:.0f}%"
    if load.memory_percent > settings.max_memory_percent:
        return f"memory {load.memory_percent:.0f}% > {settings.max_memory_percent:.0f}%"
    return None


def idle(load: Load, settings: ResourceSettings) -> bool:
    return (
        load.cpu_percent <= settings.idle_cpu_percent
        and load.memory_percent <= settings.idle_memory_percent
    )
