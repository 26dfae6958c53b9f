"""Settings of the actor runtime: mailboxes, supervision and shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from config.bus import require_float, require_int


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorSettings:
    """OTP-style supervision: more than ``max_restarts`` in ``restart_window_s`` escalates."""

    mailbox_size: int = 1_000
    max_restarts: int = 5
    restart_window_s: float = 60.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    shutdown_deadline_s: float = 10.0
    liveness_interval_s: float = 5.0

    def __post_init__(self) -> None:
        require_int("actors.mailbox_size", self.mailbox_size, 1, 10_000_000)
        require_int("actors.max_restarts", self.max_restarts, 0, 1_000)
        require_float("actors.restart_window_s", self.restart_window_s, 0.001, 86_400.0)
        require_float("actors.restart_backoff_s", self.restart_backoff_s, 0.0, 3_600.0)
        require_float("actors.restart_backoff_max_s", self.restart_backoff_max_s, 0.0, 86_400.0)
        require_float("actors.shutdown_deadline_s", self.shutdown_deadline_s, 0.0, 3_600.0)
        require_float("actors.liveness_interval_s", self.liveness_interval_s, 0.01, 3_600.0)
