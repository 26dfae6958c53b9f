"""Driving a ZeroMQ socket from an asyncio loop without the edge-triggered FD trap.

``ZMQ_FD`` is edge-triggered, and *any* operation on the socket (a send, a heartbeat) may consume
the edge while messages are still queued; a reader parked on the FD then never wakes. So every
socket has one :class:`SocketPump`: on FD readiness it drains for a bounded time, runs the caller's
flush, and reschedules itself while input is pending; whoever sends on the socket calls
:meth:`SocketPump.after_send`, which re-checks ``ZMQ_EVENTS``. One callback per batch of frames,
no ``await`` per message, and no callback long enough to starve the host's event loop.

:func:`send_quietly` sends a frame nobody will be told about if it cannot go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, cast

import zmq

DRAIN_BUDGET_S = 0.002
POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)  # plain ints skip pyzmq's enum conversions on the hot path
_NOBLOCK = int(zmq.NOBLOCK)


class SocketPump:
    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_frames: Callable[[list[Any]], None],
        after_batch: Callable[[], None],
        *,
        copy: bool = True,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._sock = sock
        self._on_frames = on_frames
        self._after_batch = after_batch
        self._copy = copy
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
        events = sock.get
        recv = sock.recv_multipart
        on_frames = self._on_frames
        deadline = time.monotonic() + DRAIN_BUDGET_S
        exhausted = False
        # Checking ZMQ_EVENTS costs less than the zmq.Again that a blind recv ends with.
        while cast(int, events(_EVENTS)) & POLLIN:
            frames = recv(_NOBLOCK, copy=self._copy)
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
        if not self._closed and cast(int, self._sock.get(_EVENTS)) & POLLIN:
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
        socket.send_multipart(frames, zmq.NOBLOCK)
