"""Per-identity topic access control: first matching rule wins, no match denies."""

from __future__ import annotations

from config.bus import AclRule

PUBLISH = "publish"
SUBSCRIBE = "subscribe"

_CACHE_LIMIT = 65_536


class Acl:
    """Decisions are cached per (identity, action, topic): the broker asks for every message."""

    def __init__(self, rules: tuple[AclRule, ...]) -> None:
        self._rules = rules
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
            if rule.matches(identity, action, topic):
                return rule.allow
        return False
