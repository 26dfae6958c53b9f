"""Driving a ZeroMQ socket from an asyncio loop without the edge-triggered FD trap.

``ZMQ_FD`` is edge-triggered, and *any* operation on the socket (a send, a heartbeat) may consume
the edge while messages are still queued; a reader parked on the FD then never wakes. So every
socket has one :class:`SocketPump`: on FD readiness it drains for a bounded time, runs the caller's
flush, and reschedules itself while input is pending; whoever sends on the socket calls
:meth:`SocketPump.after_send`, which re-checks ``ZMQ_EVENTS``. One callback per batch of frames,
no ``await`` per message, and no callback long enough to starve the host's event loop.

:func:`send_frames` and :func:`recv_frames` are ``send_multipart``/``recv_multipart`` without
pyzmq's per-call type checks and flag enums (on the bus's hot path they cost more than libzmq);
:func:`send_quietly` sends a frame nobody will be told about if it cannot go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import zmq
from zmq.backend import Socket as _RawSocket

DRAIN_BUDGET_S = 0.002
POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)  # plain ints skip pyzmq's enum conversions on the hot path
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = _NOBLOCK | int(zmq.SNDMORE)
_send = _RawSocket.send
_recv = _RawSocket.recv
_get = _RawSocket.get

Receive = Callable[[zmq.Socket[Any]], list[Any]]


def send_frames(sock: zmq.Socket[Any], frames: Sequence[bytes]) -> None:
    """Send one multipart message without blocking; ``zmq.Again`` if its pipe is full (libzmq
    takes every later frame of a message once it took the first, so nothing half-sent stays)."""
    last = len(frames) - 1
    for index in range(last):
        _send(sock, frames[index], _MORE)
    _send(sock, frames[last], _NOBLOCK)


def recv_frames(sock: zmq.Socket[Any], keep: int = -1) -> list[Any]:
    """Every frame of one waiting message, as bytes; frame ``keep`` stays a ``zmq.Frame`` (for
    its metadata, such as the CURVE ``User-Id``). A ``Frame`` knows whether more follow, which
    costs less than asking the socket."""
    frames: list[Any] = []
    while True:
        frame = _recv(sock, _NOBLOCK, False)
        frames.append(frame if len(frames) == keep else frame.bytes)
        if not frame.more:
            return frames


class SocketPump:
    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_frames: Callable[[list[Any]], None],
        after_batch: Callable[[], None],
        *,
        receive: Receive = recv_frames,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._sock = sock
        self._on_frames = on_frames
        self._after_batch = after_batch
        self._receive = receive
        self._on_error = on_error
        self._loop = asyncio.get_running_loop()
        self._fd: int = sock.fileno()
        self._scheduled = False
        self._closed = False
        self._loop.add_reader(self._fd, self._on_readable)
        self._schedule()  # messages may already be waiting

    def _on_readable(self) -> None:
        """The FD fired: pump now rather than one loop iteration later (it is latency)."""
        if not self._scheduled:
            self._pump()

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Drain for at most DRAIN_BUDGET_S, so other tasks (heartbeats, the host) keep running."""
        self._scheduled = False
        if self._closed:
            return
        sock = self._sock
        receive = self._receive
        on_frames = self._on_frames
        deadline = time.monotonic() + DRAIN_BUDGET_S
        exhausted = False
        # Checking ZMQ_EVENTS costs less than the zmq.Again that a blind recv ends with.
        while cast(int, _get(sock, _EVENTS)) & POLLIN:
            frames = receive(sock)
            try:
                on_frames(frames)
            except Exception as exc:  # one bad frame must not stop the pump
                if self._on_error is None:
                    raise
                self._on_error(exc)
            if time.monotonic() > deadline:
                exhausted = True
                break
        self._after_batch()
        if exhausted:
            self._schedule()  # more input waits: come back after other callbacks had a turn

    def after_send(self) -> None:
        """Call after every send on the socket: a send may eat the FD's edge while input waits."""
        if not self._closed and cast(int, _get(self._sock, _EVENTS)) & POLLIN:
            self._schedule()

    @property
    def socket(self) -> zmq.Socket[Any]:
        return self._sock

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)


def send_quietly(socket: zmq.Socket[Any], frames: list[bytes]) -> None:
    """Send if possible; a full or vanished connection has nobody left to tell."""
    with contextlib.suppress(zmq.ZMQError):
        send_frames(socket, frames)
