"""Driving a ZeroMQ socket from an asyncio loop without the edge-triggered FD trap.

``ZMQ_FD`` is edge-triggered, and *any* operation on the socket (a send, a heartbeat) may consume
the edge while messages are still queued; a reader parked on the FD then never wakes. So every
socket has one :class:`SocketPump`: it drains a batch on FD readiness, runs the caller's flush,
and re-checks ``ZMQ_EVENTS`` after each send (:meth:`SocketPump.after_send`), rescheduling itself
while input is pending. One callback per batch, no ``await`` per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import zmq

DRAIN_BATCH = 512


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
        self._loop.add_reader(self._fd, self._schedule)
        self._schedule()  # messages may already be waiting

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        recv = self._sock.recv_multipart
        on_frames = self._on_frames
        for _ in range(DRAIN_BATCH):
            try:
                frames = recv(zmq.NOBLOCK, copy=self._copy)
            except zmq.Again:
                break
            try:
                on_frames(frames)
            except Exception as exc:  # one bad frame must not stop the pump
                if self._on_error is None:
                    raise
                self._on_error(exc)
        self._after_batch()
        self.after_send()

    def after_send(self) -> None:
        """Call after sending on the socket outside the pump: re-arms reading if input waits."""
        if self._closed:
            return
        if cast(int, self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self._schedule()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
