"""Typed, validated settings of the message bus."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from config import topics
from config.errors import ConfigError

# What a peer does, as an ACL rule names it: send an event, ask, enqueue work; register a
# subscription, receive an event, serve asks, consume a queue. "*" is any of them.
ACL_ACTIONS = ("publish", "ask", "enqueue", "subscribe", "receive", "serve", "consume", "*")
IDENTITY_PLACEHOLDER = "{identity}"
# An identity name, or a glob of one ("executor-*", "*"), or a role ("@executor").
_IDENTITY_PATTERN = re.compile(r"^(\*|@[a-z][a-z0-9_-]{0,31}|[a-z0-9*][a-z0-9._*-]{0,63})$")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# The syntax of bus.topics.check_prefix: a rule whose prefix no topic can have never matches.
_PREFIX_PATTERN = re.compile(r"([a-z0-9_]+(\.[a-z0-9_-]+)*\.?)?")
_MAX_PREFIX_LENGTH = 255

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_MAX_QUEUE_ITEMS = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class AclRule:
    """One access rule; the first rule matching (identity, action, topic) decides.

    ``identity``: ``*``, a name, a glob of names (``executor-*``) or a role (``@executor``, see
    ``BusSettings.roles``). ``action``: one of ACL_ACTIONS. ``prefix``: a topic prefix (``""``
    matches every topic); one ending in ``{identity}`` matches exactly the topic with the peer's
    own identity there (``scheduler.task.status.{identity}``: only ``bob`` receives
    ``scheduler.task.status.bob``).
    """

    identity: str
    action: str
    prefix: str
    allow: bool

    def __post_init__(self) -> None:
        if not isinstance(self.identity, str) or not _IDENTITY_PATTERN.fullmatch(self.identity):
            raise ConfigError(
                "bus.acl.identity",
                self.identity,
                "'*', a lowercase identity name, a glob of names such as 'executor-*', or a role "
                "such as '@executor'",
            )
        if self.action not in ACL_ACTIONS:
            raise ConfigError("bus.acl.action", self.action, f"one of {', '.join(ACL_ACTIONS)}")
        if not isinstance(self.prefix, str) or not _valid_prefix(self.prefix):
            raise ConfigError(
                "bus.acl.prefix",
                self.prefix,
                "a topic prefix such as 'scheduler.task.' or '', optionally ending in '{identity}'",
            )
        if not isinstance(self.allow, bool):
            raise ConfigError("bus.acl.allow", self.allow, "true or false")

    @property
    def role(self) -> str | None:
        """The role this rule is for (``@name``), else None."""
        return self.identity[1:] if self.identity.startswith("@") else None

    def matches_topic(self, identity: str, topic: str) -> bool:
        if self.prefix.endswith(IDENTITY_PLACEHOLDER):
            return topic == self.prefix[: -len(IDENTITY_PLACEHOLDER)] + identity
        return topic.startswith(self.prefix)


def _valid_prefix(prefix: str) -> bool:
    stem = prefix.removesuffix(IDENTITY_PLACEHOLDER)
    if stem != prefix and stem and not stem.endswith("."):
        return False  # the placeholder is a word of its own
    return len(stem) <= _MAX_PREFIX_LENGTH and bool(_PREFIX_PATTERN.fullmatch(stem))


def identity_matches(pattern: str, identity: str) -> bool:
    """Whether ``identity`` matches a name or a glob of names (``*`` for any characters)."""
    return pattern == identity or ("*" in pattern and fnmatch.fnmatchcase(identity, pattern))


def default_roles() -> dict[str, tuple[str, ...]]:
    """Who is who on a taskbus bus (docs/security.md#63-roles)."""
    return {
        "scheduler": ("scheduler", "scheduler-*"),
        "executor": ("executor-*",),
        "store": ("store",),
        "health": ("health",),
        "system": ("system",),
        "internal": ("@scheduler", "@executor", "@store", "@health", "@system"),
        "admin": ("cli", "app"),
    }


def _rule(identity: str, action: str, prefix: str, allow: bool = True) -> AclRule:
    return AclRule(identity=identity, action=action, prefix=prefix, allow=allow)


def default_acl() -> tuple[AclRule, ...]:
    """Least privilege (docs/security.md#64-default-rules): internal topics for the roles that use
    them, the public scheduler API for everyone, a task's events for its owner and the admins,
    and every other topic open to admitted identities."""
    return (
        # the broker's own topics: only the broker publishes; admins may read and ask them
        _rule("*", "publish", topics.BUS, allow=False),
        _rule("@admin", "*", topics.BUS),
        _rule("@internal", "ask", topics.BUS_STATS),
        _rule("*", "*", topics.BUS, allow=False),
        # the store: served by the store, asked by schedulers and, for runs (their steps,
        # suspensions, signals) and maintenance, executors; admins read and maintain it
        _rule("@store", "serve", topics.STORE),
        _rule("@scheduler", "ask", topics.STORE),
        *(
            _rule("@executor", "ask", prefix)
            for prefix in (
                topics.STORE_EXECUTIONS,
                topics.STORE_STEPS,
                topics.STORE_RUNS,
                topics.STORE_DEAD_LETTER_ADD,
                topics.STORE_STATS,
                topics.STORE_MAINTENANCE,
                topics.STORE_RETENTION_RUN,
            )
        ),
        _rule("@admin", "ask", topics.STORE_MAINTENANCE),
        *(_rule("@admin", "ask", topic) for topic in topics.STORE_ADMIN_READS),
        _rule("*", "*", topics.STORE, allow=False),
        # work between the scheduler and the executors
        _rule("@scheduler", "enqueue", topics.DISPATCH_QUEUES),
        _rule("@executor", "consume", topics.DISPATCH_QUEUES),
        _rule("@executor", "enqueue", topics.RESULT_QUEUE),
        _rule("@scheduler", "consume", topics.RESULT_QUEUE),
        _rule("*", "*", topics.DISPATCH_QUEUES.rstrip("."), allow=False),
        _rule("*", "*", topics.RESULT_QUEUE, allow=False),
        # who answers for the scheduler and health, and who speaks for them
        _rule("@scheduler", "serve", topics.SCHEDULER),
        _rule("@health", "serve", topics.HEALTH),
        _rule("@scheduler", "publish", topics.TASK),
        _rule("@scheduler", "publish", topics.RUN_DELIVER),  # a run's signals and controls
        _rule("@executor", "publish", topics.TASK),
        _rule("@executor", "publish", topics.HEALTH_CHECK_EVENTS),
        _rule("@executor", "publish", topics.CATALOGUE_EVENTS),  # only executors announce classes
        _rule("@scheduler", "publish", topics.CATALOGUE_WANTED),
        _rule("@health", "publish", topics.HEALTH),
        _rule("@internal", "publish", topics.ERROR_EVENTS),
        _rule("@internal", "*", topics.ACTORS),
        _rule("@admin", "*", topics.ACTORS),
        _rule("*", "*", topics.ACTORS, allow=False),
        _rule("@internal", "subscribe", topics.SCHEDULER),
        _rule("@internal", "receive", topics.SCHEDULER),
        _rule("@executor", "ask", topics.EXEC),  # spawn child runs, answer queries
        # the public API: admins everything, others their own tasks' events and health
        _rule("@admin", "ask", topics.SCHEDULER),
        _rule("@admin", "subscribe", topics.SCHEDULER),
        _rule("@admin", "receive", topics.SCHEDULER),
        _rule("*", "ask", topics.TASK),
        _rule("*", "ask", topics.RUN),  # the scheduler checks the run's task is the asker's
        _rule("*", "ask", topics.HEALTH),
        _rule("*", "subscribe", topics.STATUS_EVENTS),
        _rule("*", "subscribe", topics.DEAD_EVENTS),
        _rule("*", "subscribe", topics.HEALTH),
        _rule("*", "subscribe", topics.ERROR_EVENTS),  # may register; receives nothing (admins')
        _rule("*", "receive", f"{topics.STATUS_EVENTS}.{IDENTITY_PLACEHOLDER}"),
        _rule("*", "receive", f"{topics.DEAD_EVENTS}.{IDENTITY_PLACEHOLDER}"),
        _rule("*", "receive", topics.HEALTH),
        _rule("*", "*", topics.SCHEDULER, allow=False),
        # agents schedule their own work: the scheduler answers, in the asker's namespace
        _rule("@scheduler", "serve", topics.AGENT_TASK),
        _rule("*", "ask", topics.AGENT_TASK),
        _rule("*", "*", topics.AGENT_TASK, allow=False),
        # every other topic belongs to the applications on the bus
        _rule("*", "*", ""),
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
    max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    acl: tuple[AclRule, ...] = field(default_factory=default_acl)
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=default_roles)

    def __post_init__(self) -> None:
        require_int("bus.max_message_bytes", self.max_message_bytes, 1024, 256 * 1024 * 1024)
        require_float("bus.heartbeat_interval_s", self.heartbeat_interval_s, 0.01, 3600.0)
        require_int("bus.heartbeat_liveness", self.heartbeat_liveness, 1, 100)
        require_int("bus.send_hwm", self.send_hwm, 1, 10_000_000)
        require_int("bus.receive_hwm", self.receive_hwm, 1, 10_000_000)
        require_float("bus.ask_timeout_s", self.ask_timeout_s, 0.001, 86_400.0)
        require_float("bus.reconnect_max_s", self.reconnect_max_s, 0.01, 3600.0)
        require_int("bus.max_queue_items", self.max_queue_items, 1, 100_000_000)
        require_int("bus.max_queue_bytes", self.max_queue_bytes, 1024, 2**40)
        if not isinstance(self.acl, tuple) or not all(isinstance(r, AclRule) for r in self.acl):
            raise ConfigError("bus.acl", self.acl, "a tuple of AclRule")
        object.__setattr__(self, "roles", MappingProxyType(_checked_roles(self.roles)))
        for i, rule in enumerate(self.acl):
            if rule.role is not None and rule.role not in self.roles:
                known = ", ".join(sorted(self.roles)) or "none"
                raise ConfigError(f"bus.acl[{i}].identity", rule.identity, f"a role ({known})")

    @property
    def peer_timeout_s(self) -> float:
        """Silence after which a peer (or, seen from a client, the broker) counts as dead."""
        return self.heartbeat_interval_s * self.heartbeat_liveness


def _checked_roles(roles: object) -> dict[str, tuple[str, ...]]:
    """Role name -> identity patterns (names, globs, other roles), every role it names known
    and no role inside itself."""
    if not isinstance(roles, Mapping):
        raise ConfigError("bus.roles", roles, "a table of role = [identity patterns]")
    checked: dict[str, tuple[str, ...]] = {}
    for name, members in roles.items():
        key = f"bus.roles.{name}"
        if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
            raise ConfigError(key, name, "a role name: lowercase letters, digits, '_' or '-'")
        if not isinstance(members, list | tuple) or not all(
            isinstance(m, str) and _IDENTITY_PATTERN.fullmatch(m) and m != "*" for m in members
        ):
            raise ConfigError(
                key, members, "an array of identity names, globs ('executor-*') or '@role'"
            )
        checked[name] = tuple(members)
    for name, members in checked.items():
        for member in members:
            if member.startswith("@") and member[1:] not in checked:
                raise ConfigError(f"bus.roles.{name}", member, "a role defined in [bus.roles]")
        _no_cycle(checked, name, (name,))
    return checked


def _no_cycle(roles: Mapping[str, tuple[str, ...]], name: str, path: tuple[str, ...]) -> None:
    for member in roles[name]:
        if member.startswith("@"):
            inner = member[1:]
            if inner in path:
                cycle = " -> ".join(f"@{r}" for r in (*path, inner))
                expected = f"no role inside itself ({cycle})"
                raise ConfigError(f"bus.roles.{path[0]}", member, expected)
            _no_cycle(roles, inner, (*path, inner))


def require_int(key: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(key, value, f"an integer from {low} to {high}")


def require_float(key: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high:  # type: ignore[operator]  # exact, no float overflow
        raise ConfigError(key, value, f"a number from {low} to {high}")
