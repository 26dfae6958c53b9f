"""What the broker has to send: output batched on its peers, and which peers have some.

Sans-I/O like the rest of the broker's core: frames are queued on ``Peer.out`` and the peer is
marked ``dirty``; the driver (:mod:`bus.broker`) sends every dirty peer's output after each batch
of input, one frame per peer and command.
"""

from __future__ import annotations

from typing import Any

from bus import wire
from bus.envelope import Envelope
from bus.peer import Peer
from bus.peer_table import PeerTable

BROKER_IDENTITY = "broker"  # the sender of the broker's own events and replies (``bus.*``)


class Outbox:
    def __init__(self, table: PeerTable) -> None:
        self.table = table
        self.dirty: set[Peer] = set()

    def send(self, peer: Peer, command: bytes, item: Any) -> None:
        peer.queue_out(command, item)
        self.dirty.add(peer)

    def fanout(self, topic: str, data: bytes) -> None:
        """An encoded event to every peer that receives ``topic``."""
        dirty = self.dirty
        for receiver in self.table.receivers(topic):
            receiver.queue_out(wire.PUBLISH, data)
            dirty.add(receiver)

    def emit(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish an event of the broker's own (``bus.*``)."""
        self.fanout(topic, Envelope(topic, payload, BROKER_IDENTITY).encode())

    def control_ack(self, target: Peer, ref: Any, /, **extra: Any) -> None:
        self.send(target, wire.CONTROL_ACK, {"ref": ref, **extra})
