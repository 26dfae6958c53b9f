"""Cron as Vixie/Debian cron reads it, in croniter's terms.

croniter does the calendar arithmetic, but reads a few things differently from cron
(docs/scheduling.md#cron-semantics). This module rewrites a cron expression into one or more
croniter expressions ("terms"), each evaluated with ``day_or=False``; the expression fires at the
union of its terms' fires:

- **The day rule.** If day-of-month or day-of-week starts with ``*``, a day must match both
  fields; otherwise (both restricted) it must match either. An OR is two terms, one per field,
  the other field ``*``. croniter ORs whenever neither field is exactly ``*``, so ``*/2`` with a
  weekday would OR there, and a full range such as ``0-6`` would be taken for ``*``.
- **Equal ranges** ``a-a`` (and ``a-a/n``) are the value ``a``; croniter takes them for ``*``.
- **A step from a value** ``a/n`` is ``a-<field maximum>/n`` in every field; croniter ignores
  the step in day-of-week.
- ``?`` is ``*`` in the day fields (croniter refuses it elsewhere); ``nL`` in day-of-week
  (the last weekday ``n`` of the month) is croniter's ``Ln``; a day-of-week list with ``n#k``
  items is one term per ``#`` item plus one for the rest, which croniter refuses in one field.

No clock is read here and nothing is evaluated: the terms are checked by ``config.schedules``
and run by ``scheduler.cron``.
"""

from __future__ import annotations

import re

# Field maxima, and the names each field takes, in a 6-field expression's order.
_MAXIMA = (59, 59, 23, 31, 12, 7)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {},
    {name: number for number, name in enumerate(_MONTHS, start=1)},
    {name: number for number, name in enumerate(_DAYS)},
)
_ITEM = re.compile(r"(?P<start>[^-/]+)(?:-(?P<end>[^-/]+))?(?:/(?P<step>[0-9]+))?", re.ASCII)
_LAST_WEEKDAY = re.compile(r"(?P<day>[0-7]|sun|mon|tue|wed|thu|fri|sat)l", re.ASCII)
DAY_OF_MONTH, DAY_OF_WEEK = 3, 5  # in a 6-field expression
# The rules above; 1 was croniter's own reading (day_or=True, no rewriting), which schedules
# stored before taskbus followed Vixie cron were written under.
CRON_RULES = 2


def normalise_fields(fields: list[str]) -> list[str]:
    """Each field of a 5- or 6-field expression rewritten item by item (module docstring); an
    item that does not read as one of the forms above is left for croniter to refuse."""
    offset = 6 - len(fields)
    return [_field(text.lower(), index + offset) for index, text in enumerate(fields)]


def cron_terms(fields: list[str]) -> tuple[str, ...]:
    """The croniter expressions (``day_or=False``) whose union of fires is the expression's:
    ``fields`` as ``normalise_fields`` returns them."""
    offset = 6 - len(fields)
    dom_at, dow_at = DAY_OF_MONTH - offset, DAY_OF_WEEK - offset
    dom, dow = fields[dom_at], fields[dow_at]
    items = dow.split(",")
    nth = [item for item in items if "#" in item]
    rest = ",".join(item for item in items if "#" not in item)
    weekdays = ([rest] if rest else []) + nth

    def term(day_of_month: str, day_of_week: str) -> str:
        chosen = list(fields)
        chosen[dom_at], chosen[dow_at] = day_of_month, day_of_week
        return " ".join(chosen)

    if dom.startswith("*") or dow.startswith("*"):
        terms = [term(dom, weekday) for weekday in weekdays]
    else:
        terms = [term(dom, "*"), *(term("*", weekday) for weekday in weekdays)]
    return tuple(dict.fromkeys(terms))


def _field(text: str, index: int) -> str:
    return ",".join(_item(item, index) for item in text.split(","))


def _item(item: str, index: int) -> str:
    if item == "?" and index in (DAY_OF_MONTH, DAY_OF_WEEK):
        return "*"
    if index == DAY_OF_WEEK and (last := _LAST_WEEKDAY.fullmatch(item)):
        return f"l{last['day']}"
    match = _ITEM.fullmatch(item)
    if match is None or match["start"] == "*":
        return item
    start, end, step = match["start"], match["end"], match["step"]
    first = _value(start, index)
    if first is None:
        return item
    if end is None and step is not None:  # (a range a-a would be read as the whole field)
        return start if first == _MAXIMA[index] else f"{first}-{_MAXIMA[index]}/{step}"
    if end is not None and _value(end, index) == first:
        return start
    return item


def _value(text: str, index: int) -> int | None:
    if text.isdecimal() and text.isascii():
        return int(text)
    return _NAMES[index].get(text)
