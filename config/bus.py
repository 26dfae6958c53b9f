"""Typed, validated settings of the message bus."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from config.errors import ConfigError

ACL_ACTIONS = ("publish", "subscribe", "*")
_IDENTITY_PATTERN = re.compile(r"^(\*|[a-z0-9][a-z0-9._-]{0,63})$")
# The syntax of bus.topics.check_prefix: a rule whose prefix no topic can have never matches.
_PREFIX_PATTERN = re.compile(r"([a-z0-9_]+(\.[a-z0-9_-]+)*\.?)?")
_MAX_PREFIX_LENGTH = 255

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class AclRule:
    """One access rule; the first rule matching (identity, action, topic) decides.

    ``publish`` covers publish, ask and enqueue; ``subscribe`` covers subscribe, serve and consume.
    ``identity`` and ``action`` accept ``*``; ``prefix`` ``""`` matches every topic.
    """

    identity: str
    action: str
    prefix: str
    allow: bool

    def __post_init__(self) -> None:
        if not isinstance(self.identity, str) or not _IDENTITY_PATTERN.fullmatch(self.identity):
            raise ConfigError("bus.acl.identity", self.identity, "'*' or a lowercase identity name")
        if self.action not in ACL_ACTIONS:
            raise ConfigError("bus.acl.action", self.action, f"one of {ACL_ACTIONS}")
        if (
            not isinstance(self.prefix, str)
            or len(self.prefix) > _MAX_PREFIX_LENGTH
            or not _PREFIX_PATTERN.fullmatch(self.prefix)
        ):
            raise ConfigError(
                "bus.acl.prefix", self.prefix, "a topic prefix such as 'scheduler.task.' or ''"
            )
        if not isinstance(self.allow, bool):
            raise ConfigError("bus.acl.allow", self.allow, "true or false")

    def matches(self, identity: str, action: str, topic: str) -> bool:
        return (
            self.identity in ("*", identity)
            and self.action in ("*", action)
            and topic.startswith(self.prefix)
        )


def default_acl() -> tuple[AclRule, ...]:
    """Only the scheduler dispatches work; everything else is open to authenticated peers."""
    return (
        AclRule(
            identity="scheduler", action="publish", prefix="scheduler.task.dispatch", allow=True
        ),
        AclRule(identity="*", action="publish", prefix="scheduler.task.dispatch", allow=False),
        AclRule(identity="*", action="publish", prefix="bus.", allow=False),
        AclRule(identity="*", action="*", prefix="", allow=True),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BusSettings:
    """Limits and timings of the broker and its clients (seconds in ``_s``, sizes in bytes)."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 3
    send_hwm: int = 1_000  # frames; a frame batches up to ~32 KiB of envelopes
    receive_hwm: int = 1_000
    ask_timeout_s: float = 5.0
    reconnect_max_s: float = 32.0
    acl: tuple[AclRule, ...] = field(default_factory=default_acl)

    def __post_init__(self) -> None:
        require_int("bus.max_message_bytes", self.max_message_bytes, 1024, 256 * 1024 * 1024)
        require_float("bus.heartbeat_interval_s", self.heartbeat_interval_s, 0.01, 3600.0)
        require_int("bus.heartbeat_liveness", self.heartbeat_liveness, 1, 100)
        require_int("bus.send_hwm", self.send_hwm, 1, 10_000_000)
        require_int("bus.receive_hwm", self.receive_hwm, 1, 10_000_000)
        require_float("bus.ask_timeout_s", self.ask_timeout_s, 0.001, 86_400.0)
        require_float("bus.reconnect_max_s", self.reconnect_max_s, 0.01, 3600.0)
        if not isinstance(self.acl, tuple) or not all(isinstance(r, AclRule) for r in self.acl):
            raise ConfigError("bus.acl", self.acl, "a tuple of AclRule")

    @property
    def peer_timeout_s(self) -> float:
        """Silence after which a peer (or, seen from a client, the broker) counts as dead."""
        return self.heartbeat_interval_s * self.heartbeat_liveness


def require_int(key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(key, value, f"an integer from {low} to {high}")


def require_float(key: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high:  # type: ignore[operator]  # exact, no float overflow
        raise ConfigError(key, value, f"a number from {low} to {high}")
