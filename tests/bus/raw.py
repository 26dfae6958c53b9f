"""A hand-driven DEALER that speaks the wire protocol byte by byte, for hostile-peer tests.

It lets a test send what :class:`bus.BusClient` never would (forged fields, broken frames, unknown
commands) and read exactly what the broker answers. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import zmq
import zmq.asyncio

from bus import Broker, KeyPair, KeysDirectory, wire
from tests.conftest import endpoint_for

VALID_ID = bytes(range(16))


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def fields(**overrides: Any) -> list[Any]:
    """A valid version-1 envelope as wire fields, with some fields replaced by name."""
    values: dict[str, Any] = {
        "version": 1,
        "id": VALID_ID,
        "topic": "demo.raw",
        "sender": "",
        "timestamp": 1_700_000_000.5,
        "correlation_id": None,
        "reply_to": None,
        "payload": {"n": 1},
    }
    unknown = set(overrides) - set(values)
    assert not unknown, f"no such envelope field: {unknown}"
    values.update(overrides)
    return list(values.values())


def envelope(**overrides: Any) -> bytes:
    return pack(fields(**overrides))


def nested(levels: int) -> dict[str, Any]:
    """A payload map nesting ``levels`` levels (itself level 1), maps and arrays in turn."""
    value: Any = {} if levels % 2 else []
    for level in range(levels - 1, 0, -1):
        value = {"m": value} if level % 2 else [value]
    assert isinstance(value, dict)
    return value


class RawPeer:
    """One DEALER socket; closed by :meth:`close` (the ``raw_peer`` fixtures do it)."""

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self.sock = sock
        self._errors: list[dict[str, Any]] = []  # the broker batches several into one frame

    @classmethod
    def connect(
        cls,
        context: zmq.Context[Any],
        endpoint: str,
        keypair: KeyPair | None = None,
        server_key: bytes | None = None,
    ) -> RawPeer:
        sock = zmq.asyncio.Socket(context, zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if keypair is not None and server_key is not None:
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keypair.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keypair.secret)
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.connect(endpoint)
        return cls(sock)

    @classmethod
    def to_broker(
        cls, broker: Broker, keys: KeysDirectory, transport: str, identity: str
    ) -> RawPeer:
        """Over inproc (no keys), or tcp/ipc with ``identity``'s allow-listed CURVE keys."""
        if transport == "inproc":
            return cls.connect(broker.context, broker.inproc_endpoint)
        return cls.connect(
            broker.context,
            endpoint_for(broker, transport),
            keys.identity_keypair(identity, create=True),
            keys.broker_public_key(),
        )

    def close(self) -> None:
        self.sock.close(linger=0)

    async def send(self, *frames: bytes) -> None:
        await asyncio.wait_for(self.sock.send_multipart(list(frames)), 5)

    async def hello(self, identity: str = "x", ref: int = 1) -> dict[str, Any]:
        """Register and return the broker's acknowledgement."""
        await self.send(wire.HELLO, pack([{"ref": ref, "identity": identity}]))
        (ack,) = await self.expect(wire.CONTROL_ACK)
        assert ack["ref"] == ref
        return ack  # type: ignore[no-any-return]

    async def recv(self, timeout: float = 5.0) -> list[bytes] | None:
        """The next frame other than a heartbeat (answered, so the broker keeps us), or None."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready = await self.sock.poll(int(remaining * 1000) + 1, zmq.POLLIN)  # type: ignore[call-arg]
            if not ready:
                return None
            frames: list[bytes] = await self.sock.recv_multipart()
            if frames == [wire.HEARTBEAT]:
                await self.send(wire.HEARTBEAT)
                continue
            return frames

    async def expect(self, command: bytes, timeout: float = 5.0) -> list[Any]:
        """The unpacked body of the next frame, which must carry ``command``."""
        frames = await self.recv(timeout)
        assert frames is not None, f"no {command!r} frame within {timeout}s"
        assert frames[0] == command, f"expected {command!r}, got {frames!r:.300}"
        assert len(frames) == 2, frames
        body = msgpack.unpackb(frames[1], raw=False)
        assert isinstance(body, list), body
        return body

    async def expect_error(self, timeout: float = 5.0) -> dict[str, Any]:
        if not self._errors:
            self._errors = await self.expect(wire.ERROR, timeout)
        error = self._errors.pop(0)
        assert set(error) == {"code", "reason", "id", "correlation_id", "ref"}, error
        return error

    async def expect_nothing(self, wait_s: float = 0.5) -> None:
        """Bounded negative check: nothing but heartbeats arrives within ``wait_s``."""
        assert not self._errors, self._errors
        frames = await self.recv(wait_s)
        assert frames is None, f"expected silence, got {frames!r:.300}"

    async def sync(self, ref: int = 1_000) -> None:
        """A control round trip: whatever the broker queued for us before it arrives first."""
        assert not self._errors, self._errors
        await self.send(wire.SUBSCRIBE, pack([{"ref": ref, "prefixes": ["sync.none"]}]))
        (ack,) = await self.expect(wire.CONTROL_ACK)
        assert ack["ref"] == ref
