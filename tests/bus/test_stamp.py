"""The broker's stamp: spliced into the sender's bytes, or re-encoded; never anyone else's name."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from bus import Envelope, decode
from bus.envelope import encode_new, validated_fields
from bus.stamp import stamp
from config.bus import DEFAULT_MAX_MESSAGE_BYTES
from tests.bus.raw import VALID_ID, fields, pack

OTHER_ID = bytes(range(100, 116))
# A payload whose 1 is written as a uint32: a re-encode would shorten it, a splice keeps it.
WIDE_ONE = b"\x81\xa1n\xce\x00\x00\x00\x01"


def stamped(data: bytes, sender: str, reply_to: str | None = None) -> tuple[bytes, Envelope]:
    result = stamp(data, validated_fields(data), sender, reply_to)
    return result, decode(result)


def expected(data: bytes, sender: str, reply_to: str | None) -> Envelope:
    return decode(data).stamped(sender, reply_to)


@pytest.mark.parametrize("topic", ["demo.a", "demo." + "t" * 40, "demo." + "t" * 250])
@pytest.mark.parametrize("correlation_id", [None, OTHER_ID])
@pytest.mark.parametrize("client_reply_to", [None, "asker#1", "asker#" + "9" * 60])
@pytest.mark.parametrize("reply_to", [None, "asker#12", "é" * 40])
def test_a_client_envelope_is_spliced_with_only_the_stamp_changed(
    topic: str, correlation_id: bytes | None, client_reply_to: str | None, reply_to: str | None
) -> None:
    _, data = encode_new(
        topic, {"k": [1, {"x": "y"}]}, DEFAULT_MAX_MESSAGE_BYTES, correlation_id, client_reply_to
    )
    result, envelope = stamped(data, "scheduler", reply_to)
    assert envelope == expected(data, "scheduler", reply_to)
    assert validated_fields(result) is not None  # still a valid envelope for any peer


def test_the_splice_keeps_the_payload_bytes_as_sent() -> None:
    header = pack(fields(payload={}))[:-1]  # the canonical header, without the payload map
    data = header + WIDE_ONE
    result, envelope = stamped(data, "producer")
    assert result.endswith(WIDE_ONE)
    assert envelope.sender == "producer"
    assert envelope.payload == {"n": 1}


def test_a_correlation_id_the_broker_set_is_written() -> None:
    data = pack(fields(correlation_id=None))
    wire_fields = validated_fields(data)
    wire_fields[5] = VALID_ID  # as the broker does for a request that has none
    envelope = decode(stamp(data, wire_fields, "asker", "asker#3"))
    assert (envelope.correlation_id, envelope.sender, envelope.reply_to) == (
        VALID_ID,
        "asker",
        "asker#3",
    )


def _str16(text: str) -> bytes:
    raw = text.encode()
    return b"\xda" + struct.pack(">H", len(raw)) + raw


def _layout(**parts: bytes) -> bytes:
    """An envelope from hand-encoded fields; the defaults are what a taskbus client writes."""
    values: dict[str, Any] = {
        "head": b"\x98",
        "version": b"\x01",
        "id": b"\xc4\x10" + VALID_ID,
        "topic": pack("demo.raw"),
        "sender": pack(""),
        "timestamp": pack(1_700_000_000.5),
        "correlation_id": pack(None),
        "reply_to": pack(None),
        "payload": WIDE_ONE,
    }
    values.update(parts)
    return b"".join(values.values())


@pytest.mark.parametrize(
    "parts",
    [
        {"sender": pack("forged")},
        {"sender": _str16("scheduler")},
        {"sender": pack("scheduler" * 10)},
        {"topic": _str16("demo.raw")},
        {"topic": b"\xd9\x08demo.raw"},
        {"head": b"\xdc\x00\x08"},
        {"version": b"\xcc\x01"},
        {"id": b"\xc5\x00\x10" + VALID_ID},
        {"timestamp": b"\xce" + struct.pack(">I", 1_700_000_000)},
        {"timestamp": b"\xca" + struct.pack(">f", 1.5)},
        {"timestamp": b"\x05"},
        {"correlation_id": b"\xc5\x00\x10" + OTHER_ID},
        {"reply_to": _str16("asker#1")},
        {"reply_to": b"\xdb\x00\x00\x00\x07asker#1"},
        {"reply_to": b"\xd9\x07asker#1"},
    ],
    ids=lambda parts: "-".join(f"{k}={v[:3].hex()}" for k, v in parts.items()),
)
def test_any_other_layout_still_carries_only_the_brokers_stamp(parts: dict[str, bytes]) -> None:
    """Forged senders and unusual (valid) encodings: a peer never passes as another identity."""
    data = _layout(**parts)
    result, envelope = stamped(data, "mallory", "mallory#2")
    assert envelope == expected(data, "mallory", "mallory#2")
    assert (envelope.sender, envelope.reply_to, envelope.payload) == (
        "mallory",
        "mallory#2",
        {"n": 1},
    )
    assert b"forged" not in result
