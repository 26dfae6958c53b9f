"""A named work queue: pending items, and round-robin dispatch to consumers that have credit."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bus.peer import HeldWork, Peer
from bus.wire import DELIVER


@dataclass(eq=False, slots=True)
class WorkQueue:
    name: str
    pending: deque[HeldWork] = field(default_factory=deque)
    held: set[bytes] = field(default_factory=set)  # ids pending or in flight: one copy each
    held_bytes: int = 0  # the envelopes of the held items
    consumers: list[Peer] = field(default_factory=list)
    _next: int = 0
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0

    def add_consumer(self, peer: Peer) -> None:
        if peer not in self.consumers:
            self.consumers.append(peer)

    def remove_consumer(self, peer: Peer) -> None:
        if peer in self.consumers:
            self.consumers.remove(peer)

    def hold(self, item: HeldWork) -> None:
        """A new item, at the back."""
        self.held.add(item.message_id)
        self.held_bytes += len(item.data)
        self.pending.append(item)

    def release(self, item: HeldWork) -> None:
        """An item acknowledged or discarded: the queue no longer holds it."""
        if item.message_id in self.held:
            self.held.discard(item.message_id)
            self.held_bytes -= len(item.data)

    def requeue(self, item: HeldWork) -> None:
        """Back to the front: redelivered work goes before newer work."""
        self.pending.appendleft(item)
        self.redelivered += 1

    def dispatch(self) -> list[Peer]:
        """Hand pending items to consumers with credit; returns the peers that got work."""
        served: list[Peer] = []
        consumers = self.consumers
        while self.pending and consumers:
            peer = self._next_with_credit()
            if peer is None:
                break
            item = self.pending.popleft()
            item.attempt += 1
            peer.credit[self.name] -= 1
            peer.inflight[item.message_id] = item
            peer.queue_out(DELIVER, [item.attempt, item.data])
            self.delivered += 1
            if not served or served[-1] is not peer:
                served.append(peer)
        return served

    def _next_with_credit(self) -> Peer | None:
        count = len(self.consumers)
        for step in range(count):
            peer = self.consumers[(self._next + step) % count]
            if peer.credit.get(self.name, 0) > 0:
                self._next = (self._next + step + 1) % count
                return peer
        return None
