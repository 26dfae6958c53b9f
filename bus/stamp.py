"""The broker's stamp on a validated envelope: its ``sender`` (and ``reply_to``), spliced in.

The broker forwards every envelope with the authenticated identity of its sender in ``sender``
(whatever the client wrote there is replaced) and, on requests, the asker's peer name in
``reply_to`` (``../docs/protocol.md`` §2, ``../docs/security.md`` §5). Rather than re-encoding
the whole envelope, payload included, it keeps the sender's bytes and replaces only the
``sender``, ``correlation_id`` and ``reply_to`` fields, when the envelope's header has the layout
msgpack's packer writes for these values (what every taskbus client sends)::

    98 01 c4 10 <id: 16 bytes> <topic: fixstr or str8> a0 cb <timestamp: 8 bytes>
    <correlation_id: c0 or c4 10 + 16 bytes> <reply_to: c0, fixstr or str8> <payload ...>

Why it is safe: the envelope was fully decoded and validated first, and every header byte that
fixes a field's length is checked here, so the boundaries found are exactly the ones the decoder
used; what follows ``reply_to`` is the payload it validated. Any other layout (a non-empty
``sender`` from the client, an integer or float32 timestamp, wider length headers) is re-encoded
from the validated fields instead: same result, slower. Either way a peer cannot make the
forwarded envelope carry a sender other than its own identity.
"""

from __future__ import annotations

from typing import Any

import msgpack

_HEAD = b"\x98\x01\xc4\x10"  # an array of 8, version 1, an id of bin8 16 bytes
_ID_END = len(_HEAD) + 16
_EMPTY_STR, _FLOAT64, _NIL, _BIN8, _STR8 = 0xA0, 0xCB, 0xC0, 0xC4, 0xD9
_FIXSTR_MAX = 31
# For the few small scalars of the stamp: packs them without making a packer each time (a packer
# of plain str, bytes and None runs no Python code, so the GIL is never let go in the middle).
_pack = msgpack.Packer(use_bin_type=True).pack


def stamp(data: bytes, fields: list[Any], sender: str, reply_to: str | None = None) -> bytes:
    """``data``, an envelope :func:`~bus.envelope.validated_fields` returned ``fields`` for, with
    ``sender`` and ``reply_to`` set and the correlation id of ``fields[5]``.

    ``fields[3]`` and ``fields[6]`` are set to the stamp as well.
    """
    fields[3] = sender
    fields[6] = reply_to
    at = _sender_at(data, fields[2])
    if at >= 0:
        after = _payload_at(data, at + 10)
        if after >= 0:
            return b"".join(
                (
                    data[:at],
                    _pack(sender),
                    data[at + 1 : at + 10],  # the timestamp, float64, as the sender wrote it
                    _pack(fields[5]),
                    _pack(reply_to),
                    data[after:],
                )
            )
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def _sender_at(data: bytes, topic: str) -> int:
    """Where an empty ``sender`` followed by a float64 timestamp starts, or -1."""
    if not data.startswith(_HEAD):
        return -1
    size = len(topic)  # a valid topic is ASCII of at most 255 characters
    if size <= _FIXSTR_MAX:
        if data[_ID_END] != _EMPTY_STR | size:
            return -1
        at = _ID_END + 1 + size
    elif data[_ID_END] == _STR8 and data[_ID_END + 1] == size:
        at = _ID_END + 2 + size
    else:
        return -1
    if data[at] != _EMPTY_STR or data[at + 1] != _FLOAT64:
        return -1
    return at


def _payload_at(data: bytes, at: int) -> int:
    """Past ``correlation_id`` (at ``at``) and ``reply_to``: where the payload starts, or -1."""
    kind = data[at]
    if kind == _NIL:
        at += 1
    elif kind == _BIN8 and data[at + 1] == 16:
        at += 18
    else:
        return -1
    kind = data[at]
    if kind == _NIL:
        return at + 1
    if _EMPTY_STR <= kind <= _EMPTY_STR | _FIXSTR_MAX:
        return at + 1 + (kind - _EMPTY_STR)
    if kind == _STR8:
        return at + 2 + data[at + 1]
    return -1
