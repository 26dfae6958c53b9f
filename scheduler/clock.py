"""The clock the scheduler is given: wall time for schedule maths, a monotonic clock for sleeping.

Schedule maths never reads a clock (STYLE item 1): the driver reads its ``Clock`` once per tick and
passes ``now`` down. Tests drive a ``FakeClock`` whose wall time can jump back or forward without
its monotonic time moving, which is how clock jumps are simulated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from scheduler._instants import utc
from scheduler.errors import ScheduleError


class Clock(Protocol):
    """Two readings: ``wall()`` is an aware UTC datetime that may jump (NTP, the user, a VM
    resume); ``monotonic()`` is seconds from an arbitrary origin that never goes backwards.

    Fire instants are wall instants; sleeps are measured on the monotonic clock.
    """

    def wall(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The host's clocks: ``datetime.now(UTC)`` and ``time.monotonic()``."""

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to: ``advance`` moves both readings (time passing),
    ``jump`` moves the wall clock alone (someone set the clock).
    """

    def __init__(self, wall: datetime, monotonic: float = 0.0) -> None:
        self._wall = utc("wall", wall)
        self._monotonic = float(monotonic)

    def wall(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` (>= 0) pass on both clocks."""
        if not seconds >= 0:
            raise ScheduleError(f"a clock advances by 0 seconds or more, not {seconds!r}")
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)

    def jump(self, seconds: float) -> None:
        """Move the wall clock alone, forward (> 0) or backward (< 0)."""
        self._wall += timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Reading:
    """Both clocks read at the same moment."""

    wall: datetime
    monotonic: float

    @classmethod
    def of(cls, clock: Clock) -> Reading:
        return cls(utc("wall", clock.wall()), clock.monotonic())


def wall_jump_s(before: Reading, after: Reading) -> float:
    """Seconds the wall clock moved beyond the time that passed between two readings.

    0 when the clocks agree, > 0 after a forward jump, < 0 after a backward one. The driver logs
    a jump larger than its tolerance; correctness does not depend on detecting it.
    """
    wall_s = (after.wall - before.wall).total_seconds()
    return wall_s - (after.monotonic - before.monotonic)
