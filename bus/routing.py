"""The broker's routing logic without sockets: frames in, batched output queued on peers.

The driver (:mod:`bus.broker`) authenticates each message, hands it here with the peer's identity,
and sends what this leaves in ``Peer.out``. This module registers peers and dispatches each command
to its handler: events fan out through the :class:`~bus.peer_table.PeerTable`, requests and replies
go through :class:`~bus.asks.PendingAsks`, work through :class:`~bus.queues.WorkQueues`, output
waits in the :class:`~bus.outbox.Outbox`. Every refusal goes through
:class:`~bus.rejection.Rejections` (answered, counted, logged on one line, published as a
``bus.error`` event); nothing a peer sends can raise out.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import zmq

from bus import wire
from bus.acl import ASK, ENQUEUE, PUBLISH, SERVE, SUBSCRIBE, Acl
from bus.asks import PendingAsks
from bus.envelope import Envelope, validated_fields
from bus.errors import AuthError, EnvelopeError, Refused
from bus.keys import check_identity
from bus.outbox import BROKER_IDENTITY, Outbox
from bus.peer import Peer
from bus.peer_table import PeerTable
from bus.queues import WorkQueues
from bus.rejection import Rejections, peek_id
from bus.stamp import stamp
from bus.topics import check_prefix
from config import topics
from config.bus import BusSettings

log = logging.getLogger("taskbus.bus.broker")


class BrokerCore:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.acl = Acl(settings.acl, settings.roles)
        self.counters: Counter[str] = Counter()
        self.table = PeerTable(self.acl)
        self.outbox = Outbox(self.table)
        self.rejections = Rejections(self.outbox)
        self.asks = PendingAsks(self.table, self.outbox, self.rejections, self.counters)
        self.work = WorkQueues(settings, self.table, self.outbox, self.rejections, self.counters)
        self._max = settings.max_message_bytes

    @property
    def peers(self) -> dict[tuple[int, bytes], Peer]:
        return self.table.peers

    @property
    def dirty(self) -> set[Peer]:
        """Peers with output waiting: the driver sends it and discards them."""
        return self.outbox.dirty

    @property
    def errors(self) -> Counter[str]:
        """Refusals by code."""
        return self.rejections.counts

    # ---------------------------------------------------------------- peers

    def peer(self, socket_index: int, routing_id: bytes) -> Peer | None:
        return self.table.get(socket_index, routing_id)

    def hello(
        self,
        socket_index: int,
        *,
        socket: zmq.Socket[bytes],
        routing_id: bytes,
        authenticated: str | None,
        body: bytes,
        now: float,
    ) -> None:
        """Register a peer. Remote peers are named by CURVE; in-process peers name themselves."""
        old = self.table.get(socket_index, routing_id)
        if old is not None:
            self.drop_peer(old, "re-registered")
        ref: Any = None  # known once the body parses, so the client learns the real reason
        try:
            batch = wire.unpack_controls(body, self._max)
            if len(batch) != 1:
                raise Refused("malformed", "hello body must hold exactly one map")
            args = batch[0]
            ref = args.get("ref")
            claimed = args.get("identity")
            identity = authenticated if authenticated is not None else claimed
            if not isinstance(identity, str):
                raise Refused("field", "hello needs an 'identity' string")
            check_identity(identity)
        except Refused as exc:
            self.rejections.reject_unregistered(
                socket, routing_id, exc.code, exc.reason, ref=ref, command=wire.HELLO
            )
            return
        except AuthError as exc:
            self.rejections.reject_unregistered(
                socket, routing_id, "field", str(exc), ref=ref, command=wire.HELLO
            )
            return
        peer = Peer(
            socket=socket,
            routing_id=routing_id,
            identity=identity,
            name=self.table.new_name(identity),
            remote=authenticated is not None,
            last_seen=now,
        )
        self.table.add(socket_index, peer)
        self.outbox.control_ack(
            peer,
            args.get("ref"),
            identity=identity,
            peer=peer.name,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            max_message_bytes=self._max,
        )
        log.debug(  # every CLI call connects: routine, so not at the default level
            "bus.peer.up identity=%s peer=%s transport=%s", identity, peer.name, peer.transport
        )
        self.outbox.emit(
            topics.BUS_PEER_UP,
            {"identity": identity, "peer": peer.name, "transport": peer.transport},
        )

    def drop_peer(self, peer: Peer, reason: str) -> None:
        """Forget a peer: its unacknowledged work is requeued, its askers are told."""
        if not peer.alive:
            return
        peer.alive = False
        self.table.remove(peer)
        self.outbox.dirty.discard(peer)
        if peer.subscriptions:
            self._tell_listeners()
        requeued = self.work.peer_gone(peer)
        self.asks.peer_gone(peer)
        self.work.dispatch_all()
        log.log(
            logging.DEBUG if reason == "said bye" and not requeued else logging.INFO,
            "bus.peer.down identity=%s peer=%s reason=%s requeued=%d",
            peer.identity,
            peer.name,
            reason,
            requeued,
        )
        self.outbox.emit(
            topics.BUS_PEER_DOWN,
            {"identity": peer.identity, "peer": peer.name, "reason": reason, "requeued": requeued},
        )

    def expire(self, now: float) -> None:
        """Drop peers silent for longer than the liveness window, and stale pending asks."""
        deadline = now - self.settings.peer_timeout_s
        for peer in [p for p in self.table.peers.values() if p.last_seen < deadline]:
            self.drop_peer(peer, "heartbeat timeout")
        self.asks.expire(now)

    # ------------------------------------------------------------- commands

    def handle(self, peer: Peer, command: bytes, body: bytes, now: float) -> None:
        peer.last_seen = now
        self.counters["frames_in"] += 1
        try:
            if command == wire.HEARTBEAT:
                return
            if command in wire.ENVELOPE_COMMANDS:
                self._envelopes(peer, command, wire.unpack_batch(body, self._max), now)
            elif command == wire.ACK:
                self.work.ack(peer, wire.unpack_body(body, self._max))
            elif command == wire.NACK:
                self.work.nack(peer, wire.unpack_body(body, self._max))
            elif command in wire.CONTROL_COMMANDS:
                for args in wire.unpack_controls(body, self._max):
                    self._control(peer, command, args)
            elif command == wire.BYE:
                self.drop_peer(peer, "said bye")
            else:
                raise Refused("unknown_command", f"unknown command {command!r}")
        except Refused as exc:  # EnvelopeError included
            self.rejections.reject(peer, exc.code, exc.reason, command=command)

    def _envelopes(self, peer: Peer, command: bytes, items: list[bytes], now: float) -> None:
        identity = peer.identity
        allows = self.acl.allows
        reject = self.rejections.reject
        for data in items:
            try:
                fields = validated_fields(data, self._max)
            except EnvelopeError as exc:
                reject(peer, exc.code, exc.reason, command=command, message_id=peek_id(data))
                continue
            topic = fields[2]
            action = _SENDING.get(command)
            if action is not None and not allows(identity, action, topic):
                reject(
                    peer,
                    "denied",
                    f"{identity!r} may not {action} {topic!r}",
                    command=command,
                    message_id=fields[1],
                    correlation_id=fields[5],
                    topic=topic,
                )
                continue
            if command == wire.PUBLISH:
                self.counters["published"] += 1
                self.outbox.fanout(topic, stamp(data, fields, identity))
            elif command == wire.REQUEST:
                self._request(peer, data, fields, now)
            elif command == wire.REPLY:
                self.asks.reply(peer, data, fields)
            else:
                self.work.enqueue(peer, data, fields)

    def _request(self, asker: Peer, data: bytes, fields: list[Any], now: float) -> None:
        correlation_id = fields[5] if fields[5] is not None else fields[1]
        fields[5] = correlation_id
        topic = fields[2]
        if topic.startswith(topics.BUS):
            self._answer_bus_request(asker, topic, correlation_id)
        else:
            self.asks.forward(asker, data, fields, now)

    def _control(self, peer: Peer, command: bytes, args: dict[str, Any]) -> None:
        ref = args.get("ref")
        try:
            if command == wire.SUBSCRIBE:
                self._subscribe(peer, _strings(args, "prefixes"))
                self._tell_listeners()  # queued before the ack: see _tell_listeners
            elif command == wire.UNSUBSCRIBE:
                self.table.unsubscribe(peer, _strings(args, "prefixes"))
                self._tell_listeners()
            elif command == wire.WATCH:
                self._watch(peer, _strings(args, "prefixes"))
            elif command == wire.SERVE:
                self._serve(peer, _strings(args, "prefixes"))
            elif command == wire.CONSUME:
                self.work.consume(peer, args)
            else:  # HELLO from a registered peer on the same connection
                raise Refused("field", "already registered")
        except Refused as exc:  # EnvelopeError included
            self.rejections.reject(peer, exc.code, exc.reason, command=command, ref=ref)
            return
        self.outbox.control_ack(peer, ref)

    def _check_prefixes(
        self,
        peer: Peer,
        prefixes: list[str],
        action: str,
        doing: str,
        never: tuple[str, ...] = (),
    ) -> None:
        """All or nothing: every prefix valid, not under one of ``never``, and allowed
        ``action`` by the ACL; else refused ``denied`` ("'eve' may not <doing> 'secret.'")."""
        for prefix in prefixes:
            check_prefix(prefix)
            if prefix.startswith(never) or not self.acl.allows(peer.identity, action, prefix):
                raise Refused("denied", f"{peer.identity!r} may not {doing} {prefix!r}")

    def _subscribe(self, peer: Peer, prefixes: list[str]) -> None:
        self._check_prefixes(peer, prefixes, SUBSCRIBE, "subscribe to")
        self.table.subscribe(peer, prefixes)

    def _watch(self, peer: Peer, prefixes: list[str]) -> None:
        self._check_prefixes(peer, prefixes, PUBLISH, "publish to")
        for prefix in prefixes:
            peer.watching.setdefault(prefix, None)
        self._tell_listeners(peer)

    def _tell_listeners(self, only: Peer | None = None) -> None:
        """Tell each watching peer (or ``only``) whether its watched prefixes are listened to,
        where that changed. Queued before the acknowledgement of the subscription that changed
        it: the subscriber's next message reaches a publisher after this (each connection is in
        order), so nothing it causes is published into the void."""
        peers = [only] if only is not None else self.table.peers.values()
        for peer in peers:
            if not peer.watching:
                continue
            for prefix, told in peer.watching.items():
                listened = self.table.listened(prefix)
                if listened is not told:
                    peer.watching[prefix] = listened
                    self.outbox.send(peer, wire.LISTENERS, {"prefix": prefix, "listened": listened})

    def _serve(self, peer: Peer, prefixes: list[str]) -> None:
        self._check_prefixes(peer, prefixes, SERVE, "serve", never=(topics.BUS,))
        self.table.serve(peer, prefixes)

    # ------------------------------------------------------------- the broker's own topics

    def _answer_bus_request(self, asker: Peer, topic: str, correlation_id: bytes) -> None:
        if topic == topics.BUS_STATS:
            payload: dict[str, Any] = self.stats()
        elif topic == topics.BUS_PEERS:
            payload = {
                "peers": [
                    {
                        "identity": p.identity,
                        "peer": p.name,
                        "transport": p.transport,
                        "subscriptions": sorted(p.subscriptions),
                        "services": sorted(p.services),
                        "inflight": len(p.inflight),
                        "dropped_events": p.dropped_events,
                    }
                    for p in self.table.peers.values()
                ]
            }
        else:
            self.rejections.reject(
                asker,
                "unknown_topic",
                f"the broker serves bus.stats and bus.peers, not {topic!r}",
                command=wire.REQUEST,
                correlation_id=correlation_id,
                topic=topic,
            )
            return
        reply = Envelope(topic, payload, BROKER_IDENTITY, correlation_id=correlation_id)
        self.outbox.send(asker, wire.REPLY, reply.encode())

    def stats(self) -> dict[str, Any]:
        peers = self.table.peers
        # Counted over every peer: one that stopped consuming may still hold work.
        held = Counter(item.queue for p in peers.values() for item in p.inflight.values())
        return {
            "peers": len(peers),
            "counters": dict(self.counters),
            "errors": dict(self.errors),
            "dropped_events": self.counters["dropped_events"],
            "pending_asks": len(self.asks),
            "queues": {
                name: {
                    "pending": len(q.pending),
                    "inflight": held[name],
                    "held_bytes": q.held_bytes,
                    "consumers": len(q.consumers),
                    "delivered": q.delivered,
                    "redelivered": q.redelivered,
                }
                for name, q in self.work.queues.items()
            },
        }


# The ACL action of each envelope a peer sends; a REPLY needs none (it must match an ask).
_SENDING = {wire.PUBLISH: PUBLISH, wire.REQUEST: ASK, wire.ENQUEUE: ENQUEUE}


def _strings(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Refused("field", f"'{key}' must be a non-empty array of strings")
    return value
