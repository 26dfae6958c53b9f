"""The envelope as a value: encode/decode, strict validation with precise codes, and message ids."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgpack
import pytest

from bus import PROTOCOL_VERSION, BusError, Envelope, EnvelopeError, decode, new_message_id
from bus.envelope import decode_trusted, encode_new, restamp, validated_fields
from bus.ids import format_message_id
from config import TaskbusError
from config.bus import DEFAULT_MAX_MESSAGE_BYTES
from tests.bus.raw import VALID_ID, envelope, fields, pack

OTHER_ID = bytes(range(100, 116))


def test_round_trip_keeps_every_field() -> None:
    original = Envelope(
        "scheduler.task.created",
        {"task": "backup", "n": 3, "nested": {"ok": [1, 2.5, None, b"\x00"]}},
        sender="scheduler",
        id=VALID_ID,
        timestamp=1_700_000_000.25,
        correlation_id=OTHER_ID,
        reply_to="asker#7",
    )
    data = original.encode()
    assert msgpack.unpackb(data)[0] == PROTOCOL_VERSION
    assert decode(data) == original
    assert decode_trusted(data) == original


def test_defaults_are_fresh_per_envelope() -> None:
    before = time.time()
    first, second = Envelope("demo.a"), Envelope("demo.a")
    assert first.id != second.id
    assert first.payload == {}
    assert first.payload is not second.payload
    assert first.timestamp >= before
    assert (first.sender, first.correlation_id, first.reply_to) == ("", None, None)
    assert first.version == PROTOCOL_VERSION
    assert decode(first.encode()) == first


def test_envelope_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Envelope("demo.a").topic = "demo.b"  # type: ignore[misc]


def test_integer_timestamp_decodes_as_float() -> None:
    decoded = decode(envelope(timestamp=1_700_000_000))
    assert decoded.timestamp == 1_700_000_000.0
    assert isinstance(decoded.timestamp, float)


def test_stamped_and_restamp_replace_only_sender_and_reply_to() -> None:
    original = Envelope("demo.a", {"x": 1}, sender="forged", reply_to="forged#1")
    stamped = original.stamped("mallory", "mallory#2")
    assert (stamped.sender, stamped.reply_to) == ("mallory", "mallory#2")
    assert (stamped.id, stamped.topic, stamped.payload, stamped.timestamp) == (
        original.id,
        original.topic,
        original.payload,
        original.timestamp,
    )
    data = restamp(validated_fields(original.encode()), "mallory")
    assert decode(data) == original.stamped("mallory", None)


def test_encode_new_makes_a_valid_envelope() -> None:
    message_id, data = encode_new(
        "svc.echo", {"q": 1}, DEFAULT_MAX_MESSAGE_BYTES, OTHER_ID, "asker#1"
    )
    decoded = decode(data)
    assert decoded.id == message_id
    assert (decoded.topic, decoded.payload, decoded.sender) == ("svc.echo", {"q": 1}, "")
    assert (decoded.correlation_id, decoded.reply_to) == (OTHER_ID, "asker#1")


@pytest.mark.parametrize(
    ("topic", "payload", "code", "reason"),
    [
        ("Bad Topic", {}, "topic", "'Bad Topic' is not dotted lowercase words"),
        ("demo.a", [1], "payload", "payload must be a map, got list"),
        ("demo.a", {"t": object()}, "payload", "not msgpack-serialisable"),
        ("demo.a", {"n": 2**64}, "payload", "not msgpack-serialisable"),
        ("demo.a", {"blob": b"\x00" * 2048}, "oversize", "exceeds 1024 bytes"),
    ],
    ids=["topic", "non-map", "object", "big-int", "oversize"],
)
def test_encode_new_refuses_what_the_broker_would(
    topic: str, payload: Any, code: str, reason: str
) -> None:
    with pytest.raises(EnvelopeError) as caught:
        encode_new(topic, payload, 1024)
    assert caught.value.code == code
    assert reason in caught.value.reason


# (bytes, code, words of the reason)
DECODE_FAILURES: list[Any] = [
    pytest.param(b"\xc1", "malformed", "not valid msgpack", id="not-msgpack"),
    pytest.param(b"", "malformed", "not valid msgpack", id="empty-bytes"),
    pytest.param(envelope()[:-3], "malformed", "not valid msgpack", id="truncated"),
    pytest.param(envelope() + b"\x00", "malformed", "trailing bytes", id="trailing"),
    pytest.param(pack({"a": 1}), "malformed", "must be a msgpack array, got dict", id="map"),
    pytest.param(pack(7), "malformed", "must be a msgpack array, got int", id="int"),
    pytest.param(pack([]), "malformed", "array is empty", id="empty-array"),
    pytest.param(pack(fields()[:7]), "malformed", "has 7 fields", id="short"),
    pytest.param(pack([*fields(), 0]), "malformed", "has 9 fields", id="long"),
    pytest.param(envelope(payload={1: "x"}), "malformed", "not valid msgpack", id="int-key"),
    pytest.param(envelope(version=0), "version", "unsupported envelope version 0", id="v0"),
    pytest.param(envelope(version=2), "version", "unsupported envelope version 2", id="v2"),
    pytest.param(envelope(version=1.0), "version", "version 1.0", id="v-float"),
    pytest.param(envelope(version=True), "version", "version True", id="v-bool"),
    pytest.param(envelope(version=None), "version", "version None", id="v-nil"),
    pytest.param(pack(["1", *fields()[1:]]), "version", "version '1'", id="v-string"),
    pytest.param(envelope(id=b"x" * 15), "field", "id must be 16 bytes, got 15", id="id-15"),
    pytest.param(envelope(id=b"x" * 17), "field", "id must be 16 bytes, got 17", id="id-17"),
    pytest.param(envelope(id="x" * 16), "field", "id must be 16 bytes, got str", id="id-str"),
    pytest.param(envelope(id=None), "field", "got NoneType", id="id-nil"),
    pytest.param(envelope(topic=5), "field", "topic must be a string, got int", id="topic-int"),
    pytest.param(envelope(topic=b"demo"), "field", "topic must be a string", id="topic-bin"),
    pytest.param(envelope(topic="a b"), "topic", "is not dotted lowercase", id="topic-space"),
    pytest.param(envelope(topic="Demo"), "topic", "is not dotted lowercase", id="topic-upper"),
    pytest.param(envelope(topic=".demo"), "topic", "is not dotted lowercase", id="topic-dot"),
    pytest.param(envelope(topic="demo."), "topic", "is not dotted lowercase", id="topic-end"),
    pytest.param(envelope(topic="x\n"), "topic", "is not dotted lowercase", id="topic-nl"),
    pytest.param(envelope(topic="a" * 256), "topic", "256 characters", id="topic-long"),
    pytest.param(envelope(sender=1), "field", "sender must be a string, got int", id="sender"),
    pytest.param(envelope(timestamp="now"), "field", "timestamp must be a number", id="ts-str"),
    pytest.param(envelope(timestamp=None), "field", "got NoneType", id="ts-nil"),
    pytest.param(envelope(timestamp=False), "field", "got bool", id="ts-bool"),
    pytest.param(envelope(correlation_id=b"1"), "field", "correlation_id must be", id="corr"),
    pytest.param(envelope(correlation_id="c" * 16), "field", "got str", id="corr-str"),
    pytest.param(envelope(reply_to=b"x#1"), "field", "reply_to must be a string", id="reply"),
    pytest.param(envelope(payload=None), "payload", "must be a map, got NoneType", id="pl-nil"),
    pytest.param(envelope(payload=[1]), "payload", "must be a map, got list", id="pl-list"),
    pytest.param(envelope(payload=b"{}"), "payload", "must be a map, got 2 bytes", id="pl-bin"),
]


@pytest.mark.parametrize(("data", "code", "reason"), DECODE_FAILURES)
def test_every_decode_failure_is_an_envelope_error_with_its_code(
    data: bytes, code: str, reason: str
) -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(data)
    error = caught.value
    assert error.code == code
    assert reason in error.reason
    assert str(error) == f"{code}: {error.reason}"
    with pytest.raises(EnvelopeError) as again:
        validated_fields(data)
    assert (again.value.code, again.value.reason) == (error.code, error.reason)


def test_msgpack_failures_keep_their_cause() -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(b"\xc1")
    assert caught.value.__cause__ is not None


def test_size_limit_is_checked_before_parsing() -> None:
    data = envelope(payload={"blob": b"\x00" * 4096})
    assert decode(data, max_bytes=len(data)).payload == {"blob": b"\x00" * 4096}
    with pytest.raises(EnvelopeError) as caught:
        decode(data, max_bytes=len(data) - 1)
    assert caught.value.code == "oversize"
    assert f"message of {len(data)} bytes exceeds {len(data) - 1} bytes" in caught.value.reason
    with pytest.raises(EnvelopeError, match="oversize"):
        decode(b"\xc1" * (DEFAULT_MAX_MESSAGE_BYTES + 1))


def test_envelope_error_is_in_the_error_hierarchy() -> None:
    error = EnvelopeError("field", "why")
    assert isinstance(error, BusError)
    assert isinstance(error, TaskbusError)
    assert isinstance(error, ValueError)


# ---------------------------------------------------------------- ids


def test_ids_are_unique_and_sort_in_creation_order() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(len(i) == 16 for i in ids)
    # The first 48 bits are Unix milliseconds: never behind the clock when the id was made.
    assert before_ms <= int.from_bytes(ids[0][:6], "big")


def test_ids_are_uuid_version_7() -> None:
    message_id = new_message_id()
    parsed = uuid.UUID(bytes=message_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert format_message_id(message_id) == str(parsed)
    assert uuid.UUID(format_message_id(message_id)).bytes == message_id
