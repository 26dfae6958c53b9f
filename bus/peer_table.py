"""The broker's table of registered peers, and the indexes of what they subscribe to and serve.

It answers the two routing questions: who receives an event on a topic (every subscriber the ACL
lets receive it), and who answers a request (one allowed server of the longest matching service
prefix, taken in turn). Both answers are cached per topic until a peer comes, goes or changes what
it subscribes to or serves. It sends nothing.
"""

from __future__ import annotations

import itertools

from bus.acl import RECEIVE, SERVE, Acl
from bus.peer import Peer

_CACHE_LIMIT = 65_536  # topics whose receivers (or servers) are remembered


class PeerTable:
    def __init__(self, acl: Acl) -> None:
        self.acl = acl
        self.peers: dict[tuple[int, bytes], Peer] = {}
        self.by_name: dict[str, Peer] = {}
        self.subscriptions: dict[str, set[Peer]] = {}
        self.services: dict[str, list[Peer]] = {}
        self._fanout_cache: dict[str, tuple[Peer, ...]] = {}
        self._server_cache: dict[str, tuple[Peer, ...]] = {}
        self._service_rr = itertools.count()
        self._names = itertools.count(1)

    def get(self, socket_index: int, routing_id: bytes) -> Peer | None:
        return self.peers.get((socket_index, routing_id))

    def new_name(self, identity: str) -> str:
        """A name no other peer of this broker had: one identity may connect several times."""
        return f"{identity}#{next(self._names)}"

    def add(self, socket_index: int, peer: Peer) -> None:
        self.peers[(socket_index, peer.routing_id)] = peer
        self.by_name[peer.name] = peer

    def remove(self, peer: Peer) -> None:
        """Forget a peer and everything it subscribed to or served."""
        for peer_key, known in list(self.peers.items()):
            if known is peer:
                del self.peers[peer_key]
        self.by_name.pop(peer.name, None)
        for prefix in peer.subscriptions:
            _remove_from(self.subscriptions, prefix, peer)
        for prefix in peer.services:
            providers = self.services.get(prefix, [])
            if peer in providers:
                providers.remove(peer)
            if not providers:
                self.services.pop(prefix, None)
        self._fanout_cache.clear()
        self._server_cache.clear()

    # ------------------------------------------------------------- indexes

    def subscribe(self, peer: Peer, prefixes: list[str]) -> None:
        for prefix in prefixes:
            peer.subscriptions.add(prefix)
            self.subscriptions.setdefault(prefix, set()).add(peer)
        self._fanout_cache.clear()

    def unsubscribe(self, peer: Peer, prefixes: list[str]) -> None:
        for prefix in prefixes:
            peer.subscriptions.discard(prefix)
            _remove_from(self.subscriptions, prefix, peer)
        self._fanout_cache.clear()

    def serve(self, peer: Peer, prefixes: list[str]) -> None:
        for prefix in prefixes:
            peer.services.add(prefix)
            providers = self.services.setdefault(prefix, [])
            if peer not in providers:
                providers.append(peer)
        self._server_cache.clear()

    # ------------------------------------------------------------- lookups

    def receivers(self, topic: str) -> tuple[Peer, ...]:
        """The peers an event on ``topic`` goes to, in name order."""
        receivers = self._fanout_cache.get(topic)
        if receivers is not None:
            return receivers
        found: set[Peer] = set()
        for prefix, peers in self.subscriptions.items():
            if topic.startswith(prefix):
                found.update(p for p in peers if self.acl.allows(p.identity, RECEIVE, topic))
        receivers = tuple(sorted(found, key=lambda p: p.name))
        if len(self._fanout_cache) > _CACHE_LIMIT:
            self._fanout_cache.clear()
        self._fanout_cache[topic] = receivers
        return receivers

    def listened(self, prefix: str) -> bool:
        """Whether any peer subscribes to a topic under ``prefix`` (a subscription under it, or
        one it is under). The ACL is not asked: a yes may be wider than the truth, never narrower.
        """
        return any(p.startswith(prefix) or prefix.startswith(p) for p in self.subscriptions)

    def responder(self, topic: str) -> Peer | None:
        """The peer a request on ``topic`` goes to, or None when nothing may serve it."""
        servers = self._server_cache.get(topic)
        if servers is None:
            servers = self._servers(topic)
            if len(self._server_cache) > _CACHE_LIMIT:
                self._server_cache.clear()
            self._server_cache[topic] = servers
        if not servers:
            return None
        return servers[next(self._service_rr) % len(servers)]

    def _servers(self, topic: str) -> tuple[Peer, ...]:
        """The allowed servers of the longest service prefix of ``topic`` that has any."""
        best: list[Peer] = []
        best_length = -1
        for prefix, providers in self.services.items():
            if len(prefix) > best_length and topic.startswith(prefix):
                allowed = [p for p in providers if self.acl.allows(p.identity, SERVE, topic)]
                if allowed:
                    best, best_length = allowed, len(prefix)
        return tuple(best)


def _remove_from(index: dict[str, set[Peer]], prefix: str, peer: Peer) -> None:
    members = index.get(prefix)
    if members is not None:
        members.discard(peer)
        if not members:
            del index[prefix]
