"""The asyncio client of the bus: publish/subscribe, ask/serve, enqueue/consume.

One DEALER socket to the broker. Outgoing messages are queued and sent once per event-loop turn,
several envelopes to a frame; incoming frames are drained in batches after each wake-up. The client
re-registers (HELLO, subscriptions, services, consumers, unfinished work) whenever the broker does
not know it: after a broker restart or after a silence longer than the liveness window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq

from bus import wire
from bus._io import SocketPump
from bus.envelope import Envelope, Payload, decode_trusted, encode_new
from bus.errors import AskTimeout, AuthError, BusClosed, BusError, RemoteError
from bus.keys import KeyPair, check_identity
from bus.subscription import Consumer, Delivery, Inbox, Subscription
from bus.topics import check_prefix, check_topic
from config.bus import BusSettings

log = logging.getLogger("taskbus.bus.client")

ERROR_KEY = "$error"  # payload key of an error reply (docs/protocol.md)
_RETRY_SEND_S = 0.001  # a full pipe is retried this soon
# Sent at once; everything else (events, work, acks) is coalesced once per loop turn.
_URGENT = frozenset({wire.REQUEST, wire.REPLY, *wire.CONTROL_COMMANDS})
_OUT_HIGH_WATER = 20_000  # queued outgoing items above which publish() waits


class BusClient:
    def __init__(
        self,
        endpoint: str,
        *,
        identity: str,
        context: zmq.Context[Any] | None = None,
        keypair: KeyPair | None = None,
        server_key: bytes | None = None,
        settings: BusSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.identity = check_identity(identity)
        self.settings = settings or BusSettings()
        remote = not endpoint.startswith("inproc://")
        if remote and (keypair is None or server_key is None):
            raise AuthError(
                f"{endpoint}: tcp/ipc needs a client keypair and the broker's public key"
            )
        self._keypair = keypair if remote else None
        self._server_key = server_key
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._clock = clock
        self._max = self.settings.max_message_bytes
        self._sock: zmq.Socket[bytes] | None = None
        self._pump: SocketPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registered = False
        self._registering: asyncio.Task[None] | None = None
        self._closed = False
        self.peer_name = ""
        self.registered_identity = ""
        self._heartbeat_s = self.settings.heartbeat_interval_s
        self._out: list[tuple[bytes, list[Any]]] = []
        self._out_count = 0
        self._flush_handle: asyncio.Handle | None = None
        self._retry_send: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._refs = itertools.count(1)
        self._controls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._asks: dict[bytes, asyncio.Future[Envelope]] = {}
        self._confirms: dict[bytes, asyncio.Future[bytes]] = {}
        self._unfinished: dict[bytes, bytes] = {}
        self._subscriptions: list[Subscription] = []
        self._services: list[Subscription] = []
        self._consumers: dict[str, Consumer] = {}
        self._last_heard = 0.0
        self._last_sent = 0.0
        self.errors: Inbox[RemoteError] = Inbox(1000)
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ lifecycle

    async def start(self, timeout: float | None = None) -> None:
        """Connect and register; raises :class:`AuthError` if the broker does not answer."""
        self._open_socket()
        try:
            await self._hello(timeout or self.settings.ask_timeout_s)
        except BaseException:
            self._close_socket()
            self._closed = True
            if self._own_context:
                self._context.term()
            raise
        self._tasks.append(
            asyncio.create_task(self._heartbeat(), name=f"{self.identity}-heartbeat")
        )

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            if self._registered:
                self._flush()
            # Even mid-registration: the broker may know us already; it ignores a stranger's BYE.
            with contextlib.suppress(zmq.ZMQError):
                self._sock.send_multipart([wire.BYE], zmq.NOBLOCK)
        tasks: list[asyncio.Task[None] | None] = [
            *self._tasks,
            self._registering,
        ]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for handle in (self._flush_handle, self._retry_send):
            if handle is not None:
                handle.cancel()
        self._fail_waiters(BusClosed("client stopped"))
        for subscription in [*self._subscriptions, *self._services]:
            subscription.close()
        for consumer in self._consumers.values():
            consumer.close()
        self._close_socket(linger=100)
        if self._own_context:
            self._context.term()

    async def __aenter__(self) -> BusClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ events

    async def publish(self, topic: str, payload: Payload | None = None) -> None:
        """Publish an event. Waits only when too much output is queued (backpressure)."""
        self._queue(wire.PUBLISH, self._encode(topic, payload)[1])
        self.counters["published"] += 1
        if self._out_count > _OUT_HIGH_WATER:
            await self._drained.wait()

    async def subscribe(self, *prefixes: str, maxsize: int = 10_000) -> Subscription:
        """Subscribe to topic prefixes; live (no slow-joiner gap) once this returns."""
        for prefix in prefixes:
            check_prefix(prefix)
        subscription = Subscription(prefixes, maxsize)
        # Listed before asking: events may arrive ahead of the broker's acknowledgement.
        self._subscriptions.append(subscription)
        try:
            await self._control(wire.SUBSCRIBE, prefixes=list(prefixes))
        except BaseException:
            self._subscriptions.remove(subscription)
            raise
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
        subscription.close()
        still_used = {p for s in self._subscriptions for p in s.prefixes}
        gone = [p for p in subscription.prefixes if p not in still_used]
        if gone:
            await self._control(wire.UNSUBSCRIBE, prefixes=gone)

    # ------------------------------------------------------------ request/reply

    async def ask(
        self, topic: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Envelope:
        """Send a request to one server of ``topic`` and wait for its reply.

        Raises :class:`RemoteError` for an error reply or a refusal, :class:`AskTimeout` if no
        answer arrives in time.
        """
        request_id, data = self._encode(topic, payload)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Envelope] = loop.create_future()
        limit = timeout if timeout is not None else self.settings.ask_timeout_s
        error = AskTimeout(
            f"no reply to {topic!r} within {limit}s (responder slow or gone, or not authorised)"
        )
        timer = loop.call_later(limit, _fail, future, error)  # cheaper than asyncio.wait_for
        self._asks[request_id] = future
        self.counters["asks"] += 1
        try:
            self._queue(wire.REQUEST, data)
            return await future
        finally:
            timer.cancel()
            self._asks.pop(request_id, None)

    async def serve(self, *prefixes: str, maxsize: int = 10_000) -> Subscription:
        """Receive requests for topic prefixes; answer each with :meth:`reply`."""
        for prefix in prefixes:
            check_prefix(prefix)
        inbox = Subscription(prefixes, maxsize)
        # Listed before asking: requests may arrive ahead of the broker's acknowledgement.
        self._services.append(inbox)
        try:
            await self._control(wire.SERVE, prefixes=list(prefixes))
        except BaseException:
            self._services.remove(inbox)
            raise
        return inbox

    def reply(self, request: Envelope, payload: Payload | None = None) -> None:
        _, data = self._encode(request.topic, payload, request.correlation_id, request.reply_to)
        self._queue(wire.REPLY, data)

    def reply_error(self, request: Envelope, code: str, reason: str) -> None:
        self.reply(request, {ERROR_KEY: {"code": code, "reason": reason}})

    # ------------------------------------------------------------ work queues

    def enqueue_nowait(
        self, queue: str, payload: Payload | None = None, *, message_id: bytes | None = None
    ) -> asyncio.Future[bytes]:
        """Queue a unit of work; the future resolves to its id once the broker holds it.

        The client keeps the item until a consumer acknowledged it and sends it again after a
        reconnect, so work is delivered at least once even if the broker restarts. A stable
        ``message_id`` (16 bytes) makes a repeated enqueue of the same work a no-op while the
        broker still holds it, whichever producer sends it.
        """
        message_id, data = self._encode(queue, payload, message_id=message_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if message_id in self._unfinished:  # this client already sent it and still keeps it
            waiting = self._confirms.get(message_id)
            if waiting is not None:
                return waiting
            future.set_result(message_id)
            return future
        self._confirms[message_id] = future
        self._unfinished[message_id] = data
        self._queue(wire.ENQUEUE, data)
        self.counters["enqueued"] += 1
        return future

    async def enqueue(
        self,
        queue: str,
        payload: Payload | None = None,
        timeout: float | None = None,
        *,
        message_id: bytes | None = None,
    ) -> bytes:
        future = self.enqueue_nowait(queue, payload, message_id=message_id)
        limit = timeout if timeout is not None else self.settings.ask_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            raise AskTimeout(f"broker did not confirm work on {queue!r} within {limit}s") from None

    async def consume(self, queue: str, credit: int = 100) -> Consumer:
        """Take work from ``queue``: at most ``credit`` unacknowledged items at a time."""
        check_topic(queue)
        consumer = Consumer(queue, credit)
        previous = self._consumers.get(queue)
        # Registered before asking: the broker delivers waiting work ahead of its acknowledgement.
        self._consumers[queue] = consumer
        try:
            await self._control(wire.CONSUME, queue=queue, credit=credit)
        except BaseException:
            if previous is None:
                self._consumers.pop(queue, None)
            else:
                self._consumers[queue] = previous
            raise
        return consumer

    async def stop_consuming(self, consumer: Consumer) -> None:
        """No new work; items already delivered must still be acknowledged."""
        await self._control(wire.CONSUME, queue=consumer.queue, credit=0)
        self._consumers.pop(consumer.queue, None)
        consumer.close()

    def _settle(self, message_id: bytes, requeue: bool | None) -> None:
        if requeue is None:
            self._queue(wire.ACK, message_id)
            self.counters["acked"] += 1
        else:
            self._queue(wire.NACK, [message_id, requeue])

    # ------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "registered_identity": self.registered_identity,
            "peer": self.peer_name,
            "registered": self._registered,
            "counters": dict(self.counters),
            "dropped_events": sum(s.dropped for s in self._subscriptions),
            "pending_asks": len(self._asks),
            "unfinished_work": len(self._unfinished),
            "queued_output": self._out_count,
        }

    # ------------------------------------------------------------ output

    def _encode(
        self,
        topic: str,
        payload: Payload | None,
        correlation_id: bytes | None = None,
        reply_to: str | None = None,
        *,
        message_id: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        if self._closed:
            raise BusClosed("client stopped")
        return encode_new(
            topic,
            {} if payload is None else payload,
            self._max,
            correlation_id,
            reply_to,
            message_id=message_id,
        )

    def _queue(self, command: bytes, item: Any) -> None:
        out = self._out
        if out and out[-1][0] == command:
            out[-1][1].append(item)
        else:
            out.append((command, [item]))
        self._out_count += 1
        if self._out_count == 1:
            self._drained.clear()
        if command in _URGENT:  # someone waits on it: no reason to wait for the loop to turn
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._retry_send = None
        sock = self._sock
        if sock is None or not self._registered:
            return
        limit = min(self._max, wire.BATCH_TARGET_BYTES)
        while self._out:
            command, items = self._out[0]
            while items:
                count = wire.chunk_length(items, limit)
                try:
                    sock.send_multipart([command, wire.pack(items[:count])], zmq.NOBLOCK)
                except zmq.Again:
                    self._retry_send = asyncio.get_running_loop().call_later(
                        _RETRY_SEND_S, self._flush
                    )
                    return
                del items[:count]
                self._out_count -= count
            self._out.pop(0)
        self._last_sent = self._clock()
        self._drained.set()
        if self._pump is not None:
            self._pump.after_send()

    # ------------------------------------------------------------ connection

    def _open_socket(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Socket(self._context, zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self.settings.send_hwm)
        sock.setsockopt(zmq.RCVHWM, self.settings.receive_hwm)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self.settings.reconnect_max_s * 1000))
        if self._keypair is not None and self._server_key is not None:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._keypair.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._keypair.secret)
            sock.setsockopt(zmq.CURVE_SERVERKEY, self._server_key)
        sock.connect(self.endpoint)
        self._sock = sock
        self._pump = SocketPump(sock, self._on_frames, self._after_batch, on_error=self._log_bug)

    def _close_socket(self, linger: int = 0) -> None:
        if self._pump is not None:
            self._pump.close()
        if self._sock is not None:
            self._sock.close(linger=linger)
        self._sock = self._pump = None
        self._registered = False

    async def _hello(self, timeout: float) -> None:
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._controls[ref] = future
        assert self._sock is not None
        assert self._pump is not None
        self._sock.send_multipart(
            [wire.HELLO, wire.pack([{"ref": ref, "identity": self.identity}])], zmq.NOBLOCK
        )
        self._pump.after_send()
        try:
            welcome = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AuthError(
                f"broker at {self.endpoint} did not answer within {timeout}s: "
                "not authorised or unreachable"
            ) from None
        finally:
            self._controls.pop(ref, None)
        self.peer_name = welcome.get("peer", "")
        # What the broker knows us as (remote peers are named by their key, not their claim),
        # and its heartbeat pace, which bounds ours so the broker never finds us silent.
        self.registered_identity = str(welcome.get("identity", self.identity))
        broker_interval = welcome.get("heartbeat_interval_s")
        if isinstance(broker_interval, int | float) and broker_interval > 0:
            self._heartbeat_s = min(self.settings.heartbeat_interval_s, float(broker_interval))
        self._registered = True
        self._last_heard = self._clock()
        self._flush()

    async def _control(self, command: bytes, **args: Any) -> dict[str, Any]:
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._controls[ref] = future
        self._queue(command, {"ref": ref, **args})
        try:
            return await asyncio.wait_for(future, self.settings.ask_timeout_s)
        except TimeoutError:
            raise AskTimeout(
                f"broker did not confirm {command!r} within {self.settings.ask_timeout_s}s"
            ) from None
        finally:
            self._controls.pop(ref, None)

    async def _register_again(self, reason: str, new_socket: bool) -> None:
        """Re-establish everything the broker knew of us, retrying with backoff."""
        self.counters["reconnects"] += 1
        log.warning(
            "bus.client %s re-registering with %s: %s", self.identity, self.endpoint, reason
        )
        delay = 0.1
        while not self._closed:
            if new_socket:
                self._close_socket()
                self._open_socket()
            self._registered = False
            try:
                await self._hello(max(self.settings.peer_timeout_s, 0.5))
            except (AuthError, RemoteError) as exc:
                log.warning("bus.client %s not registered yet: %s", self.identity, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
                new_socket = True
                continue
            break
        self._reregister_state()

    def _reregister_state(self) -> None:
        prefixes = sorted({p for s in self._subscriptions for p in s.prefixes})
        if prefixes:
            self._resend_control(wire.SUBSCRIBE, prefixes=prefixes)
        services = sorted({p for s in self._services for p in s.prefixes})
        if services:
            self._resend_control(wire.SERVE, prefixes=services)
        for queue, consumer in self._consumers.items():
            self._resend_control(wire.CONSUME, queue=queue, credit=consumer.credit)
        for data in self._unfinished.values():
            self._queue(wire.ENQUEUE, data)
        self._flush()

    def _resend_control(self, command: bytes, **args: Any) -> None:
        self._queue(command, {"ref": next(self._refs), **args})

    def _schedule_reregister(self, reason: str, new_socket: bool) -> None:
        if self._closed or (self._registering is not None and not self._registering.done()):
            return
        self._registered = False
        self._registering = asyncio.create_task(self._register_again(reason, new_socket))

    async def _heartbeat(self) -> None:
        due = self._clock() + self._heartbeat_s / 2
        while True:
            await asyncio.sleep(max(0.0, due - self._clock()))
            interval = self._heartbeat_s
            now = self._clock()
            stalled = now - due > interval  # our own loop was late: the broker may not be silent
            due = now + interval / 2
            if stalled:
                log.warning(
                    "bus.client %s event loop stalled; liveness check skipped once", self.identity
                )
            elif self._registered and now - self._last_heard > self.settings.peer_timeout_s:
                self._schedule_reregister("broker silent past the liveness window", True)
            elif self._registered and now - self._last_sent >= interval / 2 and self._sock:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.send_multipart([wire.HEARTBEAT], zmq.NOBLOCK)
                self._last_sent = now
                if self._pump is not None:
                    self._pump.after_send()

    # ------------------------------------------------------------ input

    def _after_batch(self) -> None:
        if self._out and self._flush_handle is None and self._retry_send is None:
            self._flush()

    def _log_bug(self, exc: BaseException) -> None:
        log.error("bus.client %s failed on a frame from the broker", self.identity, exc_info=exc)

    def _on_frames(self, frames: list[bytes]) -> None:
        self._last_heard = self._clock()
        command = frames[0]
        body = frames[1] if len(frames) > 1 else b""
        if command == wire.PUBLISH:
            for data in wire.unpack_batch(body, 1 << 31):
                self._on_event(decode_trusted(data))
        elif command == wire.DELIVER:
            for attempt, data in wire.unpack_body(body, 1 << 31):
                self._on_work(decode_trusted(data), attempt)
        elif command == wire.REPLY:
            for data in wire.unpack_batch(body, 1 << 31):
                self._on_reply(decode_trusted(data))
        elif command == wire.REQUEST:
            for data in wire.unpack_batch(body, 1 << 31):
                self._on_request(decode_trusted(data))
        elif command == wire.CONFIRM:
            for message_id in wire.unpack_body(body, 1 << 31):
                future = self._confirms.pop(message_id, None)
                if future is not None and not future.done():
                    future.set_result(message_id)
        elif command == wire.DONE:
            for message_id in wire.unpack_body(body, 1 << 31):
                self._unfinished.pop(message_id, None)
        elif command == wire.CONTROL_ACK:
            for ack in wire.unpack_body(body, 1 << 31):
                self._resolve_control(ack.get("ref"), ack)
        elif command == wire.ERROR:
            for error in wire.unpack_body(body, 1 << 31):
                self._on_error(error)
        elif command == wire.WHO:
            self._schedule_reregister("broker does not know this client", False)

    def _on_event(self, envelope: Envelope) -> None:
        topic = envelope.topic
        for subscription in self._subscriptions:
            for prefix in subscription.prefixes:
                if topic.startswith(prefix):
                    subscription.push(envelope)
                    break

    def _on_request(self, envelope: Envelope) -> None:
        best: Subscription | None = None
        best_length = -1
        for inbox in self._services:
            for prefix in inbox.prefixes:
                if len(prefix) > best_length and envelope.topic.startswith(prefix):
                    best, best_length = inbox, len(prefix)
        if best is None or not best.push(envelope):
            self.reply_error(
                envelope, "busy", f"{self.identity} cannot take {envelope.topic!r} now"
            )

    def _on_reply(self, envelope: Envelope) -> None:
        future = self._asks.get(envelope.correlation_id or b"")
        if future is None or future.done():
            self.counters["late_replies"] += 1
            return
        error = envelope.payload.get(ERROR_KEY)
        if isinstance(error, dict):
            future.set_exception(RemoteError(str(error.get("code")), str(error.get("reason"))))
        else:
            future.set_result(envelope)

    def _on_work(self, envelope: Envelope, attempt: int) -> None:
        consumer = self._consumers.get(envelope.topic)
        if consumer is None or not consumer.push(Delivery(envelope, attempt, self._settle)):
            self._settle(envelope.id, True)  # not ours (any more): give it back, never drop it

    def _on_error(self, error: dict[str, Any]) -> None:
        remote = RemoteError(str(error.get("code")), str(error.get("reason")))
        self.counters[f"error_{remote.code}"] += 1
        for key in (error.get("correlation_id"), error.get("id")):
            if not isinstance(key, bytes):
                continue
            ask = self._asks.get(key)
            if ask is not None and not ask.done():
                ask.set_exception(remote)
                return
            confirm = self._confirms.pop(key, None)
            if confirm is not None:
                self._unfinished.pop(key, None)
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
        future = self._controls.get(ref) if isinstance(ref, int) else None
        if future is None or future.done():
            return False
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(ack or {})
        return True

    def _fail_waiters(self, error: BusError) -> None:
        futures: list[asyncio.Future[Any]] = [
            *self._asks.values(),
            *self._confirms.values(),
            *self._controls.values(),
        ]
        for future in futures:
            if not future.done():
                future.set_exception(error)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
