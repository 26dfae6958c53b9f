"""The two socket waits the drivers need, typed once (pyzmq's stub of ``poll`` lacks ``flags``)."""

from __future__ import annotations

from collections.abc import Awaitable

import zmq
import zmq.asyncio


def readable(sock: zmq.asyncio.Socket) -> Awaitable[int]:
    return sock.poll(None, zmq.POLLIN)  # type: ignore[call-arg, return-value]


def writable(sock: zmq.asyncio.Socket) -> Awaitable[int]:
    return sock.poll(None, zmq.POLLOUT)  # type: ignore[call-arg, return-value]


def shadow(sock: zmq.asyncio.Socket) -> zmq.Socket[bytes]:
    """A blocking twin of an asyncio socket, for draining batches with NOBLOCK between waits."""
    return zmq.Socket.shadow(sock.underlying)
