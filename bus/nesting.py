"""How deeply maps and arrays nest in a value: the bus's nesting limit and its cheap check.

A pure helper of the wire format, like ``bus.ids``: the envelope decoder checks every payload
with it, and the store checks what it keeps (it must fit in the replies that carry it back).
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack

MAX_PAYLOAD_DEPTH = 32
"""How deeply maps and arrays may nest in any payload, the payload map being level 1.

msgpack refuses to pack or unpack past about 1,024 levels: without a limit of our own the bus
would accept a value that, once stored, no later message could carry. Real payloads nest under 10
levels. The limit holds for replies too, so an owner that sends a stored value back inside more
levels than it arrived in keeps what it stores that many levels below this (docs/protocol.md §5).
"""
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None), bytes))
only_scalars = _SCALAR_TYPES.issuperset
_FEW = 8  # a container this small is cheaper to scan in Python than through map()


def nesting_depth(value: object, stop_after: int | None = None) -> int:
    """How many levels of maps and arrays ``value`` nests: 0 for a scalar, 1 for ``{}`` or
    ``{"a": 1}``, 2 for ``{"a": [1]}``. With ``stop_after``, counting stops past that many levels.

    Level by level, without recursion, so it is cheap on the broker's hot path: a scalar costs one
    set lookup, a container of more than a few plain scalars one C-level pass over their types,
    and only maps and arrays are queued for the next level. ``value`` must be finite (a decoded
    message, or a value msgpack could pack): a cycle is cut only by ``stop_after``.
    """
    limit = sys.maxsize if stop_after is None else stop_after
    if type(value) is dict:  # a payload: the usual case
        level = [value.values()]
    else:
        level = [_items(value)] if _is_container(value) else []
    depth = 0
    scalars = _SCALAR_TYPES
    only_scalars = scalars.issuperset
    while level:
        if depth == limit:
            return limit + 1
        depth += 1
        deeper: list[Any] = []
        append = deeper.append
        for items in level:
            if len(items) > _FEW and only_scalars(map(type, items)):
                continue
            for item in items:
                kind = type(item)
                if kind in scalars:
                    continue
                if kind is dict:
                    append(item.values())
                elif kind is list or kind is tuple:
                    append(item)
                elif _is_container(item):  # a subclass, from a caller's payload
                    append(_items(item))
        level = deeper
    return depth


def _is_container(value: object) -> bool:
    """A map or an array to msgpack: a dict, list or tuple, or a subclass other than ExtType."""
    return isinstance(value, (dict, list, tuple)) and not isinstance(value, msgpack.ExtType)


def _items(container: Any) -> Any:
    return container.values() if isinstance(container, dict) else container
