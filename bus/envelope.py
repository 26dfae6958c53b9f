"""The one message envelope of the bus: a frozen, versioned value encoded as a msgpack array.

Field order on the wire (documented in ``docs/protocol.md``)::

    [version, id, topic, sender, timestamp, correlation_id, reply_to, payload]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bus.errors import EnvelopeError
from bus.ids import new_message_id
from bus.nesting import MAX_PAYLOAD_DEPTH, nesting_depth, only_scalars
from bus.topics import check_topic, is_valid_topic
from config.bus import DEFAULT_MAX_MESSAGE_BYTES

PROTOCOL_VERSION = 1
_FIELD_COUNT = 8
_ID_BYTES = 16
_NUMBER_TYPES = (float, int)

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    topic: str
    payload: Payload = field(default_factory=dict)
    sender: str = ""
    id: bytes = field(default_factory=new_message_id)
    timestamp: float = field(default_factory=time.time)
    correlation_id: bytes | None = None
    reply_to: str | None = None
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return msgpack.packb(  # type: ignore[no-any-return]
            [
                self.version,
                self.id,
                self.topic,
                self.sender,
                self.timestamp,
                self.correlation_id,
                self.reply_to,
                self.payload,
            ],
            use_bin_type=True,
        )

    def stamped(self, sender: str, reply_to: str | None = None) -> Envelope:
        """The same message with the broker's authenticated ``sender`` (and ``reply_to``)."""
        return Envelope(
            self.topic,
            self.payload,
            sender,
            self.id,
            self.timestamp,
            self.correlation_id,
            reply_to,
            self.version,
        )


def encode_new(
    topic: str,
    payload: Payload,
    max_bytes: int,
    correlation_id: bytes | None = None,
    reply_to: str | None = None,
    *,
    message_id: bytes | None = None,
) -> tuple[bytes, bytes]:
    """``(id, bytes)`` of a new envelope, without building an :class:`Envelope` (client hot path).

    Refuses what the broker would refuse, so the caller gets the error instead of a peer.
    ``message_id`` (16 bytes) replaces the fresh UUIDv7, for work whose id must be stable.
    """
    check_topic(topic)
    if type(payload) is not dict:
        raise EnvelopeError("payload", f"payload must be a map, got {_kind(payload)}")
    if message_id is None:
        message_id = new_message_id()
    elif type(message_id) is not bytes or len(message_id) != 16:
        raise EnvelopeError("field", "a message id is 16 bytes")
    fields = [
        PROTOCOL_VERSION,
        message_id,
        topic,
        "",
        time.time(),
        correlation_id,
        reply_to,
        payload,
    ]
    try:
        data: bytes = msgpack.packb(fields, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EnvelopeError("payload", f"payload is not msgpack-serialisable: {exc}") from exc
    if len(data) > max_bytes:
        raise EnvelopeError("oversize", f"message of {len(data)} bytes exceeds {max_bytes} bytes")
    # Measured after packing: what packed is finite (no cycles) and at most max_bytes elements.
    if _nests_too_deep(payload):
        raise _too_deep(payload)
    return message_id, data


def decode_trusted(data: bytes) -> Envelope:
    """Decode an envelope the broker already validated (a client's hot path)."""
    return Envelope(*_reorder(msgpack.unpackb(data, raw=False, use_list=True)))


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Envelope:
    """Strictly decode one envelope; every failure is an :class:`EnvelopeError` naming the cause."""
    return Envelope(*_reorder(validated_fields(data, max_bytes)))


def _reorder(fields: list[Any]) -> tuple[Any, ...]:
    version, message_id, topic, sender, timestamp, correlation_id, reply_to, payload = fields
    return (topic, payload, sender, message_id, float(timestamp), correlation_id, reply_to, version)


def validated_fields(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[Any]:
    """The envelope's wire fields, after every check :func:`decode` makes."""
    if len(data) > max_bytes:
        raise EnvelopeError("oversize", f"message of {len(data)} bytes exceeds {max_bytes} bytes")
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData as exc:
        raise EnvelopeError("malformed", "trailing bytes after the envelope") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise EnvelopeError("malformed", f"not valid msgpack ({exc})") from exc
    if not _well_formed(fields):
        _explain(fields)
        raise AssertionError("unreachable: _explain raises for every rejected envelope")
    if _nests_too_deep(fields[7]):
        raise _too_deep(fields[7])
    return fields  # type: ignore[no-any-return]


def _nests_too_deep(payload: Payload) -> bool:
    """The hot path: a map of scalars only, the usual payload, takes one C-level pass."""
    return not only_scalars(map(type, payload.values())) and (
        nesting_depth(payload, MAX_PAYLOAD_DEPTH) > MAX_PAYLOAD_DEPTH
    )


def _too_deep(payload: object) -> EnvelopeError:
    depth = nesting_depth(payload)
    return EnvelopeError(
        "payload",
        f"payload nests {depth} levels of maps and arrays, more than the limit of "
        f"{MAX_PAYLOAD_DEPTH}",
    )


def _well_formed(fields: object) -> bool:
    """The hot path: exact type checks only. Anything unusual goes to :func:`_explain`."""
    if type(fields) is not list or len(fields) != _FIELD_COUNT:
        return False
    version, message_id, topic, sender, timestamp, correlation_id, reply_to, payload = fields
    return (
        type(version) is int
        and version == PROTOCOL_VERSION
        and type(message_id) is bytes
        and len(message_id) == _ID_BYTES
        and type(topic) is str
        and is_valid_topic(topic)
        and type(sender) is str
        and type(timestamp) in _NUMBER_TYPES
        and math.isfinite(timestamp)
        and (
            correlation_id is None
            or (type(correlation_id) is bytes and len(correlation_id) == _ID_BYTES)
        )
        and (reply_to is None or type(reply_to) is str)
        and type(payload) is dict
    )


def _explain(fields: Any) -> None:
    """Raise the precise :class:`EnvelopeError` for fields the hot path rejected."""
    if not isinstance(fields, list):
        raise EnvelopeError("malformed", f"envelope must be a msgpack array, got {_kind(fields)}")
    if not fields:
        raise EnvelopeError("malformed", "envelope array is empty")
    version = fields[0]
    if type(version) is not int or version != PROTOCOL_VERSION:  # exactly as _well_formed
        raise EnvelopeError(
            "version",
            f"unsupported envelope version {version!r} (this bus speaks {PROTOCOL_VERSION})",
        )
    if len(fields) != _FIELD_COUNT:
        raise EnvelopeError(
            "malformed", f"envelope has {len(fields)} fields, version 1 has {_FIELD_COUNT}"
        )
    _, message_id, topic, sender, timestamp, correlation_id, reply_to, payload = fields
    if not isinstance(message_id, bytes) or len(message_id) != _ID_BYTES:
        raise EnvelopeError("field", f"id must be {_ID_BYTES} bytes, got {_kind(message_id)}")
    if not isinstance(topic, str):
        raise EnvelopeError("field", f"topic must be a string, got {_kind(topic)}")
    check_topic(topic)
    if not isinstance(sender, str):
        raise EnvelopeError("field", f"sender must be a string, got {_kind(sender)}")
    if not isinstance(timestamp, float | int) or isinstance(timestamp, bool):
        raise EnvelopeError("field", f"timestamp must be a number, got {_kind(timestamp)}")
    if not math.isfinite(timestamp):
        raise EnvelopeError("field", f"timestamp must be a finite number, got {timestamp!r}")
    if correlation_id is not None and (
        not isinstance(correlation_id, bytes) or len(correlation_id) != _ID_BYTES
    ):
        raise EnvelopeError(
            "field", f"correlation_id must be {_ID_BYTES} bytes or nil, got {_kind(correlation_id)}"
        )
    if reply_to is not None and not isinstance(reply_to, str):
        raise EnvelopeError("field", f"reply_to must be a string or nil, got {_kind(reply_to)}")
    if not isinstance(payload, dict):
        raise EnvelopeError("payload", f"payload must be a map, got {_kind(payload)}")


def _kind(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return type(value).__name__
