"""The CLI's JSON rendering of stored values: it always renders, and plain values are unchanged."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import msgpack

from taskbus.cli import format as fmt
from taskbus.cli.status import Changes
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


def test_progress_is_shown_as_a_percentage() -> None:
    line = fmt.event_line(
        "scheduler.task.status.cli",
        "executor-user",
        {"task_id": "user.x", "state": "progress", "fraction": 1 / 3, "note": "a third"},
        datetime(2026, 1, 1, 12, 3, 4),
    )
    assert (
        line
        == "12:03:04 scheduler.task.status.cli user.x progress 33% note=a third (executor-user)"
    )


def _health(status: str, **actors: str) -> dict[str, Any]:
    return {"status": status, "actors": {name: {"status": s} for name, s in actors.items()}}


def test_watch_shows_health_only_when_it_changes() -> None:
    changes = Changes()
    shown = [
        changes.new("scheduler.health", event)
        for event in (
            _health("healthy", store="healthy"),
            _health("healthy", store="healthy"),  # the periodic publication, unchanged
            _health("degraded", store="degraded"),
            _health("degraded", store="degraded"),
            _health("healthy", store="healthy"),
        )
    ]
    assert shown == [True, False, True, False, True]
    assert changes.new("scheduler.health.check", {"ok": True})  # the check task's report: shown


def test_watch_shows_each_state_of_a_run_once_and_every_progress() -> None:
    changes = Changes()
    topic = "scheduler.task.status.cli"
    states = ["queued", "queued", "started", "progress", "progress", "succeeded"]
    shown = [changes.new(topic, {"execution_id": "e1", "state": s}) for s in states]
    assert shown == [True, False, True, True, True, True]
    assert changes.new(topic, {"execution_id": "e2", "state": "queued"})  # another run
    assert changes.new(topic, {"task_id": "user.x", "state": "defined"})  # not a run's
