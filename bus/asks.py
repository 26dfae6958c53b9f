"""Requests the broker forwarded to a server, awaiting their reply.

A request goes to one server of its topic (:meth:`bus.peer_table.PeerTable.responder`); the reply
is routed back only if it matches an ask delivered to the peer that sends it. An asker whose
server goes away is told ``responder_lost``; asks left unanswered for ``PENDING_ASK_TTL_S`` are
forgotten.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bus import wire
from bus.outbox import Outbox
from bus.peer import Peer
from bus.peer_table import PeerTable
from bus.rejection import Rejections
from bus.stamp import stamp

PENDING_ASK_TTL_S = 300.0


@dataclass(slots=True)
class PendingAsk:
    asker: Peer
    responder: Peer
    created: float


class PendingAsks:
    def __init__(
        self,
        table: PeerTable,
        outbox: Outbox,
        rejections: Rejections,
        counters: Counter[str],
    ) -> None:
        self.table = table
        self.outbox = outbox
        self.rejections = rejections
        self.counters = counters
        self.pending: dict[tuple[str, bytes], PendingAsk] = {}  # by (asker name, correlation id)

    def forward(self, asker: Peer, data: bytes, fields: list[Any], now: float) -> None:
        """A request (an envelope and its validated fields, correlation id set) to a server of
        its topic."""
        topic = fields[2]
        correlation_id = fields[5]
        responder = self.table.responder(topic)
        if responder is None:
            self.rejections.reject(
                asker,
                "no_responder",
                f"nothing serves {topic!r}",
                command=wire.REQUEST,
                message_id=fields[1],
                correlation_id=correlation_id,
                topic=topic,
            )
            return
        self.pending[(asker.name, correlation_id)] = PendingAsk(asker, responder, now)
        self.outbox.send(responder, wire.REQUEST, stamp(data, fields, asker.identity, asker.name))
        self.counters["requests"] += 1

    def reply(self, responder: Peer, data: bytes, fields: list[Any]) -> None:
        key = (fields[6], fields[5])
        ask = self.pending.get(key) if isinstance(fields[6], str) else None
        if ask is None or ask.responder is not responder:
            self.rejections.reject(
                responder,
                "unknown_request",
                "reply matches no request delivered to you (late, or not yours)",
                command=wire.REPLY,
                message_id=fields[1],
                correlation_id=fields[5],
            )
            return
        del self.pending[key]
        self.outbox.send(ask.asker, wire.REPLY, stamp(data, fields, responder.identity))
        self.counters["replies"] += 1

    def peer_gone(self, peer: Peer) -> None:
        """Its askers are told; its own asks are forgotten."""
        for key, ask in list(self.pending.items()):
            if ask.responder is peer:
                del self.pending[key]
                self.rejections.responder_lost(ask.asker, peer, key[1])
            elif ask.asker is peer:
                del self.pending[key]

    def expire(self, now: float) -> None:
        stale = now - PENDING_ASK_TTL_S
        for key in [k for k, a in self.pending.items() if a.created < stale]:
            del self.pending[key]

    def __len__(self) -> int:
        return len(self.pending)
