"""Per-identity topic access control: first matching rule wins, no match denies.

Rules name identities directly, by a glob (``executor-*``) or by a role (``@executor``); roles
are sets of identity patterns, possibly of other roles (``config.bus.default_roles``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from config.bus import AclRule, identity_matches

# The actions a broker checks (config.bus.ACL_ACTIONS): what a peer sends...
PUBLISH = "publish"
ASK = "ask"
ENQUEUE = "enqueue"
# ...and what it takes.
SUBSCRIBE = "subscribe"  # register a subscription prefix
RECEIVE = "receive"  # get one event
SERVE = "serve"  # register a service prefix, and get one request
CONSUME = "consume"

_CACHE_LIMIT = 65_536


class Roles:
    """Which identities have which role; answers are cached per (role, identity)."""

    def __init__(self, roles: Mapping[str, tuple[str, ...]]) -> None:
        self._roles = dict(roles)
        self._cache: dict[tuple[str, str], bool] = {}

    def __contains__(self, role: object) -> bool:
        return role in self._roles

    def has(self, role: str, identity: str) -> bool:
        """Whether ``identity`` has ``role`` (False for a role nobody defined)."""
        key = (role, identity)
        found = self._cache.get(key)
        if found is None:
            found = self._member(role, identity, ())
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def member_of(self, role: str) -> Callable[[str], bool]:
        """``has`` for one role, as a predicate of identities."""
        return functools.partial(self.has, role)

    def of(self, identity: str) -> list[str]:
        """Every role of ``identity``, by name."""
        return sorted(role for role in self._roles if self.has(role, identity))

    def _member(self, role: str, identity: str, seen: tuple[str, ...]) -> bool:
        if role in seen:  # settings refuse cycles; a hand-made Roles must not loop either
            return False
        for pattern in self._roles.get(role, ()):
            if pattern.startswith("@"):
                if self._member(pattern[1:], identity, (*seen, role)):
                    return True
            elif identity_matches(pattern, identity):
                return True
        return False


class Acl:
    """Decisions are cached per (identity, action, topic): the broker asks for every message."""

    def __init__(
        self, rules: tuple[AclRule, ...], roles: Mapping[str, tuple[str, ...]] | Roles | None = None
    ) -> None:
        self._rules = rules
        self.roles = roles if isinstance(roles, Roles) else Roles(roles or {})
        self._cache: dict[tuple[str, str, str], bool] = {}

    def allows(self, identity: str, action: str, topic: str) -> bool:
        key = (identity, action, topic)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(identity, action, topic)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _decide(self, identity: str, action: str, topic: str) -> bool:
        for rule in self._rules:
            if self._applies(rule, identity, action) and rule.matches_topic(identity, topic):
                return rule.allow
        return False

    def _applies(self, rule: AclRule, identity: str, action: str) -> bool:
        if rule.action not in ("*", action):
            return False
        role = rule.role
        if role is not None:
            return self.roles.has(role, identity)
        return rule.identity == "*" or identity_matches(rule.identity, identity)
