"""Frames exchanged between a client's DEALER and the broker's ROUTER (``docs/protocol.md``).

Every ZeroMQ message is ``[command, body]``: ``command`` is one ASCII byte, ``body`` a msgpack
value. Envelope-carrying commands batch several encoded envelopes into one body (a msgpack array
of ``bin``), which is how a Python broker keeps up with libzmq.
"""

from __future__ import annotations

from typing import Any

import msgpack

from bus.errors import EnvelopeError

# client -> broker
HELLO = b"H"
SUBSCRIBE = b"S"
UNSUBSCRIBE = b"U"
SERVE = b"V"
CONSUME = b"C"
WATCH = b"W"  # which of these prefixes does anyone subscribe to? (answered with LISTENERS)
PUBLISH = b"P"  # also broker -> subscriber (events)
REQUEST = b"Q"  # also broker -> responder
REPLY = b"R"  # also broker -> asker
ENQUEUE = b"E"
ACK = b"A"
NACK = b"N"
HEARTBEAT = b"h"  # both ways
BYE = b"X"

# broker -> client
CONTROL_ACK = b"k"
DELIVER = b"D"
CONFIRM = b"c"
DONE = b"d"
ERROR = b"!"
WHO = b"?"
LISTENERS = b"l"  # [{prefix, listened}] for a peer's watched prefixes, at WATCH and on change

ENVELOPE_COMMANDS = frozenset({PUBLISH, REQUEST, REPLY, ENQUEUE})
CONTROL_COMMANDS = frozenset({HELLO, SUBSCRIBE, UNSUBSCRIBE, SERVE, CONSUME, WATCH})

# Per-item overhead of a batch (array header and bin header) allowed above max_message_bytes.
BATCH_SLACK_BYTES = 64 * 1024
# Batches are cut at about this size, so that high-water marks (counted in frames) bound the
# envelopes in flight and no single frame keeps a pump busy for long.
BATCH_TARGET_BYTES = 32 * 1024

_only_bytes = frozenset((bytes,)).issuperset  # unpacked with raw=False: bin is exactly bytes


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_body(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes + BATCH_SLACK_BYTES:
        raise EnvelopeError("oversize", f"message of {len(body)} bytes exceeds {max_bytes} bytes")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData as exc:
        raise EnvelopeError("malformed", "trailing bytes after the frame body") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise EnvelopeError("malformed", f"frame body is not valid msgpack ({exc})") from exc


def unpack_batch(body: bytes, max_bytes: int) -> list[bytes]:
    """The encoded envelopes of an envelope-carrying frame (each still to be validated)."""
    items = unpack_body(body, max_bytes)
    if type(items) is not list or not _only_bytes(map(type, items)):
        raise EnvelopeError("malformed", "frame body must be an array of encoded envelopes")
    return items


def unpack_controls(body: bytes, max_bytes: int) -> list[dict[str, Any]]:
    """The argument maps of a control frame (HELLO, SUBSCRIBE, ...): an array of maps."""
    items = unpack_body(body, max_bytes)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise EnvelopeError("malformed", "control frame body must be an array of maps")
    return items


def chunk_length(items: list[Any], limit: int) -> int:
    """How many queued items fit in one frame of about ``limit`` bytes (always at least one)."""
    if len(items) == 1:  # an ask, a reply: the latency path
        return 1
    total = 0
    for count, item in enumerate(items):
        if isinstance(item, bytes):
            size = len(item)
        elif isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes):
            size = len(item[1]) + 16  # a delivery: [attempt, envelope]
        else:
            size = 256  # ids, acks, control maps and error maps are small
        total += size + 5
        if total > limit and count:
            return count
    return len(items)
