"""The broker: one object with start/stop, embeddable in any asyncio event loop.

It listens on inproc (peers in this process, trusted by the process boundary and named by their
HELLO) and on any number of tcp/ipc endpoints where CurveZMQ is mandatory and a peer's identity is
the name of its allow-listed key. Each wake-up drains a batch of messages without awaiting, then
sends what the batch produced, one frame per peer and command: that is what lets a Python loop keep
up with libzmq (``../docs/protocol.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio

from bus import wire
from bus._io import SocketPump, recv_frames, send_frames, send_quietly
from bus.auth import ZAP_DOMAIN, AllowListAuthenticator
from bus.errors import AuthError, BusError
from bus.keys import KeysDirectory
from bus.peer import Peer
from bus.routing import BrokerCore
from config.bus import BusSettings

log = logging.getLogger("taskbus.bus.broker")

LOCAL, REMOTE = 0, 1
_RETRY_DELAY_S = 0.001


class CannotListen(BusError):
    """An endpoint could not be bound (``in_use``: another process listens there)."""

    def __init__(self, endpoint: str, cause: zmq.ZMQError) -> None:
        reason = os.strerror(cause.errno) if cause.errno is not None else str(cause)
        super().__init__(f"cannot listen on {endpoint}: {reason}")
        self.endpoint = endpoint
        self.in_use = cause.errno == errno.EADDRINUSE
        self.code = "in_use" if self.in_use else "cannot_listen"


class Broker:
    def __init__(
        self,
        *,
        settings: BusSettings | None = None,
        keys: KeysDirectory | None = None,
        endpoints: Sequence[str] = (),
        inproc_name: str = "taskbus",
        context: zmq.Context[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or BusSettings()
        self.core = BrokerCore(self.settings)
        self._keys = keys
        self._requested_endpoints = tuple(endpoints)
        self.inproc_endpoint = f"inproc://{inproc_name}"
        self._own_context = context is None
        self._context = context
        self._clock = clock
        self._sockets: list[zmq.Socket[bytes]] = []
        self._pumps: list[SocketPump] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._authenticator: AllowListAuthenticator | None = None
        self._retry: asyncio.TimerHandle | None = None
        self.endpoints: list[str] = []

    @property
    def context(self) -> zmq.Context[Any]:
        if self._context is None:
            raise BusError("broker not started")
        return self._context

    async def start(self) -> None:
        if self._tasks:
            raise BusError("broker already started")
        if self._context is None:
            self._context = zmq.asyncio.Context()  # hosts and tests may want asyncio sockets
        try:
            self._open()
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="broker-heartbeat"))
        log.info("bus.broker started inproc=%s endpoints=%s", self.inproc_endpoint, self.endpoints)

    def _open(self) -> None:
        local = self._router()
        self._sockets.append(local)  # closed by stop() whatever happens next
        local.bind(self.inproc_endpoint)
        if self._requested_endpoints:
            self._sockets.append(self._bind_remote())
        for index, sock in enumerate(self._sockets):
            self._pumps.append(
                SocketPump(
                    sock,
                    lambda frames, index=index: self._on_frames(index, frames),  # type: ignore[misc]
                    self._flush,
                    receive=_recv_authenticated if index == REMOTE else recv_frames,
                    on_error=_log_bug,
                )
            )

    async def stop(self) -> None:
        started = bool(self._tasks)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._retry is not None:
            self._retry.cancel()
        if self._authenticator is not None:
            await self._authenticator.aclose()
            self._authenticator = None
        for pump in self._pumps:
            pump.close()
        for sock in self._sockets:
            sock.close(linger=0)
        self._pumps.clear()
        self._sockets.clear()
        self.endpoints.clear()
        if self._own_context and self._context is not None:
            self._context.term()
            self._context = None
        if started:  # a start that failed says so once, in the error it raised
            log.info("bus.broker stopped")

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        return self.core.stats()

    # ------------------------------------------------------------ sockets

    def _router(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = zmq.Socket(self.context, zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, self.settings.send_hwm)
        sock.setsockopt(zmq.RCVHWM, self.settings.receive_hwm)
        return sock

    def _bind_remote(self) -> zmq.Socket[bytes]:
        if self._keys is None:
            raise AuthError("tcp/ipc endpoints need a keys directory: CurveZMQ is mandatory there")
        pair = self._keys.broker_keypair()
        self._authenticator = AllowListAuthenticator(self.context, self._keys.allowed_dir)
        self._authenticator.start()
        sock = self._router()
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pair.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, pair.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        # A hard cap far above the soft limit: beyond it libzmq drops the connection, below it
        # the broker answers with a precise "oversize" error.
        sock.setsockopt(
            zmq.MAXMSGSIZE, 4 * self.settings.max_message_bytes + wire.BATCH_SLACK_BYTES
        )
        try:
            for endpoint in self._requested_endpoints:
                if endpoint.startswith("inproc://"):
                    raise BusError(
                        f"{endpoint}: inproc is always bound; list only tcp:// or ipc://"
                    )
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise CannotListen(endpoint, exc) from exc
                self.endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        except BaseException:
            sock.close(linger=0)  # an open socket would block the context's term() for good
            raise
        return sock

    def _on_frames(self, index: int, frames: list[Any]) -> None:
        """``frames`` are bytes, but for the command frame of a remote peer: a ``zmq.Frame``."""
        core = self.core
        sock = self._sockets[index]
        routing_id = frames[0]
        if not 2 <= len(frames) <= 3:
            reason = f"expected [command, body], got {len(frames) - 1} frames"
            command = _bytes(frames[1]) if len(frames) > 1 else b""
            known = core.peer(index, routing_id)
            if known is not None:  # a registered peer is named, and its error published
                core.rejections.reject(known, "malformed", reason, command=command)
            else:
                core.rejections.reject_unregistered(
                    sock, routing_id, "malformed", reason, ref=None, command=command
                )
            return
        command = _bytes(frames[1])
        authenticated: str | None = None
        if index == REMOTE:
            try:
                authenticated = str(frames[1].get("User-Id"))
            except zmq.ZMQError:
                core.rejections.reject_unregistered(
                    sock, routing_id, "auth", "no authenticated identity", ref=None
                )
                return
        body = frames[2] if len(frames) == 3 else b""
        now = self._clock()
        peer = core.peer(index, routing_id)
        if peer is None or (authenticated is not None and authenticated != peer.identity):
            if command == wire.HELLO:
                core.hello(
                    index,
                    socket=sock,
                    routing_id=routing_id,
                    authenticated=authenticated,
                    body=body,
                    now=now,
                )
            elif command != wire.BYE:
                send_quietly(sock, [routing_id, wire.WHO])
            return
        core.handle(peer, command, body, now)

    async def _heartbeat(self) -> None:
        interval = self.settings.heartbeat_interval_s
        due = self._clock() + interval
        while True:
            await asyncio.sleep(max(0.0, due - self._clock()))
            now = self._clock()
            if now - due <= interval:
                self.core.expire(now)
            else:  # this loop itself stalled: peers' heartbeats may sit unread in the sockets
                log.warning(
                    "bus.broker event loop stalled %.2fs; liveness checks skipped once", now - due
                )
            due = now + interval
            for peer in list(self.core.peers.values()):
                if now - peer.last_sent >= interval * 0.5:
                    peer.last_sent = now
                    send_quietly(peer.socket, [peer.routing_id, wire.HEARTBEAT])
            for pump in self._pumps:
                pump.after_send()
            self._flush()

    # ------------------------------------------------------------ output

    def _flush(self) -> None:
        dirty = self.core.dirty
        if not dirty:
            return
        touched = set()
        for peer in list(dirty):
            touched.add(peer.socket)
            if self._send_out(peer):
                dirty.discard(peer)
        for pump in self._pumps:
            if pump.socket in touched:
                pump.after_send()
        if dirty and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(_RETRY_DELAY_S, self._retry_flush)

    def _retry_flush(self) -> None:
        self._retry = None
        self._flush()

    def _send_out(self, peer: Peer) -> bool:
        """Send a peer's batched output; False while reliable output waits on a full pipe."""
        sock = peer.socket
        limit = min(self.settings.max_message_bytes, wire.BATCH_TARGET_BYTES)
        while peer.out:
            command, items = peer.out[0]
            while items:
                count = wire.chunk_length(items, limit)
                try:
                    send_frames(sock, (peer.routing_id, command, wire.pack(items[:count])))
                except zmq.Again:
                    if command != wire.PUBLISH:
                        self._shed_events(peer)
                        return False
                    self._count_dropped(peer, count)
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EHOSTUNREACH:
                        raise
                    self.core.drop_peer(peer, "unreachable")
                    return True
                del items[:count]
            peer.out.pop(0)
        peer.last_sent = self._clock()
        return True

    def _shed_events(self, peer: Peer) -> None:
        """While reliable output is stuck behind a full pipe, events queued after it are dropped."""
        for command, items in peer.out[1:]:
            if command == wire.PUBLISH:
                self._count_dropped(peer, len(items))
                items.clear()
        peer.out[1:] = [run for run in peer.out[1:] if run[1]]

    def _count_dropped(self, peer: Peer, count: int) -> None:
        peer.dropped_events += count
        self.core.counters["dropped_events"] += count


def _recv_authenticated(sock: zmq.Socket[bytes]) -> list[Any]:
    """A remote peer's message: bytes, but the command frame, which knows the CURVE identity."""
    return recv_frames(sock, 1)


def _bytes(frame: bytes | zmq.Frame) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else frame


def _log_bug(exc: BaseException) -> None:
    """A bug must not take the broker down: the message is dropped and the bug logged."""
    log.error("bus.broker failed on a message; dropped", exc_info=exc)
