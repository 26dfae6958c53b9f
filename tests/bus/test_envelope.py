"""The envelope as a value: encode/decode, strict validation with precise codes, and message ids."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import OrderedDict
from typing import Any, NamedTuple

import msgpack
import pytest

from bus import PROTOCOL_VERSION, BusError, Envelope, EnvelopeError, decode, new_message_id
from bus.envelope import decode_trusted, encode_new, validated_fields
from bus.ids import format_message_id
from bus.nesting import MAX_PAYLOAD_DEPTH, nesting_depth
from config import TaskbusError
from config.bus import DEFAULT_MAX_MESSAGE_BYTES
from tests.bus.raw import VALID_ID, envelope, fields, nested, pack

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


def test_stamped_replaces_only_sender_and_reply_to() -> None:
    original = Envelope("demo.a", {"x": 1}, sender="forged", reply_to="forged#1")
    stamped = original.stamped("mallory", "mallory#2")
    assert (stamped.sender, stamped.reply_to) == ("mallory", "mallory#2")
    assert (stamped.id, stamped.topic, stamped.payload, stamped.timestamp) == (
        original.id,
        original.topic,
        original.payload,
        original.timestamp,
    )


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
    pytest.param(envelope(timestamp=math.nan), "field", "finite number, got nan", id="ts-nan"),
    pytest.param(envelope(timestamp=math.inf), "field", "finite number, got inf", id="ts-inf"),
    pytest.param(envelope(timestamp=-math.inf), "field", "finite number, got -inf", id="ts-ninf"),
    pytest.param(envelope(correlation_id=b"1"), "field", "correlation_id must be", id="corr"),
    pytest.param(envelope(correlation_id="c" * 16), "field", "got str", id="corr-str"),
    pytest.param(envelope(reply_to=b"x#1"), "field", "reply_to must be a string", id="reply"),
    pytest.param(envelope(payload=None), "payload", "must be a map, got NoneType", id="pl-nil"),
    pytest.param(envelope(payload=[1]), "payload", "must be a map, got list", id="pl-list"),
    pytest.param(envelope(payload=b"{}"), "payload", "must be a map, got 2 bytes", id="pl-bin"),
    pytest.param(
        envelope(payload=nested(33)),
        "payload",
        "payload nests 33 levels of maps and arrays, more than the limit of 32",
        id="pl-33-deep",
    ),
    pytest.param(
        envelope(payload={"config": nested(1020)}),
        "payload",
        "payload nests 1021 levels of maps and arrays, more than the limit of 32",
        id="pl-1021-deep",
    ),
    pytest.param(  # the deep branch is not the first one
        envelope(payload={"a": [1, {"b": "x"}], "z": [{"c": nested(40)}]}),
        "payload",
        "payload nests 43 levels",
        id="pl-deep-late-branch",
    ),
    # The field checks come first: a deep payload in a bad envelope is reported by its field.
    pytest.param(envelope(topic=1, payload=nested(40)), "field", "topic must be", id="field-first"),
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


def test_a_payload_nesting_exactly_the_limit_decodes() -> None:
    assert MAX_PAYLOAD_DEPTH == 32
    payload = nested(MAX_PAYLOAD_DEPTH)
    assert decode(envelope(payload=payload)).payload == payload
    wide = {"a": [nested(MAX_PAYLOAD_DEPTH - 2)] * 50, "b": list(range(100)), "c": {"d": None}}
    assert decode(envelope(payload=wide)).payload == wide


def test_integer_and_finite_float_timestamps_decode() -> None:
    for stamp in (0, -1, 1_700_000_000, 1.5e-300, 1e300, 2**63 - 1):
        assert decode(envelope(timestamp=stamp)).timestamp == float(stamp)


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


# ---------------------------------------------------------------- nesting


class Pair(NamedTuple):
    left: Any
    right: Any


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (None, 0),
        ("text", 0),
        (b"\x00", 0),
        (msgpack.ExtType(5, b"ext"), 0),  # a tuple to Python, an ext to msgpack
        ({}, 1),
        ([], 1),
        ({"a": 1, "b": "x", "c": None}, 1),
        ({"a": [1]}, 2),
        ({"a": {"b": {}}}, 3),
        ([[], [[]], []], 3),
        ({"a": (1, (2, (3,)))}, 4),
        (OrderedDict(a=OrderedDict(b=[])), 3),
        ({"pair": Pair([], {"x": [0]})}, 4),
        ({"many": list(range(100)), "maps": [{"k": i} for i in range(100)]}, 3),
        ({"first": 1, "last": [[[[{}]]]]}, 6),
    ],
)
def test_nesting_depth_counts_maps_and_arrays(value: Any, depth: int) -> None:
    assert nesting_depth(value) == depth


def test_nesting_depth_stops_counting_past_stop_after() -> None:
    deep = nested(1_000)
    assert nesting_depth(deep) == 1_000
    assert nesting_depth(deep, 32) == 33
    assert nesting_depth(nested(32), 32) == 32
    cycle: dict[str, Any] = {}
    cycle["self"] = [cycle]
    assert nesting_depth(cycle, 10) == 11


def _reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_reference_depth, value), default=0)
    return 0


def _random_value(rng: random.Random, budget: int) -> Any:
    roll = rng.random()
    if budget <= 0 or roll < 0.3:
        return rng.choice([1, "s", None, 2.5, b"b", True])
    # Mostly narrow, sometimes past the width at which a container takes the C-level pass.
    width = rng.randrange(0, 4) if rng.random() < 0.8 else rng.randrange(9, 13)
    items = [_random_value(rng, budget - 1) for _ in range(width)]
    if roll < 0.65:
        return items
    return {f"k{i}": item for i, item in enumerate(items)}


def test_nesting_depth_matches_a_recursive_reference_on_random_values() -> None:
    rng = random.Random(12)
    for _ in range(300):
        value = {"v": _random_value(rng, rng.randrange(1, 8))}
        assert nesting_depth(value) == _reference_depth(value)
        decoded = msgpack.unpackb(pack(value))
        assert nesting_depth(decoded) == _reference_depth(value)


def test_encode_new_refuses_a_payload_nested_past_the_limit() -> None:
    for payload, depth in [
        (nested(33), 33),
        ({"config": nested(1020)}, 1021),
        ({"t": ((), ()), "deep": (((nested(31),),),)}, 35),  # tuples pack as arrays
    ]:
        with pytest.raises(EnvelopeError) as caught:
            encode_new("demo.a", payload, DEFAULT_MAX_MESSAGE_BYTES)
        assert caught.value.code == "payload"
        assert caught.value.reason == (
            f"payload nests {depth} levels of maps and arrays, more than the limit of 32"
        )
    _, data = encode_new("demo.a", nested(32), DEFAULT_MAX_MESSAGE_BYTES)
    assert decode(data).payload == nested(32)


def test_encode_new_refuses_a_cyclic_payload() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(EnvelopeError) as caught:
        encode_new("demo.a", cycle, DEFAULT_MAX_MESSAGE_BYTES)
    assert caught.value.code == "payload"
    assert "not msgpack-serialisable" in caught.value.reason


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
