"""Schedules and a driver loop for the scheduler's pure timing tests; nothing here sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scheduler.clock import FakeClock
from scheduler.engine import TaskPlan, TimingEngine

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    """An instant on 2025-01-01, UTC."""
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


@dataclass(frozen=True)
class Every:
    """Fires at ``origin + k * period_s`` for k >= 0: an interval schedule."""

    period_s: int
    origin: datetime = T0

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        period = timedelta(seconds=self.period_s)
        k = max(0, (start - self.origin) // period + 1)
        found: list[datetime] = []
        while len(found) < limit:
            instant = self.origin + k * period
            if instant > end:
                break
            found.append(instant)
            k += 1
        return found


@dataclass(frozen=True)
class Once:
    """Fires once, at ``instant``."""

    instant: datetime

    def fires_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        return [self.instant] if start < self.instant <= end and limit > 0 else []


@dataclass
class Driver:
    """The scheduler actor's loop against a FakeClock: tick, then sleep on the monotonic clock.

    ``jumps`` maps a monotonic time to a wall-clock jump in seconds, applied when the sleeping
    loop passes it, as a real clock change would happen while the actor sleeps.
    """

    engine: TimingEngine
    clock: FakeClock
    jumps: dict[float, float] = field(default_factory=dict)
    plans: list[tuple[float, TaskPlan]] = field(default_factory=list)
    wakes: int = 0

    @property
    def fired(self) -> list[tuple[str, datetime]]:
        return [(p.task_id, run.instant) for _, p in self.plans for run in p.plan.runs]

    @property
    def missed(self) -> list[tuple[str, datetime, str]]:
        return [(p.task_id, m.instant, m.reason) for _, p in self.plans for m in p.plan.missed]

    def tick(self) -> float | None:
        self.wakes += 1
        assert self.wakes < 100_000, "the loop spins instead of sleeping"
        now = self.clock.wall()
        mono = self.clock.monotonic()
        self.plans.extend((mono, plan) for plan in self.engine.tick(now))
        return self.engine.sleep_s(now)

    def run_for(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while True:
            delay = self.tick()
            mono = self.clock.monotonic()
            if mono >= end:
                return
            target = end if delay is None else min(mono + delay, end)
            for when in sorted(t for t in self.jumps if t <= target):
                self.clock.advance(max(0.0, when - self.clock.monotonic()))
                self.clock.jump(self.jumps.pop(when))
            self.clock.advance(target - self.clock.monotonic())
