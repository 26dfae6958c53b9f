"""The one grammar of a task's schedule, used by config (to check settings) and by the scheduler.

A schedule is one of:

- a cron expression of 5 fields, ``minute hour day-of-month month day-of-week`` (``0 3 * * *``),
  or of 6 fields with the **seconds first**, ``second minute hour day-of-month month day-of-week``
  (``30 0 3 * * *`` is 03:00:30), the Quartz/Spring order. Fields as Vixie cron reads them
  (``*``, values, ranges, ``/step``, lists, ``jan``..``dec``, ``sun``..``sat``) and ``L``, ``nL``,
  ``nW``, ``n#k`` and ``?`` (docs/scheduling.md#cron-semantics); croniter's hashed ``H`` and random
  ``R`` values, which would not fire at reproducible instants, and a 7th (year) field are refused;
- an alias: ``@yearly`` = ``@annually``, ``@monthly``, ``@weekly``, ``@daily`` = ``@midnight``,
  ``@hourly``, expanded to the 5-field expression in ``ALIASES``;
- ``interval:<seconds>`` (whole seconds, 1 to 366 days) or the readable ``every <n><unit>`` with
  unit ``s``, ``m``, ``h`` or ``d`` (``every 30s``, ``every 5m``, ``every 2h``, ``every 1d``);
- ``at:<ISO 8601 date-time with a UTC offset>``, once (``at:2025-01-15T10:00:00Z``,
  ``at:2025-01-15T11:00:00+01:00``); a time without an offset is refused, not guessed.

Cron means what Vixie/Debian cron means (``config.cron`` rewrites what croniter reads differently
into croniter's terms), and is checked with croniter itself, not with a second grammar: an
expression croniter refuses is refused, and the message names the field croniter stumbled on. No
clock is read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from croniter import CroniterBadDateError, CroniterError, CroniterNotAlphaError, croniter

from config.cron import DAY_OF_MONTH, DAY_OF_WEEK, cron_terms, normalise_fields
from config.errors import ConfigError, ScheduleSyntaxError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_INTERVAL_S = 366 * 24 * 3600
MAX_LENGTH = 255
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
EXPECTED = (
    "a schedule: cron with 5 fields ('0 3 * * *') or 6 with seconds first ('30 0 3 * * *'), "
    "@hourly/@daily/@weekly/@monthly/@yearly, 'interval:<seconds>', 'every <n>s|m|h|d' "
    "or 'at:<ISO 8601 date-time with offset>'"
)

ScheduleKind = Literal["cron", "interval", "at"]

# (name, what it takes), in the order of a 6-field expression; 5-field drops the first.
_FIELDS = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 (0 and 7 are Sunday) or sun-sat"),
)
_HASHED = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.IGNORECASE | re.ASCII)
_EXPRESSION_PREFIX = re.compile(r"^\[[^\]]*\] ")  # croniter quotes the whole expression first
_EVERY = re.compile(r"every (?P<count>[0-9]+)(?P<unit>[smhd])", re.ASCII)
# Any date croniter can search from works: the check only asks whether some date matches at all.
_PROBE_START = datetime(2001, 1, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    """A schedule's text, parsed and normalised; exactly the field of its ``kind`` is set.

    ``cron`` is whitespace-normalised with aliases expanded: 5 fields, or 6 with the seconds
    first (pass ``second_at_beginning=True`` to croniter). ``cron_terms`` are the croniter
    expressions, each evaluated with ``day_or=False``, whose union of fires is the cron
    expression's under Vixie cron's rules (``config.cron``). ``at`` keeps the offset it was
    written with.
    """

    kind: ScheduleKind
    text: str
    cron: str | None = None
    cron_terms: tuple[str, ...] = ()
    interval_s: int | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        present = {
            "cron": self.cron is not None,
            "interval": self.interval_s is not None,
            "at": self.at is not None,
        }
        if [kind for kind, set_ in present.items() if set_] != [self.kind]:
            raise ScheduleSyntaxError(self.text, f"a {self.kind} spec sets exactly its own field")

    @property
    def cron_has_seconds(self) -> bool:
        return self.cron is not None and len(self.cron.split()) == 6


def parse_schedule_spec(text: str) -> ScheduleSpec:
    """Parse ``text`` in the grammar above; raise ScheduleSyntaxError saying what and where."""
    if not isinstance(text, str):
        raise ScheduleSyntaxError(repr(text), f"a schedule is a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH or not text.isprintable():
        raise ScheduleSyntaxError(text, f"a schedule is at most {MAX_LENGTH} printable characters")
    if text.startswith("@"):
        if text not in ALIASES:
            raise ScheduleSyntaxError(text, f"{text} is not one of {', '.join(ALIASES)}")
        cron = ALIASES[text]
        return ScheduleSpec(kind="cron", text=text, cron=cron, cron_terms=(cron,))
    if text.startswith("interval:"):
        return ScheduleSpec(kind="interval", text=text, interval_s=_interval_s(text))
    if text.startswith("every"):
        return ScheduleSpec(kind="interval", text=text, interval_s=_every_s(text))
    if text.startswith("at:"):
        return ScheduleSpec(kind="at", text=text, at=_at(text))
    cron, terms = _cron(text)
    return ScheduleSpec(kind="cron", text=text, cron=cron, cron_terms=terms)


def check_schedule(key: str, value: object) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is a schedule in the grammar above."""
    if not isinstance(value, str):
        raise ConfigError(key, value, EXPECTED)
    try:
        parse_schedule_spec(value)
    except ScheduleSyntaxError as error:
        raise ConfigError(key, value, f"{EXPECTED}; {error.problem}") from None


def _interval_s(text: str) -> int:
    seconds = text.removeprefix("interval:")
    if not seconds.isascii() or not seconds.isdigit():
        hint = " (or write 'every 5m')" if _EVERY.fullmatch(f"every {seconds}") else ""
        raise ScheduleSyntaxError(
            text, f"interval takes a whole number of seconds, not {seconds!r}{hint}"
        )
    return _bounded(text, int(seconds))


def _every_s(text: str) -> int:
    match = _EVERY.fullmatch(text)
    if match is None:
        raise ScheduleSyntaxError(
            text,
            "'every' takes a whole number and a unit s, m, h or d, as in 'every 30s', "
            "'every 5m', 'every 2h' or 'every 1d'",
        )
    return _bounded(text, int(match["count"]) * UNIT_S[match["unit"]])


def _bounded(text: str, seconds: int) -> int:
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise ScheduleSyntaxError(
            text, f"interval from 1 to {MAX_INTERVAL_S} seconds (366 days), not {seconds}"
        )
    return seconds


def _at(text: str) -> datetime:
    value = text.removeprefix("at:")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleSyntaxError(
            text, f"at: takes an ISO 8601 date-time such as 2025-01-15T10:00:00Z, not {value!r}"
        ) from None
    if instant.utcoffset() is None:
        raise ScheduleSyntaxError(
            text,
            f"at: {value!r} has no UTC offset, and a local time is not guessed; write a date, "
            "a time and an offset, such as 2025-01-15T10:00:00Z or 2025-01-15T11:00:00+01:00",
        )
    return instant


def _cron(text: str) -> tuple[str, tuple[str, ...]]:
    """The expression, whitespace-normalised, and its croniter terms (``config.cron``)."""
    written = text.split()
    if len(written) not in (5, 6):
        raise ScheduleSyntaxError(
            text, f"cron has 5 fields, or 6 with seconds first; found {len(written)}"
        )
    fields = normalise_fields(written)
    for index in range(len(fields)):
        # Letters (names, L, W, or croniter's H and R, which we refuse) get the field check up
        # front; plain numeric fields only when croniter refuses a term (below).
        if any(char.isalpha() for char in written[index]):
            problem = _field_problem(fields, index, written[index])
            if problem:
                raise ScheduleSyntaxError(text, problem)
    seconds = len(fields) == 6
    terms = cron_terms(fields)
    fires = False
    for term in terms:
        try:
            probe = croniter(term, _PROBE_START, second_at_beginning=seconds, day_or=False)
        except CroniterError as error:
            # Only now, to say which field is wrong: one croniter per field is costly.
            for index in range(len(fields)):
                problem = _field_problem(fields, index, written[index])
                if problem:
                    raise ScheduleSyntaxError(text, problem) from None
            raise ScheduleSyntaxError(
                text, f"cron expression refused by croniter: {error}"
            ) from None
        try:
            probe.get_next(datetime)
            fires = True
        except CroniterBadDateError:
            pass
    if not fires:
        day, month = written[-3], written[-2]
        raise ScheduleSyntaxError(
            text, f"never fires: no date has day-of-month {day!r} in month {month!r}"
        )
    return " ".join(written), terms


def _field_problem(fields: list[str], index: int, written: str) -> str | None:
    """What is wrong with one (normalised) field, checked by croniter with every other field
    ``*``; the message quotes the field as ``written``."""
    names = _FIELDS if len(fields) == 6 else _FIELDS[1:]
    name, takes = names[index]
    token = fields[index]
    where = f"{name} {written!r} (field {index + 1} of {len(fields)})"
    if any(_HASHED.fullmatch(item) for item in token.split(",")):
        return f"{where}: hashed (H) and random (R) values are not supported"
    position = index + 6 - len(fields)
    if position == DAY_OF_MONTH and any("l" in item and item != "l" for item in token.split(",")):
        return (
            f"{where}: of the 'L' forms only 'L' (the last day of the month) is supported in "
            "day-of-month, not 'LW', 'L-n' or 'L/n'"
        )
    if position != DAY_OF_WEEK and "#" in token:
        return f"{where}: 'n#k' (the k-th weekday n of the month) only goes in day-of-week"
    for term in cron_terms(["*"] * index + [token] + ["*"] * (len(fields) - index - 1)):
        try:
            croniter.expand(term, second_at_beginning=len(fields) == 6)
        except CroniterError as error:
            return f"{where}: {_reason(error)}; {name} takes {takes}"
    return None


def _reason(error: CroniterError) -> str:
    message = str(error)
    if isinstance(error, CroniterNotAlphaError):
        return "not a value, range, list, step or name"
    if "out of range" in message or "out of bands" in message:
        return "out of range"
    if "negative" in message:
        return "negative numbers are not allowed"
    if "step" in message:
        return "a step is 1 or more"
    if "Question mark" in message:
        return "'?' only stands for day-of-month or day-of-week"
    return _EXPRESSION_PREFIX.sub("", message)
