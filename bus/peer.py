"""The broker's view of one connected client, the work it holds, and the output batched for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import zmq


@dataclass(eq=False, slots=True)
class HeldWork:
    """A unit of work the broker holds until it is acknowledged or discarded: pending in its
    queue, or in flight to a consumer (``attempt`` counts the deliveries)."""

    queue: str
    message_id: bytes
    data: bytes
    producer: str
    attempt: int


@dataclass(eq=False, slots=True)
class Peer:
    socket: zmq.Socket[bytes]
    routing_id: bytes
    identity: str
    name: str
    remote: bool
    last_seen: float
    last_sent: float = 0.0
    subscriptions: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    # WATCHed prefixes -> whether the peer was last told someone listens (None: not told yet)
    watching: dict[str, bool | None] = field(default_factory=dict)
    credit: dict[str, int] = field(default_factory=dict)
    inflight: dict[bytes, HeldWork] = field(default_factory=dict)
    # Batched output: runs of (command, items), in the order they were queued.
    out: list[tuple[bytes, list[Any]]] = field(default_factory=list)
    dropped_events: int = 0
    alive: bool = True

    def queue_out(self, command: bytes, item: Any) -> None:
        if self.out and self.out[-1][0] == command:
            self.out[-1][1].append(item)
        else:
            self.out.append((command, [item]))

    @property
    def transport(self) -> str:
        return "remote" if self.remote else "inproc"
