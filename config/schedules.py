"""The syntax of a task's schedule, checked when settings are built.

A schedule is one of:

- a 5-field cron expression, ``minute hour day-of-month month day-of-week`` (``0 3 * * *``);
  each field is ``*``, a number, a range ``a-b``, either with an optional ``/step``, or a
  comma-separated list of those; months and weekdays also take ``jan``..``dec``, ``sun``..``sat``;
- an alias: ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
  ``@hourly``;
- ``interval:<seconds>``, a whole number of seconds from 1 to one year;
- ``at:<ISO 8601 date-time>``, once (``at:2025-01-15T10:00:00Z``).

Only the syntax is checked here; the scheduler computes the fire times.
"""

from __future__ import annotations

import re
from datetime import datetime

from config.errors import ConfigError

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MAX_INTERVAL_S = 366 * 24 * 3600
EXPECTED = (
    "a schedule: 5-field cron ('0 3 * * *'), @hourly/@daily/@weekly/@monthly/@yearly, "
    "'interval:<seconds>' or 'at:<ISO 8601 date-time>'"
)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, low, high, names whose index + offset is the value)
_Field = tuple[str, int, int, tuple[str, ...], int]
_FIELDS: tuple[_Field, ...] = (
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day of month", 1, 31, (), 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day of week", 0, 7, _DAYS, 0),
)
_ITEM = re.compile(r"(?P<base>\*|(?P<low>[a-z0-9]+)(-(?P<high>[a-z0-9]+))?)(/(?P<step>[0-9]+))?")
_MAX_LENGTH = 255


def check_schedule(key: str, value: object) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is a schedule in the syntax above."""
    if not isinstance(value, str):
        raise ConfigError(key, value, EXPECTED)
    problem = _problem(value)
    if problem:
        raise ConfigError(key, value, f"{EXPECTED}; {problem}")


def _problem(text: str) -> str | None:
    if len(text) > _MAX_LENGTH or not text.isprintable():
        return f"at most {_MAX_LENGTH} printable characters"
    if text.startswith("@"):
        return None if text in ALIASES else f"{text} is not one of {', '.join(ALIASES)}"
    if text.startswith("interval:"):
        seconds = text.removeprefix("interval:")
        if not seconds.isascii() or not seconds.isdigit():
            return "interval takes a whole number of seconds"
        if not 1 <= int(seconds) <= MAX_INTERVAL_S:
            return f"interval from 1 to {MAX_INTERVAL_S} seconds"
        return None
    if text.startswith("at:"):
        try:
            datetime.fromisoformat(text.removeprefix("at:"))
        except ValueError:
            return "at: takes an ISO 8601 date-time such as 2025-01-15T10:00:00Z"
        return None
    fields = text.split()
    if len(fields) != len(_FIELDS):
        return f"cron has {len(_FIELDS)} fields, found {len(fields)}"
    for field_text, spec in zip(fields, _FIELDS, strict=True):
        for item in field_text.lower().split(","):
            problem = _item_problem(item, spec)
            if problem:
                return problem
    return None


def _item_problem(item: str, spec: _Field) -> str | None:
    name, low, high, names, offset = spec
    match = _ITEM.fullmatch(item)
    if not match:
        return f"{name} {item!r} is not *, a value or a range, with an optional /step"
    bounds = [low, high]
    for i, part in enumerate((match["low"], match["high"])):
        if part is None:
            continue
        if part.isdigit():
            bounds[i] = int(part)
        elif part in names:
            bounds[i] = names.index(part) + offset
        else:
            return f"{name} {part!r} is not a number" + (f" or one of {names}" if names else "")
        if not low <= bounds[i] <= high:
            return f"{name} {part} is outside {low}-{high}"
    if match["high"] is None and match["low"] is not None:
        bounds[1] = bounds[0]
    if bounds[0] > bounds[1]:
        return f"{name} range {item!r} runs backwards"
    step = match["step"]
    if step is not None and not 1 <= int(step) <= high:
        return f"{name} step {step} is outside 1-{high}"
    return None
