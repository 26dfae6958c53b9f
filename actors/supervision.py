"""OTP-style restart intensity: pure policy, the clock passed in."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

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
