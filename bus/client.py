"""The asyncio client of the bus: publish/subscribe, ask/serve, enqueue/consume.

A thin driver around its sans-I/O :class:`~bus.session.ClientSession`, which holds the state
(pending asks, subscriptions, services, consumers, unfinished work, the outgoing queue) and decodes
what the broker sends. This module owns one DEALER socket to the broker, the event loop's timers
and the heartbeat. Outgoing messages are sent once per event-loop turn, several envelopes to a
frame (at once if someone waits on them); incoming frames are drained in batches after each
wake-up. The client re-registers (HELLO, then everything the session holds) whenever the broker
does not know it: after a broker restart or after a silence longer than the liveness window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from bus import wire
from bus._io import SocketPump, send_frames
from bus.envelope import Envelope, Payload
from bus.errors import AskTimeout, AuthError, BusClosed, RemoteError
from bus.keys import KeyPair, check_identity
from bus.session import ClientSession
from bus.subscription import Consumer, Subscription
from config.bus import BusSettings

log = logging.getLogger("taskbus.bus.client")

_RETRY_SEND_S = 0.001  # a full pipe is retried this soon
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
        self._session = ClientSession(
            self.identity, self.settings.max_message_bytes, self._on_queued
        )
        self._sock: zmq.Socket[bytes] | None = None
        self._pump: SocketPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._registered = False
        self._registering: asyncio.Task[None] | None = None
        self._heartbeat_s = self.settings.heartbeat_interval_s
        self._flush_handle: asyncio.Handle | None = None
        self._retry_send: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._last_heard = 0.0
        self._last_sent = 0.0
        self.errors = self._session.errors
        self.counters = self._session.counters

    @property
    def peer_name(self) -> str:
        """The broker's name for this connection (``identity#n``)."""
        return self._session.peer_name

    @property
    def registered_identity(self) -> str:
        """The identity the broker knows this client by."""
        return self._session.registered_identity

    # ------------------------------------------------------------ lifecycle

    async def start(self, timeout: float | None = None) -> None:
        """Connect and register; raises :class:`AuthError` if the broker does not answer."""
        self._open_socket()
        try:
            await self._hello(timeout or self.settings.ask_timeout_s)
        except BaseException:
            self._close_socket()
            self._session.closed = True
            if self._own_context:
                self._context.term()
            raise
        self._tasks.append(
            asyncio.create_task(self._heartbeat(), name=f"{self.identity}-heartbeat")
        )

    async def stop(self) -> None:
        if self._session.closed:
            return
        self._session.closed = True
        if self._sock is not None:
            if self._registered:
                self._flush()
            # Even mid-registration: the broker may know us already; it ignores a stranger's BYE.
            with contextlib.suppress(zmq.ZMQError):
                self._sock.send_multipart([wire.BYE], zmq.NOBLOCK)
        tasks: list[asyncio.Task[None] | None] = [*self._tasks, self._registering]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for handle in (self._flush_handle, self._retry_send):
            if handle is not None:
                handle.cancel()
        self._session.fail_all(BusClosed("client stopped"))
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
        self._session.publish(topic, payload)
        if self._session.out_count > _OUT_HIGH_WATER:
            await self._drained.wait()

    async def subscribe(self, *prefixes: str, maxsize: int = 10_000) -> Subscription:
        """Subscribe to topic prefixes; live (no slow-joiner gap) once this returns."""
        subscription = self._session.subscribe(prefixes, maxsize)
        try:
            await self._control(wire.SUBSCRIBE, prefixes=list(prefixes))
        except BaseException:
            self._session.cancel_subscription(subscription)
            raise
        return subscription

    async def watch(self, *prefixes: str) -> None:
        """Learn, and keep learning, whether anyone subscribes under ``prefixes``: from then on
        an event under one nobody listens to is not sent at all (``stats()["counters"]
        ["unheard"]``). Events published after a subscription was acknowledged still reach it:
        the broker tells this client before it acknowledges the subscriber."""
        self._session.watch(prefixes)
        try:
            await self._control(wire.WATCH, prefixes=list(prefixes))
        except BaseException:
            self._session.unwatch(prefixes)
            raise

    @property
    def watched(self) -> dict[str, bool | None]:
        """Each watched prefix: whether anyone subscribes under it (None: not known yet)."""
        return dict(self._session.watched)

    async def unsubscribe(self, subscription: Subscription) -> None:
        gone = self._session.unsubscribe(subscription)
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
        request_id, future = self._session.ask(topic, payload)
        limit = timeout if timeout is not None else self.settings.ask_timeout_s
        loop = asyncio.get_running_loop()
        timer = loop.call_later(limit, _time_out, future, topic, limit)  # cheaper than wait_for
        try:
            return await future
        finally:
            timer.cancel()
            self._session.forget_ask(request_id)

    async def serve(self, *prefixes: str, maxsize: int = 10_000) -> Subscription:
        """Receive requests for topic prefixes; answer each with :meth:`reply`."""
        inbox = self._session.serve(prefixes, maxsize)
        try:
            await self._control(wire.SERVE, prefixes=list(prefixes))
        except BaseException:
            self._session.cancel_service(inbox)
            raise
        return inbox

    def reply(self, request: Envelope, payload: Payload | None = None) -> None:
        self._session.reply(request, payload)

    def reply_error(self, request: Envelope, code: str, reason: str) -> None:
        self._session.reply_error(request, code, reason)

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
        return self._session.enqueue(queue, payload, message_id)

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
        consumer, previous = self._session.consume(queue, credit)
        try:
            await self._control(wire.CONSUME, queue=queue, credit=credit)
        except BaseException:
            self._session.cancel_consumer(queue, previous)
            raise
        return consumer

    async def stop_consuming(self, consumer: Consumer) -> None:
        """No new work; items already delivered must still be acknowledged."""
        await self._control(wire.CONSUME, queue=consumer.queue, credit=0)
        self._session.stop_consuming(consumer)

    # ------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "registered_identity": self.registered_identity,
            "peer": self.peer_name,
            "registered": self._registered,
            **self._session.stats(),
        }

    # ------------------------------------------------------------ output

    def _on_queued(self, urgent: bool) -> None:
        if self._session.out_count == 1:
            self._drained.clear()
        if urgent:  # someone waits on it: no reason to wait for the loop to turn
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
        session = self._session
        limit = min(self.settings.max_message_bytes, wire.BATCH_TARGET_BYTES)
        while (frame := session.next_frame(limit)) is not None:
            command, body, count = frame
            try:
                send_frames(sock, (command, body))
            except zmq.Again:
                self._retry_send = asyncio.get_running_loop().call_later(_RETRY_SEND_S, self._flush)
                return
            session.sent(count)
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
        ref, future, body = self._session.hello()
        assert self._sock is not None
        assert self._pump is not None
        self._sock.send_multipart([wire.HELLO, body], zmq.NOBLOCK)
        self._pump.after_send()
        try:
            welcome = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AuthError(
                f"broker at {self.endpoint} did not answer within {timeout}s: "
                "not authorised or unreachable"
            ) from None
        finally:
            self._session.forget_control(ref)
        self._heartbeat_s = self._session.welcome(welcome, self.settings.heartbeat_interval_s)
        self._registered = True
        self._last_heard = self._clock()
        self._flush()

    async def _control(self, command: bytes, **args: Any) -> dict[str, Any]:
        ref, future = self._session.control(command, **args)
        try:
            return await asyncio.wait_for(future, self.settings.ask_timeout_s)
        except TimeoutError:
            raise AskTimeout(
                f"broker did not confirm {command!r} within {self.settings.ask_timeout_s}s"
            ) from None
        finally:
            self._session.forget_control(ref)

    async def _register_again(self, reason: str, new_socket: bool) -> None:
        """Re-establish everything the broker knew of us, retrying with backoff."""
        self.counters["reconnects"] += 1
        log.warning(
            "bus.client %s re-registering with %s: %s", self.identity, self.endpoint, reason
        )
        delay = 0.1
        while not self._session.closed:
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
        self._session.reregister()
        self._flush()

    def _schedule_reregister(self, reason: str, new_socket: bool) -> None:
        if self._session.closed or (self._registering is not None and not self._registering.done()):
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
        if self._session.out and self._flush_handle is None and self._retry_send is None:
            self._flush()

    def _log_bug(self, exc: BaseException) -> None:
        log.error("bus.client %s failed on a frame from the broker", self.identity, exc_info=exc)

    def _on_frames(self, frames: list[bytes]) -> None:
        self._last_heard = self._clock()
        if frames[0] == wire.WHO:
            self._schedule_reregister("broker does not know this client", False)
        else:
            self._session.receive(frames)


def _time_out(future: asyncio.Future[Any], topic: str, limit: float) -> None:
    if not future.done():
        future.set_exception(
            AskTimeout(
                f"no reply to {topic!r} within {limit}s (responder slow or gone, or not authorised)"
            )
        )
