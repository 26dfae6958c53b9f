"""Supervision policy, pure: OTP-style restart intensity (the clock passed in) and the order in
which actors stop."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from config.actors import ActorSettings


@dataclass(slots=True)
class RestartIntensity:
    """More than ``max_restarts`` failures within ``window_s`` means: stop trying."""

    max_restarts: int
    window_s: float
    backoff_s: float
    backoff_max_s: float
    _failures: deque[float] = field(default_factory=deque)

    @classmethod
    def from_settings(cls, settings: ActorSettings) -> RestartIntensity:
        return cls(
            settings.max_restarts,
            settings.restart_window_s,
            settings.restart_backoff_s,
            settings.restart_backoff_max_s,
        )

    def after_failure(self, now: float) -> float | None:
        """Delay before the next restart, growing exponentially; None once the limit is hit."""
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()
        self._failures.append(now)
        if len(self._failures) > self.max_restarts:
            return None
        return float(min(self.backoff_s * 2 ** (len(self._failures) - 1), self.backoff_max_s))

    @property
    def recent_failures(self) -> int:
        return len(self._failures)


class StopRank(IntEnum):
    """Where an actor stops in :meth:`ActorSystem.stop`: the highest rank first, one rank at a
    time, all actors of a rank together. Whoever makes work stops before whoever does it, which
    stops before the services both use, so each stops while what it needs is still up."""

    OBSERVER = 0  # health: watches the others stop
    SERVICE = 1  # the store: the scheduler's lease and the executors' results are written to it
    WORKER = 2  # executors: drain their runs for ``shutdown_deadline_s``
    PRODUCER = 3  # the scheduler: no new fires, its lease released while the store is up


def stop_stages(ranks: Mapping[str, int]) -> list[list[str]]:
    """The names of ``ranks`` (actor -> its rank) grouped into stop stages, highest rank first;
    within a stage in the mapping's order."""
    stages: dict[int, list[str]] = {}
    for name, rank in ranks.items():
        stages.setdefault(rank, []).append(name)
    return [stages[rank] for rank in sorted(stages, reverse=True)]
