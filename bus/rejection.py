"""The broker's refusals: answered to the sender, counted, logged on one line, published.

A message the broker will not route is refused with a code and a reason (the handlers raise
:class:`bus.errors.Refused`). The refusal goes back to its sender as an ERROR frame naming the
message id, correlation id or control ref it concerns, is counted by code, logged as one
greppable ``bus.reject code=... identity=...`` line, and published as a ``bus.error`` event.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import zmq

from bus import wire
from bus._io import send_quietly
from bus.errors import EnvelopeError
from bus.outbox import Outbox
from bus.peer import Peer
from config import topics

log = logging.getLogger("taskbus.bus.broker")


class Rejections:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.counts: Counter[str] = Counter()  # by code

    def reject(
        self,
        peer: Peer,
        code: str,
        reason: str,
        *,
        command: bytes = b"",
        message_id: bytes | None = None,
        correlation_id: bytes | None = None,
        ref: Any = None,
        topic: str | None = None,
    ) -> None:
        self.counts[code] += 1
        log.warning(
            "bus.reject code=%s identity=%s peer=%s command=%s topic=%s reason=%s",
            code,
            peer.identity,
            peer.name,
            command.decode("ascii", "replace"),
            topic,
            reason,
        )
        self._error(
            peer, code, reason, message_id=message_id, correlation_id=correlation_id, ref=ref
        )
        self.outbox.emit(
            topics.BUS_ERROR,
            {
                "code": code,
                "reason": reason,
                "identity": peer.identity,
                "peer": peer.name,
                "command": command.decode("ascii", "replace"),
                "topic": topic,
                "message_id": message_id,
            },
        )

    def responder_lost(self, asker: Peer, responder: Peer, correlation_id: bytes) -> None:
        """An ask whose server went away before replying: the asker is told, nobody else."""
        self.counts["responder_lost"] += 1
        log.warning(
            "bus.reject code=responder_lost identity=%s peer=%s responder=%s",
            asker.identity,
            asker.name,
            responder.name,
        )
        self._error(
            asker,
            "responder_lost",
            f"responder {responder.name} went away",
            correlation_id=correlation_id,
        )

    def reject_unregistered(
        self,
        socket: zmq.Socket[bytes],
        routing_id: bytes,
        code: str,
        reason: str,
        ref: Any,
        *,
        command: bytes = b"",
    ) -> None:
        """Reject a message from a connection that is not a registered peer."""
        self.counts[code] += 1
        log.warning("bus.reject code=%s peer=unregistered reason=%s", code, reason)
        body = wire.pack(
            [{"code": code, "reason": reason, "id": None, "correlation_id": None, "ref": ref}]
        )
        send_quietly(socket, [routing_id, wire.ERROR, body])
        self.outbox.emit(
            topics.BUS_ERROR,
            {
                "code": code,
                "reason": reason,
                "identity": None,
                "peer": "unregistered",
                "command": command.decode("ascii", "replace"),
                "topic": None,
                "message_id": None,
            },
        )

    def _error(
        self,
        peer: Peer,
        code: str,
        reason: str,
        *,
        message_id: bytes | None = None,
        correlation_id: bytes | None = None,
        ref: Any = None,
    ) -> None:
        self.outbox.send(
            peer,
            wire.ERROR,
            {
                "code": code,
                "reason": reason,
                "id": message_id,
                "correlation_id": correlation_id,
                "ref": ref,
            },
        )


def peek_id(data: bytes) -> bytes | None:
    """The message id of a broken envelope, when it can be read, so the error can name it."""
    try:
        fields = wire.unpack_body(data, len(data))
    except EnvelopeError:
        return None
    if isinstance(fields, list) and len(fields) > 1 and isinstance(fields[1], bytes):
        return fields[1]
    return None
