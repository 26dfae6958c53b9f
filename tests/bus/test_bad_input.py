"""Bad input is answered, logged, published as ``bus.error`` and survived (STYLE item 7).

Each case is sent by a hand-driven DEALER, over inproc and over tcp+CURVE with allow-listed keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from bus import Broker, BusClient, EnvelopeError, KeysDirectory, Subscription, wire
from config import BusSettings
from tests.bus.raw import VALID_ID, RawPeer, envelope, fields, nested, pack
from tests.conftest import OPEN_ACL, ClientFactory

MIB = 1024 * 1024
RAW_TRANSPORTS = ("inproc", "tcp")
RawFactory = Callable[..., RawPeer]


@pytest.fixture
def settings() -> BusSettings:
    """A liveness window wide enough that a hand-driven peer is never dropped mid-test."""
    return BusSettings(
        heartbeat_interval_s=0.5, heartbeat_liveness=10, ask_timeout_s=3.0, acl=OPEN_ACL
    )


@pytest.fixture
async def raw_peer(broker: Broker, keys: KeysDirectory) -> AsyncIterator[RawFactory]:
    peers: list[RawPeer] = []

    def factory(transport: str, identity: str = "x") -> RawPeer:
        peer = RawPeer.to_broker(broker, keys, transport, identity)
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        peer.close()


class Bystanders:
    """Well-behaved clients that watch ``bus.error`` and prove the broker still serves."""

    def __init__(
        self, watcher: BusClient, errors: Subscription, events: Subscription, talker: BusClient
    ) -> None:
        self.watcher = watcher
        self.errors = errors
        self.events = events
        self.talker = talker
        self.rounds = 0

    async def broker_still_serves(self) -> None:
        """An event and an ask/reply round trip still go through."""
        self.rounds += 1
        await self.talker.publish("demo.ok", {"round": self.rounds})
        event = await self.events.get(timeout=5)
        assert (event.topic, event.sender, event.payload) == (
            "demo.ok",
            "talker",
            {"round": self.rounds},
        )
        inbox = await self.watcher.serve(f"svc.round{self.rounds}")
        ask = asyncio.create_task(self.talker.ask(f"svc.round{self.rounds}", {"q": 1}, timeout=5))
        request = await inbox.get(timeout=5)
        self.watcher.reply(request, {"a": request.payload["q"] + 1})
        reply = await ask
        assert reply.payload == {"a": 2}


@pytest.fixture
async def bystanders(make_client: ClientFactory) -> Bystanders:
    watcher = await make_client("watcher")
    errors = await watcher.subscribe("bus.error")
    events = await watcher.subscribe("demo.ok")
    talker = await make_client("talker", "tcp")
    return Bystanders(watcher, errors, events, talker)


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _oversize_envelope() -> bytes:
    return envelope(payload={"blob": b"\x00" * (3 * MIB // 2)})


def _envelope_just_over_limit() -> bytes:
    """Over ``max_message_bytes`` by itself, yet within the frame's batch slack."""
    return envelope(payload={"blob": b"\x00" * (MIB + 1024)})


def _readable_ref(frames: list[bytes]) -> int | None:
    """The ``ref`` an error must echo: that of a control map the broker could read."""
    if frames[0] not in wire.CONTROL_COMMANDS or len(frames) != 2:
        return None
    body = msgpack.unpackb(frames[1])
    if isinstance(body, list) and body and isinstance(body[0], dict):
        ref: int | None = body[0].get("ref")
        return ref
    return None


@dataclass(frozen=True)
class Bad:
    """Frames after the routing id, the error code, words of the reason, the id it names."""

    frames: Callable[[], list[bytes]]
    code: str
    reason: str
    error_id: bytes | None


def bad(
    frames: Callable[[], list[bytes]], code: str, reason: str, error_id: bytes | None, id: str
) -> Any:
    return pytest.param(Bad(frames, code, reason, error_id), id=id)


BAD_INPUT: list[Any] = [
    bad(
        lambda: [wire.PUBLISH, _random_bytes(256, seed=1)],
        "malformed",
        "frame body",
        None,
        id="random-bytes-as-body",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([b"\xc1" + _random_bytes(64, seed=2)])],
        "malformed",
        "not valid msgpack",
        None,
        id="random-bytes-as-envelope",
    ),
    bad(
        lambda: [wire.PUBLISH, pack({"not": "an array"})],
        "malformed",
        "array of encoded envelopes",
        None,
        id="body-not-an-array",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([1, 2, 3])],
        "malformed",
        "array of encoded envelopes",
        None,
        id="batch-of-non-bytes",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope()[:-6]])],
        "malformed",
        "not valid msgpack",
        None,
        id="truncated-envelope",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope() + b"\x01"])],
        "malformed",
        "trailing bytes",
        None,
        id="trailing-bytes",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([pack({"topic": "demo.raw"})])],
        "malformed",
        "must be a msgpack array, got dict",
        None,
        id="envelope-not-an-array",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([pack([])])],
        "malformed",
        "empty",
        None,
        id="empty-envelope",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([pack(fields()[:7])])],
        "malformed",
        "has 7 fields",
        VALID_ID,
        id="missing-field",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([pack([*fields(), "extra"])])],
        "malformed",
        "has 9 fields",
        VALID_ID,
        id="extra-field",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(version=2)])],
        "version",
        "unsupported envelope version 2",
        VALID_ID,
        id="unknown-version",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(version=True)])],
        "version",
        "unsupported envelope version True",
        VALID_ID,
        id="version-as-bool",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(version=1.0)])],
        "version",
        "unsupported envelope version 1.0",
        VALID_ID,
        id="version-as-float",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(version="1")])],
        "version",
        "unsupported envelope version '1'",
        VALID_ID,
        id="version-as-string",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(id=b"short")])],
        "field",
        "id must be 16 bytes, got 5 bytes",
        b"short",
        id="id-wrong-length",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(id="0123456789abcdef")])],
        "field",
        "id must be 16 bytes, got str",
        None,
        id="id-as-string",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic=42)])],
        "field",
        "topic must be a string, got int",
        VALID_ID,
        id="topic-as-int",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(sender=7)])],
        "field",
        "sender must be a string, got int",
        VALID_ID,
        id="sender-as-int",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(timestamp="yesterday")])],
        "field",
        "timestamp must be a number, got str",
        VALID_ID,
        id="timestamp-as-string",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(timestamp=True)])],
        "field",
        "timestamp must be a number, got bool",
        VALID_ID,
        id="timestamp-as-bool",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(correlation_id=b"abc")])],
        "field",
        "correlation_id must be 16 bytes or nil, got 3 bytes",
        VALID_ID,
        id="correlation-id-wrong-length",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(reply_to=5)])],
        "field",
        "reply_to must be a string or nil, got int",
        VALID_ID,
        id="reply-to-as-int",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(payload=[1, 2, 3])])],
        "payload",
        "payload must be a map, got list",
        VALID_ID,
        id="payload-as-list",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(payload="text")])],
        "payload",
        "payload must be a map, got str",
        VALID_ID,
        id="payload-as-string",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(payload=nested(33))])],
        "payload",
        "payload nests 33 levels of maps and arrays, more than the limit of 32",
        VALID_ID,
        id="payload-too-deep",
    ),
    bad(  # the issue's poison definition: 3 KB that no reply could carry once stored
        lambda: [
            wire.REQUEST,
            pack([envelope(topic="scheduler.task.create", payload={"config": nested(1020)})]),
        ],
        "payload",
        "payload nests 1021 levels of maps and arrays, more than the limit of 32",
        VALID_ID,
        id="ask-payload-1021-deep",
    ),
    bad(
        lambda: [wire.ENQUEUE, pack([envelope(payload={"work": [nested(40)]})])],
        "payload",
        "payload nests 42 levels of maps and arrays, more than the limit of 32",
        VALID_ID,
        id="enqueue-payload-too-deep",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(timestamp=math.nan)])],
        "field",
        "timestamp must be a finite number, got nan",
        VALID_ID,
        id="timestamp-nan",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(timestamp=-math.inf)])],
        "field",
        "timestamp must be a finite number, got -inf",
        VALID_ID,
        id="timestamp-negative-infinity",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(payload={1: "integer key"})])],
        "malformed",
        "not valid msgpack",
        None,
        id="payload-with-non-string-key",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic="Bad Topic!")])],
        "topic",
        "'Bad Topic!' is not dotted lowercase words",
        VALID_ID,
        id="topic-syntax",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic="demo..double")])],
        "topic",
        "is not dotted lowercase words",
        VALID_ID,
        id="topic-empty-word",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic="demo.raw\n")])],
        "topic",
        "is not dotted lowercase words",
        VALID_ID,
        id="topic-trailing-newline",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic="")])],
        "topic",
        "is not dotted lowercase words",
        VALID_ID,
        id="topic-empty",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope(topic="a" * 256)])],
        "topic",
        "topic of 256 characters exceeds 255",
        VALID_ID,
        id="topic-too-long",
    ),
    bad(
        lambda: [wire.REQUEST, pack([envelope(topic="Bad.Ask")])],
        "topic",
        "'Bad.Ask' is not dotted lowercase words",
        VALID_ID,
        id="ask-topic-syntax",
    ),
    bad(
        lambda: [wire.ENQUEUE, pack([envelope(payload=None)])],
        "payload",
        "payload must be a map, got NoneType",
        VALID_ID,
        id="enqueue-payload-nil",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([_oversize_envelope()])],
        "oversize",
        "exceeds 1048576 bytes",
        None,
        id="oversize-frame",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([_envelope_just_over_limit()])],
        "oversize",
        "exceeds 1048576 bytes",
        VALID_ID,
        id="oversize-envelope",
    ),
    bad(
        lambda: [b"Z", pack([])],
        "unknown_command",
        "unknown command b'Z'",
        None,
        id="unknown-command",
    ),
    bad(
        lambda: [wire.DELIVER, pack([])],
        "unknown_command",
        "unknown command b'D'",
        None,
        id="broker-only-command",
    ),
    bad(
        lambda: [b"", pack([])],
        "unknown_command",
        "unknown command b''",
        None,
        id="empty-command",
    ),
    bad(
        lambda: [wire.PUBLISH, pack([envelope()]), b"one frame too many"],
        "malformed",
        "expected [command, body], got 3 frames",
        None,
        id="too-many-frames",
    ),
    bad(
        lambda: [wire.SUBSCRIBE, pack({"prefixes": ["demo."]})],
        "malformed",
        "control frame body must be an array of maps",
        None,
        id="control-not-an-array",
    ),
    bad(
        lambda: [wire.SUBSCRIBE, pack([{"ref": 9, "prefixes": "demo."}])],
        "field",
        "'prefixes' must be a non-empty array of strings",
        None,
        id="subscribe-prefixes-not-a-list",
    ),
    bad(
        lambda: [wire.SUBSCRIBE, pack([{"ref": 9, "prefixes": ["Demo Prefix"]}])],
        "topic",
        "prefix 'Demo Prefix' is not a dotted topic prefix",
        None,
        id="subscribe-prefix-syntax",
    ),
    bad(
        lambda: [wire.CONSUME, pack([{"ref": 9, "queue": "work.q", "credit": -1}])],
        "field",
        "credit must be an integer from 0 to 1000000, got -1",
        None,
        id="consume-negative-credit",
    ),
    bad(
        lambda: [wire.HELLO, pack([{"ref": 9, "identity": "x"}])],
        "field",
        "already registered",
        None,
        id="second-hello",
    ),
    bad(
        lambda: [wire.ACK, pack({"id": VALID_ID})],
        "malformed",
        "ack body must be an array of message ids",
        None,
        id="ack-not-an-array",
    ),
    bad(
        lambda: [wire.NACK, pack([VALID_ID])],
        "malformed",
        "nack entries must be [message_id, requeue]",
        None,
        id="nack-entry-shape",
    ),
    bad(
        lambda: [wire.REPLY, pack([envelope(correlation_id=VALID_ID, reply_to="nobody#1")])],
        "unknown_request",
        "reply matches no request",
        VALID_ID,
        id="reply-to-nothing",
    ),
]


@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
@pytest.mark.parametrize("case", BAD_INPUT)
async def test_bad_input_is_answered_logged_published_and_survived(
    raw_peer: RawFactory,
    bystanders: Bystanders,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    case: Bad,
) -> None:
    code, reason = case.code, case.reason
    caplog.set_level(logging.INFO, logger="taskbus.bus")
    peer = raw_peer(transport)
    ack = await peer.hello("x")
    assert ack["identity"] == "x"
    frames = case.frames()

    await peer.send(*frames)

    error = await peer.expect_error()
    assert error["code"] == code
    assert reason in error["reason"]
    assert error["id"] == case.error_id
    assert error["ref"] == _readable_ref(frames)
    rejects = [r for r in caplog.records if r.getMessage().startswith("bus.reject ")]
    assert [r.getMessage().split()[1] for r in rejects] == [f"code={code}"], caplog.text
    assert rejects[0].levelno == logging.WARNING

    event = await bystanders.errors.get(timeout=5)
    assert event.sender == "broker"
    assert event.payload["code"] == code
    assert reason in event.payload["reason"]
    assert event.payload["identity"] == "x"
    assert event.payload["command"] == frames[0].decode("ascii", "replace")

    # The offender stays registered and usable, and everybody else is still served.
    await peer.send(wire.PUBLISH, pack([envelope(topic="demo.ok", payload={"round": 1})]))
    event = await bystanders.events.get(timeout=5)
    assert (event.topic, event.sender) == ("demo.ok", "x")
    await peer.sync()  # no second error was queued for it
    await bystanders.broker_still_serves()


@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
async def test_one_bad_envelope_in_a_batch_spoils_only_itself(
    raw_peer: RawFactory, bystanders: Bystanders, transport: str
) -> None:
    peer = raw_peer(transport)
    await peer.hello("x")
    good_before = envelope(topic="demo.ok", payload={"n": 1}, id=b"\x01" * 16)
    bad = envelope(topic=3)
    good_after = envelope(topic="demo.ok", payload={"n": 2}, id=b"\x02" * 16)

    await peer.send(wire.PUBLISH, pack([good_before, bad, good_after]))

    error = await peer.expect_error()
    assert (error["code"], error["id"]) == ("field", VALID_ID)
    first = await bystanders.events.get(timeout=5)
    second = await bystanders.events.get(timeout=5)
    assert [first.payload, second.payload] == [{"n": 1}, {"n": 2}]
    await bystanders.broker_still_serves()


@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
async def test_a_payload_nesting_exactly_the_limit_is_delivered(
    raw_peer: RawFactory, make_client: ClientFactory, transport: str
) -> None:
    watcher = await make_client("deep-watcher")
    events = await watcher.subscribe("demo.deep")
    peer = raw_peer(transport)
    await peer.hello("x")
    deepest = nested(32)

    await peer.send(wire.PUBLISH, pack([envelope(topic="demo.deep", payload=deepest)]))

    event = await events.get(timeout=5)
    assert (event.sender, event.payload) == ("x", deepest)
    await peer.sync()  # and no error was queued for the sender


@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
async def test_a_flood_of_bad_input_is_survived(
    raw_peer: RawFactory, bystanders: Bystanders, transport: str
) -> None:
    peer = raw_peer(transport)
    await peer.hello("x")
    rng = random.Random(7)
    for _ in range(200):
        await peer.send(wire.PUBLISH, rng.randbytes(rng.randrange(1, 300)))
    for _ in range(200):
        assert (await peer.expect_error())["code"] == "malformed"
    await bystanders.broker_still_serves()


UNREGISTERED_HELLOS: list[Any] = [
    pytest.param((b"\xc1\xc1", "malformed", "not valid msgpack"), id="hello-garbage"),
    pytest.param((pack([]), "malformed", "exactly one map"), id="hello-no-map"),
    pytest.param((pack([{"ref": 1}, {"ref": 2}]), "malformed", "exactly one map"), id="hello-two"),
    pytest.param((pack([{"ref": 1}]), "field", "'identity' string"), id="hello-no-identity"),
    pytest.param(
        (pack([{"ref": 1, "identity": "Not Valid"}]), "field", "'Not Valid' must be lowercase"),
        id="hello-bad-identity",
    ),
    pytest.param(
        (pack([{"ref": 1, "identity": "x\n"}]), "field", "must be lowercase"),
        id="hello-identity-trailing-newline",
    ),
]


@pytest.mark.parametrize("hello", UNREGISTERED_HELLOS)
async def test_bad_hello_over_inproc_is_answered_and_logged(
    raw_peer: RawFactory,
    bystanders: Bystanders,
    caplog: pytest.LogCaptureFixture,
    hello: tuple[bytes, str, str],
) -> None:
    body, code, reason = hello
    peer = raw_peer("inproc")
    await peer.send(wire.HELLO, body)

    error = await peer.expect_error()
    assert error["code"] == code
    assert reason in error["reason"]
    assert any(r.getMessage().startswith(f"bus.reject code={code} ") for r in caplog.records), (
        caplog.text
    )
    event = await bystanders.errors.get(timeout=5)
    assert (event.payload["code"], event.payload["command"]) == (code, "H")
    assert (event.payload["identity"], event.payload["peer"]) == (None, "unregistered")
    assert reason in event.payload["reason"]
    # Not registered: anything but a HELLO is answered "who are you?", and a good HELLO works.
    await peer.send(wire.PUBLISH, pack([envelope()]))
    assert await peer.recv() == [wire.WHO]
    assert (await peer.hello("x"))["identity"] == "x"
    await bystanders.broker_still_serves()


async def test_bad_hello_over_curve_is_answered_and_the_key_names_the_peer(
    raw_peer: RawFactory, bystanders: Bystanders
) -> None:
    peer = raw_peer("tcp", "x")
    await peer.send(wire.HELLO, b"\xc1\xc1")
    error = await peer.expect_error()
    assert error["code"] == "malformed"
    assert error["reason"].startswith("frame body is not valid msgpack")
    assert (await bystanders.errors.get(timeout=5)).payload["code"] == "malformed"
    # Over CURVE the key file names the peer, so a HELLO need not (and cannot) claim a name.
    await peer.send(wire.HELLO, pack([{"ref": 5}]))
    (ack,) = await peer.expect(wire.CONTROL_ACK)
    assert (ack["ref"], ack["identity"]) == (5, "x")
    await bystanders.broker_still_serves()


@pytest.mark.parametrize("transport", RAW_TRANSPORTS)
async def test_message_before_hello_is_answered_who(
    raw_peer: RawFactory, bystanders: Bystanders, transport: str
) -> None:
    peer = raw_peer(transport)
    await peer.send(wire.PUBLISH, pack([envelope(topic="demo.ok", payload={"round": 0})]))
    assert await peer.recv() == [wire.WHO]
    await bystanders.broker_still_serves()  # and the early event was never delivered


# ---------------------------------------------------------------- client side


async def test_client_refuses_bad_payloads_locally(
    make_client: ClientFactory, bystanders: Bystanders
) -> None:
    client = await make_client("local")
    cases: list[tuple[Any, str, str]] = [
        ({"when": object()}, "payload", "not msgpack-serialisable"),
        ({"big": 2**70}, "payload", "not msgpack-serialisable"),
        ({"blob": b"\x00" * (3 * MIB // 2)}, "oversize", "exceeds 1048576 bytes"),
        ({"config": nested(1020)}, "payload", "nests 1021 levels of maps and arrays"),
        (nested(33), "payload", "more than the limit of 32"),
    ]
    for payload, code, reason in cases:
        with pytest.raises(EnvelopeError) as caught:
            await client.publish("demo.ok", payload)
        assert caught.value.code == code
        assert reason in caught.value.reason
        with pytest.raises(EnvelopeError, match=code):
            await client.ask("demo.ok", payload, timeout=1)
        with pytest.raises(EnvelopeError, match=code):
            client.enqueue_nowait("work.q", payload)
    with pytest.raises(EnvelopeError, match="topic"):
        await client.publish("Bad Topic", {})
    stats = client.stats()
    assert stats["queued_output"] == 0
    assert stats["pending_asks"] == 0
    assert stats["unfinished_work"] == 0
    assert "published" not in stats["counters"]
    assert client.errors.get_nowait_all() == []
    # Nothing was sent: the next event the watcher sees is the bystanders' own.
    await bystanders.broker_still_serves()
    assert bystanders.errors.get_nowait_all() == []


async def test_client_refuses_non_map_payload_locally(make_client: ClientFactory) -> None:
    """The broker would refuse it; the caller, not a peer, should hear about it."""
    client = await make_client("local")
    with pytest.raises(EnvelopeError) as caught:
        await client.publish("demo.ok", [1, 2])  # type: ignore[arg-type]
    assert caught.value.code == "payload"
    assert client.stats()["queued_output"] == 0
