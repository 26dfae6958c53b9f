"""How the CLI shows things to a person: relative times, tables, one-line events, stored values
as JSON that always renders."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from config import topics

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
JSON_DEPTH = 64  # levels shown; the bus carries at most 32 (bus.envelope.MAX_PAYLOAD_DEPTH)


def relative(instant: str | None, now: datetime) -> str:
    """``in 3m``, ``2h ago``, ``now``; ``-`` for None. Two units above an hour (``in 1d 4h``)."""
    if instant is None:
        return "-"
    seconds = (datetime.fromisoformat(instant) - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    span = _span(abs(seconds))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _span(seconds: float) -> str:
    whole = int(seconds)
    parts = []
    for unit, size in _UNITS:
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
        if len(parts) == 2 or (parts and size < 3_600):
            break
    return " ".join(parts) or "1s"


def instant(value: str | None, now: datetime, zone: tzinfo | None = None) -> str:
    """``2024-05-01 09:00:00 CEST (in 3m)``, in the local zone; in ``zone`` with its offset
    (``2024-05-01 09:00:00 CEST +0200 (in 3m)``) if given; ``-`` for None."""
    if value is None:
        return "-"
    if zone is not None:
        zoned = datetime.fromisoformat(value).astimezone(zone)
        return f"{zoned:%Y-%m-%d %H:%M:%S %Z %z} ({relative(value, now)})"
    zoned = datetime.fromisoformat(value).astimezone()
    return f"{zoned:%Y-%m-%d %H:%M:%S %Z} ({relative(value, now)})"


def local(value: str) -> str:
    """``2024-05-01 09:00:00``: the instant in the local zone."""
    return f"{datetime.fromisoformat(value).astimezone():%Y-%m-%d %H:%M:%S}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def clip(text: str | None, width: int) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"


def size(count: int) -> str:
    """``512B``, ``2.0KiB``, ``1.5MiB``: a byte count."""
    if count < 1024:
        return f"{count}B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f}KiB"
    return f"{count / (1024 * 1024):.1f}MiB"


def run_state(run: Mapping[str, Any]) -> str:
    """An execution's outcome in a word: running, succeeded or failed; ``suspended`` for an
    attempt that ended because its run slept or waited (a later attempt wakes it,
    docs/runs.md), ``cancelled`` for one its run's cancel ended."""
    if run["success"] is None:
        return "running"
    result = run.get("result")
    if not isinstance(result, Mapping):
        result = {}
    if run["success"]:
        return "suspended" if "suspended" in result else "succeeded"
    error_type = result.get("error_type")
    if isinstance(error_type, list | tuple) and "RunCancelled" in error_type:
        return "cancelled"
    return "failed"


def run_result(result: Mapping[str, Any] | None) -> str:
    """An execution's result data as JSON, or nothing."""
    return "" if not result else as_json(result)


def event_line(topic: str, sender: str, payload: Mapping[str, Any], received: datetime) -> str:
    """``12:03:04 scheduler.task.status user.x queued attempt=1 (scheduler)``."""
    fields = dict(payload)
    head = [received.strftime("%H:%M:%S"), topic]
    for key in ("task_id", "state", "status"):
        value = fields.pop(key, None)
        if isinstance(value, str):
            head.append(value)
    fraction = fields.get("fraction")
    if isinstance(fraction, int | float) and not isinstance(fraction, bool):
        head.append(f"{fields.pop('fraction'):.0%}")  # a run's progress: 33%
    if topic.startswith(topics.HEALTH) and isinstance(fields.get("actors"), dict):
        actors = fields.pop("actors")
        fields["unwell"] = ",".join(
            f"{name}:{report['status']}"
            for name, report in sorted(actors.items())
            if report.get("status") != "healthy"
        )
    rest = [f"{key}={_short(value)}" for key, value in fields.items() if value not in (None, "")]
    return " ".join([*head, *rest, f"({sender})"])


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return clip(text, 80)


def as_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON with sorted keys, whatever a stored value holds: keys that are not text
    are shown as text, and what JSON cannot show is a short ``<...>`` placeholder saying why."""
    return json.dumps(_showable(value, JSON_DEPTH), indent=indent, sort_keys=True, allow_nan=False)


def _showable(value: Any, levels: int) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else f"<{value}: not a JSON number>"
    if isinstance(value, Mapping | list | tuple):
        if levels == 0:
            return f"<not shown: nested deeper than {JSON_DEPTH} levels>"
        if isinstance(value, Mapping):
            return {str(key): _showable(item, levels - 1) for key, item in value.items()}
        return [_showable(item, levels - 1) for item in value]
    return str(value)  # bytes, msgpack ext types and timestamps: as printed by Python
