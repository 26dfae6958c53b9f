"""Unique, time-ordered message ids (UUIDv7 layout, RFC 9562)."""

from __future__ import annotations

import random
import time
import uuid

_last_ms = 0
_sequence = 0


def new_message_id() -> bytes:
    """16 bytes: 48-bit Unix milliseconds, a 12-bit in-process sequence, 62 random bits.

    Ids made by one process sort in creation order even within the same millisecond.
    """
    global _last_ms, _sequence  # noqa: PLW0603 - one ordering per process, on purpose
    now_ms = time.time_ns() // 1_000_000
    if now_ms > _last_ms:
        _last_ms, _sequence = now_ms, 0
    else:
        _sequence += 1
        if _sequence > 0xFFF:  # more than 4096 ids in one millisecond: borrow the next one
            _last_ms, _sequence = _last_ms + 1, 0
    rand = random.getrandbits(62)  # unique, not secret: ids are no capability
    value = (_last_ms << 80) | (0x7 << 76) | (_sequence << 64) | (0b10 << 62) | rand
    return value.to_bytes(16, "big")


def format_message_id(message_id: bytes) -> str:
    return str(uuid.UUID(bytes=message_id))
