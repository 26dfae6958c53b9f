"""The CLI's JSON rendering of stored values: it always renders, and plain values are unchanged."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack

from taskbus.cli import format as fmt
from tests.bus.raw import nested


def test_plain_values_render_as_json_dumps_does() -> None:
    value = {"b": [1, 2.5, None, True, "é"], "a": {"z": {}, "y": []}, "n": -3}
    assert fmt.as_json(value) == json.dumps(value, sort_keys=True)
    assert fmt.as_json(value, indent=2) == json.dumps(value, indent=2, sort_keys=True)


def test_what_json_cannot_hold_becomes_a_placeholder_or_text() -> None:
    value: dict[Any, Any] = {
        "nan": math.nan,
        "inf": math.inf,
        "blob": b"\x00\xff",
        b"raw-key": 1,  # msgpack map keys may be bin; json.dumps refused them, sorted or not
        "ext": msgpack.ExtType(5, b"x"),
        "pair": (1, 2),
    }
    assert json.loads(fmt.as_json(value)) == {
        "nan": "<nan: not a JSON number>",
        "inf": "<inf: not a JSON number>",
        "blob": "b'\\x00\\xff'",
        "b'raw-key'": 1,
        "ext": [5, "b'x'"],
        "pair": [1, 2],
    }


def test_a_value_nested_past_what_is_shown_is_cut_with_a_placeholder() -> None:
    shown = json.loads(fmt.as_json(nested(5_000)))  # json.dumps raised RecursionError
    for _ in range(fmt.JSON_DEPTH):
        shown = shown["m"] if isinstance(shown, dict) else shown[0]
    assert shown == f"<not shown: nested deeper than {fmt.JSON_DEPTH} levels>"
    assert json.loads(fmt.as_json(nested(fmt.JSON_DEPTH))) == nested(fmt.JSON_DEPTH)
