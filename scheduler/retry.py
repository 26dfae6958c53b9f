"""When a failed run is tried again, and when it is given up (the scheduler writes a dead letter).

Attempt ``n`` is the ``n``-th run of one fire (the first run is attempt 1). After attempt ``n``
fails with a retryable error and ``n < max_attempts``, the next attempt starts after

    min(base_delay_s * factor ** (n - 1), max_delay_s) + jitter

where jitter lies in ``[0, jitter_s)`` and is derived from a hash of the fire's key and ``n``: the
same failure of the same fire always waits the same time, different fires spread out. With the
defaults of ``[scheduler]`` the delays are 60, 120, 240 s and the fourth failure is final.

An error whose class name (or the name of one of its base classes) is in ``non_retryable`` is
final at once (by default ValueError, TypeError and TaskPermissionError). Names are bare class
names (``ValueError``), compared exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from config.bus import require_float, require_int
from config.errors import ConfigError
from config.sections import SchedulerSettings
from scheduler._instants import seconds, utc
from scheduler.errors import ScheduleError

# A task's bad input (ValueError, TypeError, which include a task's definition and options errors)
# and a denied run (TaskPermissionError) fail the same way however often they are retried.
DEFAULT_NON_RETRYABLE = ("ValueError", "TypeError", "TaskPermissionError")
_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with deterministic jitter; ``max_attempts`` counts the first run."""

    base_delay_s: float = 60.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    jitter_s: float = 0.0
    max_attempts: int = 4
    non_retryable: tuple[str, ...] = DEFAULT_NON_RETRYABLE

    def __post_init__(self) -> None:
        require_float("retry.base_delay_s", self.base_delay_s, 0.0, _DAY_S)
        require_float("retry.factor", self.factor, 1.0, 100.0)
        require_float("retry.max_delay_s", self.max_delay_s, self.base_delay_s, _WEEK_S)
        require_float("retry.jitter_s", self.jitter_s, 0.0, _DAY_S)
        require_int("retry.max_attempts", self.max_attempts, 1, 101)
        names = self.non_retryable
        if not isinstance(names, tuple) or not all(
            isinstance(n, str) and n.isidentifier() for n in names
        ):
            raise ConfigError(
                "retry.non_retryable", names, "a tuple of exception class names ('ValueError')"
            )

    @classmethod
    def from_settings(
        cls,
        settings: SchedulerSettings,
        *,
        retry_count: int | None = None,
        retry_delay_s: float | None = None,
        max_retry_delay_s: float | None = None,
        factor: float = 2.0,
        jitter_s: float = 0.0,
        non_retryable: tuple[str, ...] = DEFAULT_NON_RETRYABLE,
    ) -> RetryPolicy:
        """The policy of ``[scheduler]``; a task's own values, when given, override its defaults.

        ``retry_count`` counts retries, so ``max_attempts`` is one more.
        """
        count = settings.default_retry_count if retry_count is None else retry_count
        require_int("retry.retry_count", count, 0, 100)
        return cls(
            base_delay_s=settings.default_retry_delay_s if retry_delay_s is None else retry_delay_s,
            factor=factor,
            max_delay_s=(
                settings.max_retry_delay_s if max_retry_delay_s is None else max_retry_delay_s
            ),
            jitter_s=jitter_s,
            max_attempts=count + 1,
            non_retryable=non_retryable,
        )

    def backoff_s(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` before jitter: exponential, capped."""
        _check_attempt(attempt)
        exponent = min(attempt - 1, self.max_attempts)  # bounded: no float overflow
        return float(min(self.base_delay_s * self.factor**exponent, self.max_delay_s))

    def jitter(self, attempt: int, key: str) -> float:
        """A deterministic share of ``jitter_s`` in ``[0, jitter_s)`` for this fire and attempt."""
        digest = hashlib.blake2b(f"{key}\x00{attempt}".encode(), digest_size=8).digest()
        return self.jitter_s * (int.from_bytes(digest, "big") / 2**64)

    def decide(self, attempt: int, error_type: str | Sequence[str], key: str) -> RetryDecision:
        """What follows the failure of attempt ``attempt`` (1 = the first run) of the fire ``key``.

        ``error_type`` is the exception's class name, or the names along its class hierarchy
        (``error_names(exc)``) so that a subclass of a non-retryable class is non-retryable too.
        """
        _check_attempt(attempt)
        names = (error_type,) if isinstance(error_type, str) else tuple(error_type)
        if not names:
            raise ScheduleError("error_type names no exception class")
        blocked = next((n for n in names if n in self.non_retryable), None)
        if blocked is not None:
            kind = names[0] if blocked == names[0] else f"{names[0]} (a {blocked})"
            return RetryDecision(attempt=attempt, retry=False, reason=f"non-retryable {kind}")
        if attempt >= self.max_attempts:
            plural = "s" if attempt > 1 else ""
            return RetryDecision(
                attempt=attempt, retry=False, reason=f"exhausted after {attempt} attempt{plural}"
            )
        delay = self.backoff_s(attempt) + self.jitter(attempt, key)
        return RetryDecision(
            attempt=attempt,
            retry=True,
            delay_s=delay,
            reason=f"attempt {attempt + 1} of {self.max_attempts} in {seconds(round(delay, 3))}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision:
    """Retry after ``delay_s``, or give up (``retry`` false) for ``reason``."""

    attempt: int
    retry: bool
    reason: str
    delay_s: float = 0.0

    def retry_at(self, failed_at: datetime) -> datetime:
        """The instant the next attempt is due, counting from the failure."""
        if not self.retry:
            raise ScheduleError(f"no retry after attempt {self.attempt}: {self.reason}")
        return utc("failed_at", failed_at) + timedelta(seconds=self.delay_s)


def error_names(error: BaseException) -> tuple[str, ...]:
    """The class names along ``error``'s class hierarchy, its own first, ``object`` left out."""
    return tuple(cls.__name__ for cls in type(error).__mro__ if cls is not object)


def _check_attempt(attempt: int) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ScheduleError(f"attempt counts from 1, got {attempt!r}")
