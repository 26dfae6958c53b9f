"""The broker's routing logic without sockets: frames in, batched output queued on peers.

The driver (:mod:`bus.broker`) authenticates each message, hands it here with the peer's identity,
and sends what this leaves in ``Peer.out``. Every rejection is answered to its sender, counted,
logged on one line and published as a ``bus.error`` event; nothing a peer sends can raise out.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import zmq

from bus import wire
from bus.acl import ASK, CONSUME, ENQUEUE, PUBLISH, RECEIVE, SERVE, SUBSCRIBE, Acl
from bus.envelope import Envelope, restamp, validated_fields
from bus.errors import AuthError, EnvelopeError
from bus.keys import check_identity
from bus.peer import InFlight, Peer
from bus.topics import check_prefix, check_topic
from bus.workqueue import WorkQueue
from config.bus import BusSettings

log = logging.getLogger("taskbus.bus.broker")

BROKER_IDENTITY = "broker"
PENDING_ASK_TTL_S = 300.0


class Rejected(Exception):
    """Internal control flow: becomes an error reply, never leaves this module."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class PendingAsk:
    asker: Peer
    responder: Peer
    created: float


class BrokerCore:
    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.acl = Acl(settings.acl, settings.roles)
        self.peers: dict[tuple[int, bytes], Peer] = {}
        self.by_name: dict[str, Peer] = {}
        self.subscriptions: dict[str, set[Peer]] = {}
        self.services: dict[str, list[Peer]] = {}
        self.queues: dict[str, WorkQueue] = {}
        self.pending_asks: dict[tuple[str, bytes], PendingAsk] = {}
        self.dirty: set[Peer] = set()
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._fanout_cache: dict[str, tuple[Peer, ...]] = {}
        self._service_rr = itertools.count()
        self._names = itertools.count(1)
        self._max = settings.max_message_bytes

    # ---------------------------------------------------------------- peers

    def peer(self, socket_index: int, routing_id: bytes) -> Peer | None:
        return self.peers.get((socket_index, routing_id))

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
        old = self.peers.get((socket_index, routing_id))
        if old is not None:
            self.drop_peer(old, "re-registered")
        ref: Any = None  # known once the body parses, so the client learns the real reason
        try:
            batch = wire.unpack_controls(body, self._max)
            if len(batch) != 1:
                raise Rejected("malformed", "hello body must hold exactly one map")
            args = batch[0]
            ref = args.get("ref")
            claimed = args.get("identity")
            identity = authenticated if authenticated is not None else claimed
            if not isinstance(identity, str):
                raise Rejected("field", "hello needs an 'identity' string")
            check_identity(identity)
        except (EnvelopeError, Rejected) as exc:
            self.reject_unregistered(
                socket, routing_id, exc.code, exc.reason, ref=ref, command=wire.HELLO
            )
            return
        except AuthError as exc:
            self.reject_unregistered(
                socket, routing_id, "field", str(exc), ref=ref, command=wire.HELLO
            )
            return
        peer = Peer(
            socket=socket,
            routing_id=routing_id,
            identity=identity,
            name=f"{identity}#{next(self._names)}",
            remote=authenticated is not None,
            last_seen=now,
        )
        self.peers[(socket_index, routing_id)] = peer
        self.by_name[peer.name] = peer
        self._control_ack(
            peer,
            args.get("ref"),
            identity=identity,
            peer=peer.name,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            max_message_bytes=self._max,
        )
        log.info(
            "bus.peer.up identity=%s peer=%s transport=%s", identity, peer.name, peer.transport
        )
        self.emit(
            "bus.peer.up", {"identity": identity, "peer": peer.name, "transport": peer.transport}
        )

    def drop_peer(self, peer: Peer, reason: str) -> None:
        """Forget a peer: its unacknowledged work is requeued, its askers are told."""
        if not peer.alive:
            return
        peer.alive = False
        for peer_key, known in list(self.peers.items()):
            if known is peer:
                del self.peers[peer_key]
        self.by_name.pop(peer.name, None)
        self.dirty.discard(peer)
        for prefix in peer.subscriptions:
            self._remove_from(self.subscriptions, prefix, peer)
        for prefix in peer.services:
            providers = self.services.get(prefix, [])
            if peer in providers:
                providers.remove(peer)
            if not providers:
                self.services.pop(prefix, None)
        self._fanout_cache.clear()
        for queue_name in peer.credit:
            queue = self.queues.get(queue_name)
            if queue is not None:
                queue.remove_consumer(peer)
        requeued = 0
        for item in sorted(peer.inflight.values(), key=lambda i: i.message_id, reverse=True):
            self.queues.setdefault(item.queue, WorkQueue(item.queue)).requeue(item)
            requeued += 1
        peer.inflight.clear()
        for key, ask in list(self.pending_asks.items()):
            if ask.responder is peer:
                del self.pending_asks[key]
                self.errors["responder_lost"] += 1
                log.warning(
                    "bus.reject code=responder_lost identity=%s peer=%s responder=%s",
                    ask.asker.identity,
                    ask.asker.name,
                    peer.name,
                )
                self._error(
                    ask.asker,
                    "responder_lost",
                    f"responder {peer.name} went away",
                    correlation_id=key[1],
                )
            elif ask.asker is peer:
                del self.pending_asks[key]
        for queue in list(self.queues.values()):
            self._dispatch(queue)
        log.info(
            "bus.peer.down identity=%s peer=%s reason=%s requeued=%d",
            peer.identity,
            peer.name,
            reason,
            requeued,
        )
        self.emit(
            "bus.peer.down",
            {"identity": peer.identity, "peer": peer.name, "reason": reason, "requeued": requeued},
        )

    def expire(self, now: float) -> None:
        """Drop peers silent for longer than the liveness window, and stale pending asks."""
        deadline = now - self.settings.peer_timeout_s
        for peer in [p for p in self.peers.values() if p.last_seen < deadline]:
            self.drop_peer(peer, "heartbeat timeout")
        stale = now - PENDING_ASK_TTL_S
        for key in [k for k, a in self.pending_asks.items() if a.created < stale]:
            del self.pending_asks[key]

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
                self._ack(peer, wire.unpack_body(body, self._max))
            elif command == wire.NACK:
                self._nack(peer, wire.unpack_body(body, self._max))
            elif command in wire.CONTROL_COMMANDS:
                for args in wire.unpack_controls(body, self._max):
                    self._control(peer, command, args)
            elif command == wire.BYE:
                self.drop_peer(peer, "said bye")
            else:
                raise Rejected("unknown_command", f"unknown command {command!r}")
        except EnvelopeError as exc:
            self.reject(peer, exc.code, exc.reason, command=command)
        except Rejected as exc:
            self.reject(peer, exc.code, exc.reason, command=command)

    def _envelopes(self, peer: Peer, command: bytes, items: list[bytes], now: float) -> None:
        identity = peer.identity
        allows = self.acl.allows
        for data in items:
            try:
                fields = validated_fields(data, self._max)
            except EnvelopeError as exc:
                self.reject(peer, exc.code, exc.reason, command=command, message_id=_peek_id(data))
                continue
            topic = fields[2]
            action = _SENDING.get(command)
            if action is not None and not allows(identity, action, topic):
                self.reject(
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
                self._fanout(topic, restamp(fields, identity))
            elif command == wire.REQUEST:
                self._request(peer, fields, now)
            elif command == wire.REPLY:
                self._reply(peer, fields)
            else:
                self._enqueue(peer, fields)

    def _fanout(self, topic: str, data: bytes) -> None:
        receivers = self._fanout_cache.get(topic)
        if receivers is None:
            receivers = self._receivers(topic)
        for receiver in receivers:
            receiver.queue_out(wire.PUBLISH, data)
            self.dirty.add(receiver)

    def _receivers(self, topic: str) -> tuple[Peer, ...]:
        found: set[Peer] = set()
        for prefix, peers in self.subscriptions.items():
            if topic.startswith(prefix):
                found.update(p for p in peers if self.acl.allows(p.identity, RECEIVE, topic))
        receivers = tuple(sorted(found, key=lambda p: p.name))
        if len(self._fanout_cache) > 65_536:
            self._fanout_cache.clear()
        self._fanout_cache[topic] = receivers
        return receivers

    def _request(self, asker: Peer, fields: list[Any], now: float) -> None:
        correlation_id = fields[5] if fields[5] is not None else fields[1]
        fields[5] = correlation_id
        topic = fields[2]
        if topic.startswith("bus."):
            self._answer_bus_request(asker, topic, correlation_id)
            return
        responder = self._responder(topic)
        if responder is None:
            self.reject(
                asker,
                "no_responder",
                f"nothing serves {topic!r}",
                command=wire.REQUEST,
                message_id=fields[1],
                correlation_id=correlation_id,
                topic=topic,
            )
            return
        self.pending_asks[(asker.name, correlation_id)] = PendingAsk(asker, responder, now)
        responder.queue_out(wire.REQUEST, restamp(fields, asker.identity, asker.name))
        self.dirty.add(responder)
        self.counters["requests"] += 1

    def _responder(self, topic: str) -> Peer | None:
        best: list[Peer] = []
        best_length = -1
        for prefix, providers in self.services.items():
            if len(prefix) > best_length and topic.startswith(prefix):
                allowed = [p for p in providers if self.acl.allows(p.identity, SERVE, topic)]
                if allowed:
                    best, best_length = allowed, len(prefix)
        if not best:
            return None
        return best[next(self._service_rr) % len(best)]

    def _reply(self, responder: Peer, fields: list[Any]) -> None:
        key = (fields[6], fields[5])
        ask = self.pending_asks.get(key) if isinstance(fields[6], str) else None
        if ask is None or ask.responder is not responder:
            self.reject(
                responder,
                "unknown_request",
                "reply matches no request delivered to you (late, or not yours)",
                command=wire.REPLY,
                message_id=fields[1],
                correlation_id=fields[5],
            )
            return
        del self.pending_asks[key]
        ask.asker.queue_out(wire.REPLY, restamp(fields, responder.identity))
        self.dirty.add(ask.asker)
        self.counters["replies"] += 1

    def _enqueue(self, producer: Peer, fields: list[Any]) -> None:
        queue = self.queues.get(fields[2])
        if queue is None:
            queue = self.queues[fields[2]] = WorkQueue(fields[2])
        if fields[1] in queue.held:
            # A producer re-sent unfinished work the broker still holds (after a reconnect):
            # one copy per id, or two deliveries would share one in-flight slot and leak credit.
            self.counters["duplicate_enqueues"] += 1
            producer.queue_out(wire.CONFIRM, fields[1])
            self.dirty.add(producer)
            return
        data = restamp(fields, producer.identity)
        settings = self.settings
        if (
            len(queue.held) >= settings.max_queue_items
            or queue.held_bytes + len(data) > settings.max_queue_bytes
        ):
            self.reject(
                producer,
                "queue_full",
                f"queue {queue.name!r} holds {len(queue.held)} items of {queue.held_bytes} "
                f"bytes; the limits are {settings.max_queue_items} items and "
                f"{settings.max_queue_bytes} bytes (bus.max_queue_items, bus.max_queue_bytes)",
                command=wire.ENQUEUE,
                message_id=fields[1],
                topic=queue.name,
            )
            return
        producer.queue_out(wire.CONFIRM, fields[1])
        self.dirty.add(producer)
        queue.hold(InFlight(fields[2], fields[1], data, producer.name, 0))
        self.counters["enqueued"] += 1
        self._dispatch(queue)

    def _dispatch(self, queue: WorkQueue) -> None:
        for peer in queue.dispatch():
            self.dirty.add(peer)

    def _ack(self, peer: Peer, ids: Any) -> None:
        if not isinstance(ids, list):
            raise Rejected("malformed", "ack body must be an array of message ids")
        touched: set[str] = set()
        for message_id in ids:
            item = peer.inflight.pop(message_id, None) if isinstance(message_id, bytes) else None
            if item is None:
                self.counters["unknown_acks"] += 1
                continue
            peer.credit[item.queue] = peer.credit.get(item.queue, 0) + 1
            touched.add(item.queue)
            self.counters["acked"] += 1
            queue = self.queues[item.queue]
            queue.acked += 1
            queue.release(item)
            self._tell_producer_done(item)
        for name in touched:
            self._dispatch(self.queues[name])

    def _tell_producer_done(self, item: InFlight) -> None:
        """The producer may forget the item: it was acknowledged, or discarded by a nack."""
        producer = self.by_name.get(item.producer)
        if producer is not None:
            producer.queue_out(wire.DONE, item.message_id)
            self.dirty.add(producer)

    def _nack(self, peer: Peer, entries: Any) -> None:
        if not isinstance(entries, list):
            raise Rejected("malformed", "nack body must be an array of [message_id, requeue]")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)):
                raise Rejected("malformed", "nack entries must be [message_id, requeue]")
            item = peer.inflight.pop(entry[0], None)
            if item is None:
                continue
            peer.credit[item.queue] = peer.credit.get(item.queue, 0) + 1
            queue = self.queues[item.queue]
            if entry[1]:
                queue.requeue(item)
            else:
                self.counters["discarded"] += 1
                queue.release(item)
                self._tell_producer_done(item)
            self._dispatch(queue)

    def _control(self, peer: Peer, command: bytes, args: dict[str, Any]) -> None:
        ref = args.get("ref")
        try:
            if command == wire.SUBSCRIBE:
                self._subscribe(peer, _strings(args, "prefixes"))
            elif command == wire.UNSUBSCRIBE:
                for prefix in _strings(args, "prefixes"):
                    peer.subscriptions.discard(prefix)
                    self._remove_from(self.subscriptions, prefix, peer)
                self._fanout_cache.clear()
            elif command == wire.SERVE:
                self._serve(peer, _strings(args, "prefixes"))
            elif command == wire.CONSUME:
                self._consume(peer, args)
            else:  # HELLO from a registered peer on the same connection
                raise Rejected("field", "already registered")
        except EnvelopeError as exc:
            self.reject(peer, exc.code, exc.reason, command=command, ref=ref)
            return
        except Rejected as exc:
            self.reject(peer, exc.code, exc.reason, command=command, ref=ref)
            return
        self._control_ack(peer, ref)

    def _subscribe(self, peer: Peer, prefixes: list[str]) -> None:
        for prefix in prefixes:
            check_prefix(prefix)
            if not self.acl.allows(peer.identity, SUBSCRIBE, prefix):
                raise Rejected("denied", f"{peer.identity!r} may not subscribe to {prefix!r}")
        for prefix in prefixes:
            peer.subscriptions.add(prefix)
            self.subscriptions.setdefault(prefix, set()).add(peer)
        self._fanout_cache.clear()

    def _serve(self, peer: Peer, prefixes: list[str]) -> None:
        for prefix in prefixes:
            check_prefix(prefix)
            if prefix.startswith("bus.") or not self.acl.allows(peer.identity, SERVE, prefix):
                raise Rejected("denied", f"{peer.identity!r} may not serve {prefix!r}")
        for prefix in prefixes:
            peer.services.add(prefix)
            providers = self.services.setdefault(prefix, [])
            if peer not in providers:
                providers.append(peer)

    def _consume(self, peer: Peer, args: dict[str, Any]) -> None:
        name, credit = args.get("queue"), args.get("credit")
        if not isinstance(name, str):
            raise Rejected("field", "consume needs a 'queue' string")
        check_topic(name)
        if not isinstance(credit, int) or isinstance(credit, bool) or not 0 <= credit <= 1_000_000:
            raise Rejected("field", f"credit must be an integer from 0 to 1000000, got {credit!r}")
        if not self.acl.allows(peer.identity, CONSUME, name):
            raise Rejected("denied", f"{peer.identity!r} may not consume {name!r}")
        busy = sum(1 for item in peer.inflight.values() if item.queue == name)
        peer.credit[name] = max(0, credit - busy)
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = WorkQueue(name)
        if credit == 0:  # stopped consuming: settling what it still holds must not refill it
            queue.remove_consumer(peer)
        else:
            queue.add_consumer(peer)
        self._dispatch(queue)

    # ------------------------------------------------------------- outputs

    def emit(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish an event of the broker's own (``bus.*``)."""
        envelope = Envelope(topic, payload, BROKER_IDENTITY)
        self._fanout(topic, envelope.encode())

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
        self.errors[code] += 1
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
        self.emit(
            "bus.error",
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
        peer.queue_out(
            wire.ERROR,
            {
                "code": code,
                "reason": reason,
                "id": message_id,
                "correlation_id": correlation_id,
                "ref": ref,
            },
        )
        self.dirty.add(peer)

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
        self.errors[code] += 1
        log.warning("bus.reject code=%s peer=unregistered reason=%s", code, reason)
        body = wire.pack(
            [{"code": code, "reason": reason, "id": None, "correlation_id": None, "ref": ref}]
        )
        send_quietly(socket, [routing_id, wire.ERROR, body])
        self.emit(
            "bus.error",
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

    def _control_ack(self, target: Peer, ref: Any, /, **extra: Any) -> None:
        target.queue_out(wire.CONTROL_ACK, {"ref": ref, **extra})
        self.dirty.add(target)

    def _answer_bus_request(self, asker: Peer, topic: str, correlation_id: bytes) -> None:
        if topic == "bus.stats":
            payload: dict[str, Any] = self.stats()
        elif topic == "bus.peers":
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
                    for p in self.peers.values()
                ]
            }
        else:
            self.reject(
                asker,
                "unknown_topic",
                f"the broker serves bus.stats and bus.peers, not {topic!r}",
                command=wire.REQUEST,
                correlation_id=correlation_id,
                topic=topic,
            )
            return
        reply = Envelope(topic, payload, BROKER_IDENTITY, correlation_id=correlation_id)
        asker.queue_out(wire.REPLY, reply.encode())
        self.dirty.add(asker)

    def stats(self) -> dict[str, Any]:
        # Counted over every peer: one that stopped consuming may still hold work.
        held = Counter(item.queue for p in self.peers.values() for item in p.inflight.values())
        return {
            "peers": len(self.peers),
            "counters": dict(self.counters),
            "errors": dict(self.errors),
            "dropped_events": self.counters["dropped_events"],
            "pending_asks": len(self.pending_asks),
            "queues": {
                name: {
                    "pending": len(q.pending),
                    "inflight": held[name],
                    "held_bytes": q.held_bytes,
                    "consumers": len(q.consumers),
                    "delivered": q.delivered,
                    "redelivered": q.redelivered,
                }
                for name, q in self.queues.items()
            },
        }

    @staticmethod
    def _remove_from(index: dict[str, set[Peer]], prefix: str, peer: Peer) -> None:
        members = index.get(prefix)
        if members is not None:
            members.discard(peer)
            if not members:
                del index[prefix]


# The ACL action of each envelope a peer sends; a REPLY needs none (it must match an ask).
_SENDING = {wire.PUBLISH: PUBLISH, wire.REQUEST: ASK, wire.ENQUEUE: ENQUEUE}


def _strings(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Rejected("field", f"'{key}' must be a non-empty array of strings")
    return value


def _peek_id(data: bytes) -> bytes | None:
    """The message id of a broken envelope, when it can be read, so the error can name it."""
    try:
        fields = wire.unpack_body(data, len(data))
    except EnvelopeError:
        return None
    if isinstance(fields, list) and len(fields) > 1 and isinstance(fields[1], bytes):
        return fields[1]
    return None


def send_quietly(socket: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send if possible; a full or vanished connection has nobody left to tell."""
    with contextlib.suppress(zmq.ZMQError):
        socket.send_multipart(frames, zmq.NOBLOCK)
