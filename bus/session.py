"""A bus client's state without a socket: what it awaits, what the broker must know, what to send.

The sans-I/O half of :class:`bus.BusClient`; its driver (:mod:`bus.client`) owns the socket, the
event loop, timers and registration. A session holds the futures of pending asks, enqueues and
control commands; the subscriptions, services and consumers it registered; the work it sent and
no consumer acknowledged yet; and the outgoing queue, coalesced into runs of one command that the
driver sends a frame at a time (:meth:`ClientSession.next_frame`). Frames from the broker are
decoded here into events, requests, replies, work and errors, each handed to its inbox or future.
When the broker forgets the client, :meth:`ClientSession.reregister` queues what it must relearn.
Nothing here awaits or touches a socket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from bus import wire
from bus.envelope import Envelope, Payload, decode_trusted, encode_new
from bus.errors import BusClosed, BusError, RemoteError, remote_error
from bus.subscription import Consumer, Delivery, Inbox, Subscription
from bus.topics import check_prefix, check_topic

log = logging.getLogger("taskbus.bus.client")

ERROR_KEY = "$error"  # payload key of an error reply (docs/protocol.md)
# Sent at once; everything else (events, work, acks) is coalesced once per loop turn.
URGENT = frozenset({wire.REQUEST, wire.REPLY, *wire.CONTROL_COMMANDS})
_NO_LIMIT = 1 << 31  # the broker is trusted: its frames are not size-checked


class ClientSession:
    """``on_queued(urgent)`` is called after every item queued for sending; ``urgent`` when
    someone waits on it, so it should go at once rather than with the next batch."""

    def __init__(
        self, identity: str, max_message_bytes: int, on_queued: Callable[[bool], None]
    ) -> None:
        self.identity = identity
        self._max = max_message_bytes
        self._on_queued = on_queued
        self.closed = False
        self.peer_name = ""
        self.registered_identity = ""
        # Outgoing: runs of (command, items), in the order they were queued.
        self.out: list[tuple[bytes, list[Any]]] = []
        self.out_count = 0
        self._refs = itertools.count(1)
        self.controls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.asks: dict[bytes, asyncio.Future[Envelope]] = {}
        self.confirms: dict[bytes, asyncio.Future[bytes]] = {}
        self.unfinished: dict[bytes, bytes] = {}  # work sent, by id, until the broker says DONE
        self.subscriptions: list[Subscription] = []
        self.services: list[Subscription] = []
        self.consumers: dict[str, Consumer] = {}
        # Watched prefixes -> whether anyone subscribes under them (None: not known yet): an
        # event under one nobody listens to is not sent (counted ``unheard``).
        self.watched: dict[str, bool | None] = {}
        self.errors: Inbox[RemoteError] = Inbox(1000)
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ output

    def encode(
        self,
        topic: str,
        payload: Payload | None,
        correlation_id: bytes | None = None,
        reply_to: str | None = None,
        *,
        message_id: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        if self.closed:
            raise BusClosed("client stopped")
        return encode_new(
            topic,
            {} if payload is None else payload,
            self._max,
            correlation_id,
            reply_to,
            message_id=message_id,
        )

    def queue(self, command: bytes, item: Any) -> None:
        out = self.out
        if out and out[-1][0] == command:
            out[-1][1].append(item)
        else:
            out.append((command, [item]))
        self.out_count += 1
        self._on_queued(command in URGENT)

    def next_frame(self, limit: int) -> tuple[bytes, bytes, int] | None:
        """The next frame to send, about ``limit`` bytes: ``(command, body, items)``; None when
        nothing is queued. Call :meth:`sent` once it is sent."""
        if not self.out:
            return None
        command, items = self.out[0]
        count = wire.chunk_length(items, limit)
        return command, wire.pack(items[:count]), count

    def sent(self, count: int) -> None:
        """The frame :meth:`next_frame` returned went out: its ``count`` items leave the queue."""
        items = self.out[0][1]
        del items[:count]
        self.out_count -= count
        if not items:
            self.out.pop(0)

    # ------------------------------------------------------------ registration

    def hello(self) -> tuple[int, asyncio.Future[dict[str, Any]], bytes]:
        """A HELLO's control ref, the future of its answer, and its body (sent unqueued)."""
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.controls[ref] = future
        return ref, future, wire.pack([{"ref": ref, "identity": self.identity}])

    def welcome(self, answer: dict[str, Any], heartbeat_s: float) -> float:
        """Take in the broker's answer to HELLO; returns the heartbeat interval to keep."""
        self.peer_name = answer.get("peer", "")
        # What the broker knows us as (remote peers are named by their key, not their claim),
        # and its heartbeat pace, which bounds ours so the broker never finds us silent.
        self.registered_identity = str(answer.get("identity", self.identity))
        broker_interval = answer.get("heartbeat_interval_s")
        if isinstance(broker_interval, int | float) and broker_interval > 0:
            return min(heartbeat_s, float(broker_interval))
        return heartbeat_s

    def control(self, command: bytes, **args: Any) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Queue a control command; its future resolves to the broker's acknowledgement."""
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.controls[ref] = future
        self.queue(command, {"ref": ref, **args})
        return ref, future

    def forget_control(self, ref: int) -> None:
        self.controls.pop(ref, None)

    def reregister(self) -> None:
        """Queue everything a broker that forgot this client must learn again."""
        prefixes = sorted({p for s in self.subscriptions for p in s.prefixes})
        if prefixes:
            self._resend_control(wire.SUBSCRIBE, prefixes=prefixes)
        services = sorted({p for s in self.services for p in s.prefixes})
        if services:
            self._resend_control(wire.SERVE, prefixes=services)
        for queue, consumer in self.consumers.items():
            self._resend_control(wire.CONSUME, queue=queue, credit=consumer.credit)
        if self.watched:
            self.watched = dict.fromkeys(self.watched)  # unknown until this broker answers
            self._resend_control(wire.WATCH, prefixes=sorted(self.watched))
        for data in self.unfinished.values():
            self.queue(wire.ENQUEUE, data)

    def _resend_control(self, command: bytes, **args: Any) -> None:
        self.queue(command, {"ref": next(self._refs), **args})

    # ------------------------------------------------------------ events

    def publish(self, topic: str, payload: Payload | None) -> None:
        if self.watched and not self.heard(topic):
            self.counters["unheard"] += 1
            return
        self.queue(wire.PUBLISH, self.encode(topic, payload)[1])
        self.counters["published"] += 1

    def heard(self, topic: str) -> bool:
        """False only when ``topic`` is under a watched prefix nobody subscribes to."""
        for prefix, listened in self.watched.items():
            if listened is False and topic.startswith(prefix):
                return False
        return True

    def watch(self, prefixes: tuple[str, ...]) -> None:
        for prefix in prefixes:
            check_prefix(prefix)
        for prefix in prefixes:
            self.watched.setdefault(prefix, None)

    def unwatch(self, prefixes: tuple[str, ...]) -> None:
        """The broker refused to watch them: their events are always sent."""
        for prefix in prefixes:
            self.watched.pop(prefix, None)

    def subscribe(self, prefixes: tuple[str, ...], maxsize: int) -> Subscription:
        """A new inbox, listed at once: events may arrive ahead of the broker's acknowledgement."""
        for prefix in prefixes:
            check_prefix(prefix)
        subscription = Subscription(prefixes, maxsize)
        self.subscriptions.append(subscription)
        return subscription

    def cancel_subscription(self, subscription: Subscription) -> None:
        """The broker did not confirm it."""
        self.subscriptions.remove(subscription)

    def unsubscribe(self, subscription: Subscription) -> list[str]:
        """Close it; returns the prefixes no other subscription of this client still uses."""
        self.subscriptions.remove(subscription)
        subscription.close()
        still_used = {p for s in self.subscriptions for p in s.prefixes}
        return [p for p in subscription.prefixes if p not in still_used]

    # ------------------------------------------------------------ request/reply

    def ask(self, topic: str, payload: Payload | None) -> tuple[bytes, asyncio.Future[Envelope]]:
        """Queue a request; the future resolves to its reply. :meth:`forget_ask` when done."""
        request_id, data = self.encode(topic, payload)
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self.asks[request_id] = future
        self.counters["asks"] += 1
        try:
            self.queue(wire.REQUEST, data)
        except BaseException:
            del self.asks[request_id]
            raise
        return request_id, future

    def forget_ask(self, request_id: bytes) -> None:
        self.asks.pop(request_id, None)

    def serve(self, prefixes: tuple[str, ...], maxsize: int) -> Subscription:
        """A new inbox, listed at once: requests may come ahead of the broker's acknowledgement."""
        for prefix in prefixes:
            check_prefix(prefix)
        inbox = Subscription(prefixes, maxsize)
        self.services.append(inbox)
        return inbox

    def cancel_service(self, inbox: Subscription) -> None:
        """The broker did not confirm it."""
        self.services.remove(inbox)

    def reply(self, request: Envelope, payload: Payload | None = None) -> None:
        _, data = self.encode(request.topic, payload, request.correlation_id, request.reply_to)
        self.queue(wire.REPLY, data)

    def reply_error(self, request: Envelope, code: str, reason: str) -> None:
        self.reply(request, {ERROR_KEY: {"code": code, "reason": reason}})

    # ------------------------------------------------------------ work queues

    def enqueue(
        self, queue: str, payload: Payload | None, message_id: bytes | None
    ) -> asyncio.Future[bytes]:
        """Queue work, kept until done; the future resolves to its id once the broker holds it."""
        message_id, data = self.encode(queue, payload, message_id=message_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if message_id in self.unfinished:  # this client already sent it and still keeps it
            waiting = self.confirms.get(message_id)
            if waiting is not None:
                return waiting
            future.set_result(message_id)
            return future
        self.confirms[message_id] = future
        self.unfinished[message_id] = data
        self.queue(wire.ENQUEUE, data)
        self.counters["enqueued"] += 1
        return future

    def consume(self, queue: str, credit: int) -> tuple[Consumer, Consumer | None]:
        """A new consumer, registered at once (the broker delivers waiting work ahead of its
        acknowledgement), and the one it replaced."""
        check_topic(queue)
        consumer = Consumer(queue, credit)
        previous = self.consumers.get(queue)
        self.consumers[queue] = consumer
        return consumer, previous

    def cancel_consumer(self, queue: str, previous: Consumer | None) -> None:
        """The broker did not confirm the new consumer: the one it replaced is back."""
        if previous is None:
            self.consumers.pop(queue, None)
        else:
            self.consumers[queue] = previous

    def stop_consuming(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.queue, None)
        consumer.close()

    def settle(self, message_id: bytes, requeue: bool | None) -> None:
        """Acknowledge (``requeue`` None) or give back a delivered item."""
        if requeue is None:
            self.queue(wire.ACK, message_id)
            self.counters["acked"] += 1
        else:
            self.queue(wire.NACK, [message_id, requeue])

    # ------------------------------------------------------------ input

    def receive(self, frames: list[bytes]) -> None:
        """One message from the broker; WHO (a connection matter) is the driver's."""
        command = frames[0]
        body = frames[1] if len(frames) > 1 else b""
        if command == wire.PUBLISH:
            for data in wire.unpack_batch(body, _NO_LIMIT):
                self._on_event(decode_trusted(data))
        elif command == wire.DELIVER:
            for attempt, data in wire.unpack_body(body, _NO_LIMIT):
                self._on_work(decode_trusted(data), attempt)
        elif command == wire.REPLY:
            for data in wire.unpack_batch(body, _NO_LIMIT):
                self._on_reply(decode_trusted(data))
        elif command == wire.REQUEST:
            for data in wire.unpack_batch(body, _NO_LIMIT):
                self._on_request(decode_trusted(data))
        elif command == wire.CONFIRM:
            for message_id in wire.unpack_body(body, _NO_LIMIT):
                future = self.confirms.pop(message_id, None)
                if future is not None and not future.done():
                    future.set_result(message_id)
        elif command == wire.DONE:
            for message_id in wire.unpack_body(body, _NO_LIMIT):
                self.unfinished.pop(message_id, None)
        elif command == wire.CONTROL_ACK:
            for ack in wire.unpack_body(body, _NO_LIMIT):
                self._resolve_control(ack.get("ref"), ack)
        elif command == wire.ERROR:
            for error in wire.unpack_body(body, _NO_LIMIT):
                self._on_error(error)
        elif command == wire.LISTENERS:
            for change in wire.unpack_body(body, _NO_LIMIT):
                if change.get("prefix") in self.watched:
                    self.watched[change["prefix"]] = change.get("listened") is True

    def _on_event(self, envelope: Envelope) -> None:
        topic = envelope.topic
        for subscription in self.subscriptions:
            for prefix in subscription.prefixes:
                if topic.startswith(prefix):
                    subscription.push(envelope)
                    break

    def _on_request(self, envelope: Envelope) -> None:
        best: Subscription | None = None
        best_length = -1
        for inbox in self.services:
            for prefix in inbox.prefixes:
                if len(prefix) > best_length and envelope.topic.startswith(prefix):
                    best, best_length = inbox, len(prefix)
        if best is None or not best.push(envelope):
            self.reply_error(
                envelope, "busy", f"{self.identity} cannot take {envelope.topic!r} now"
            )

    def _on_reply(self, envelope: Envelope) -> None:
        future = self.asks.get(envelope.correlation_id or b"")
        if future is None or future.done():
            self.counters["late_replies"] += 1
            return
        error = envelope.payload.get(ERROR_KEY)
        if isinstance(error, dict):
            future.set_exception(remote_error(str(error.get("code")), str(error.get("reason"))))
        else:
            future.set_result(envelope)

    def _on_work(self, envelope: Envelope, attempt: int) -> None:
        consumer = self.consumers.get(envelope.topic)
        if consumer is None or not consumer.push(Delivery(envelope, attempt, self.settle)):
            self.settle(envelope.id, True)  # not ours (any more): give it back, never drop it

    def _on_error(self, error: dict[str, Any]) -> None:
        remote = remote_error(str(error.get("code")), str(error.get("reason")))
        self.counters[f"error_{remote.code}"] += 1
        for key in (error.get("correlation_id"), error.get("id")):
            if not isinstance(key, bytes):
                continue
            ask = self.asks.get(key)
            if ask is not None and not ask.done():
                ask.set_exception(remote)
                return
            confirm = self.confirms.pop(key, None)
            if confirm is not None:
                self.unfinished.pop(key, None)
                if not confirm.done():
                    confirm.set_exception(remote)
                return
        if self._resolve_control(error.get("ref"), None, remote):
            return
        log.warning("bus.client %s got error %s: %s", self.identity, remote.code, remote.reason)
        self.errors.push(remote)

    def _resolve_control(
        self, ref: Any, ack: dict[str, Any] | None, error: BusError | None = None
    ) -> bool:
        future = self.controls.get(ref) if isinstance(ref, int) else None
        if future is None or future.done():
            return False
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(ack or {})
        return True

    # ------------------------------------------------------------ closing

    def fail_all(self, error: BusError) -> None:
        """Fail every waiter with ``error`` and close every inbox."""
        futures: list[asyncio.Future[Any]] = [
            *self.asks.values(),
            *self.confirms.values(),
            *self.controls.values(),
        ]
        for future in futures:
            if not future.done():
                future.set_exception(error)
        for subscription in [*self.subscriptions, *self.services]:
            subscription.close()
        for consumer in self.consumers.values():
            consumer.close()

    def stats(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "dropped_events": sum(s.dropped for s in self.subscriptions),
            "pending_asks": len(self.asks),
            "unfinished_work": len(self.unfinished),
            "queued_output": self.out_count,
        }
