"""Cron means what Vixie/Debian cron means: a table per rule, and a differential test against
cronsim (an independent evaluator that documents and tests Debian cron's rules) over thousands
of seeded random expressions, start instants and zones. Instants in a DST gap or fold are
compared under taskbus's documented DST policy (``wall_instants``), not cronsim's: cronsim gives
the wall times, the policy maps them to instants. The differences that remain are documented
(``DIFFERENCES``) and each is pinned by a test of its own."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from config.errors import ScheduleSyntaxError
from config.schedules import parse_schedule_spec
from scheduler import Schedule, compile_schedule
from scheduler.dst import DEFAULT_DST_POLICY, wall_instants

START = datetime(2026, 8, 7, tzinfo=UTC)  # a Friday


def fires(expression: str, count: int = 4, after: datetime = START) -> list[str]:
    found = next_fires(compile_schedule(expression), after, count)
    assert len(found) == count, found
    return [f"{instant:%m-%d %a %H:%M}" for instant in found]


def next_fires(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The schedule's first ``count`` fires after ``after`` (fewer if it runs out)."""
    found: list[datetime] = []
    for _ in range(count):
        instant = schedule.next_fire(after)
        if instant is None:
            break
        found.append(instant)
        after = instant
    return found


# ---------------------------------------------------------------- one table per rule

RULES = [
    # 1. an equal range is its value, not the whole field
    ("0 9 * * 1-1", ["08-10 Mon 09:00", "08-17 Mon 09:00", "08-24 Mon 09:00", "08-31 Mon 09:00"]),
    (
        "0 9 * * MON-MON",
        ["08-10 Mon 09:00", "08-17 Mon 09:00", "08-24 Mon 09:00", "08-31 Mon 09:00"],
    ),
    ("0 9 * 2-2 *", ["02-01 Mon 09:00", "02-02 Tue 09:00", "02-03 Wed 09:00", "02-04 Thu 09:00"]),
    ("5-5 9 * * *", ["08-07 Fri 09:05", "08-08 Sat 09:05", "08-09 Sun 09:05", "08-10 Mon 09:05"]),
    # 2. a day field starting with * ANDs the day fields; two restricted ones OR
    ("0 0 */2 * 1", ["08-17 Mon 00:00", "08-31 Mon 00:00", "09-07 Mon 00:00", "09-21 Mon 00:00"]),
    ("0 0 1 * */2", ["09-01 Tue 00:00", "10-01 Thu 00:00", "11-01 Sun 00:00", "12-01 Tue 00:00"]),
    ("0 0 * * 1", ["08-10 Mon 00:00", "08-17 Mon 00:00", "08-24 Mon 00:00", "08-31 Mon 00:00"]),
    ("0 0 1,15 * 1", ["08-10 Mon 00:00", "08-15 Sat 00:00", "08-17 Mon 00:00", "08-24 Mon 00:00"]),
    ("0 0 13 * 5", ["08-13 Thu 00:00", "08-14 Fri 00:00", "08-21 Fri 00:00", "08-28 Fri 00:00"]),
    # 3. a step from a value runs to the field's end, in day-of-week too (5/2: Friday, Sunday)
    ("0 0 * * 5/2", ["08-09 Sun 00:00", "08-14 Fri 00:00", "08-16 Sun 00:00", "08-21 Fri 00:00"]),
    ("0 0 * * FRI/2", ["08-09 Sun 00:00", "08-14 Fri 00:00", "08-16 Sun 00:00", "08-21 Fri 00:00"]),
    ("50/5 9 7 8 *", ["08-07 Fri 09:50", "08-07 Fri 09:55"]),
    # 4. a full range is a restriction, not *: with a restricted day-of-month, every day
    (
        "0 0 3,*/10 * 0-6",
        ["08-08 Sat 00:00", "08-09 Sun 00:00", "08-10 Mon 00:00", "08-11 Tue 00:00"],
    ),
    ("0 0 1-31 * 1", ["08-08 Sat 00:00", "08-09 Sun 00:00", "08-10 Mon 00:00", "08-11 Tue 00:00"]),
    # 5. L, nL and n#k, alone, in lists and ORed with a day-of-month
    ("0 0 1 * MON#4", ["08-24 Mon 00:00", "09-01 Tue 00:00", "09-28 Mon 00:00", "10-01 Thu 00:00"]),
    ("0 0 * * 5L", ["08-28 Fri 00:00", "09-25 Fri 00:00", "10-30 Fri 00:00", "11-27 Fri 00:00"]),
    ("0 0 L * *", ["08-31 Mon 00:00", "09-30 Wed 00:00", "10-31 Sat 00:00", "11-30 Mon 00:00"]),
    ("0 0 * * 1,3#1", ["08-10 Mon 00:00", "08-17 Mon 00:00", "08-24 Mon 00:00", "08-31 Mon 00:00"]),
    (
        "0 0 * * 3#1,5#2",
        ["08-14 Fri 00:00", "09-02 Wed 00:00", "09-11 Fri 00:00", "10-07 Wed 00:00"],
    ),
]


@pytest.mark.parametrize(("expression", "expected"), RULES, ids=[e for e, _ in RULES])
def test_each_rule_fires_as_cron_does(expression: str, expected: list[str]) -> None:
    assert fires(expression, len(expected)) == expected
    assert _cronsim(expression, len(expected)) == expected  # and the independent evaluator agrees


def _cronsim(expression: str, count: int) -> list[str]:
    walls = CronSim(expression, START.replace(tzinfo=None))
    return [f"{next(walls):%m-%d %a %H:%M}" for _ in range(count)]


def test_a_day_of_month_that_never_comes_still_fires_on_its_ored_weekday() -> None:
    """``0 0 30 2 1``: no 30 February, but Mondays in February are ORed in."""
    assert fires("0 0 30 2 1", 2) == ["02-01 Mon 00:00", "02-08 Mon 00:00"]
    with pytest.raises(ScheduleSyntaxError, match="never fires"):
        parse_schedule_spec("0 0 30 2 *")


# ---------------------------------------------------------------- documented differences

# What taskbus reads differently from cronsim (and Debian cron), on purpose; each is pinned below
# and excluded from the random expressions.
DIFFERENCES = (
    "a descending range wraps around (FRI-MON is Friday to Monday; 22-2 is 22:00 to 02:00); "
    "cronsim refuses it",
    "'?' is '*' in the day fields (Quartz); cronsim refuses it",
    "'nW' (the weekday nearest day n) in day-of-month; cronsim refuses it",
    "'LW', 'L-n' and 'L/n' in day-of-month are refused; cronsim reads LW and L/n",
    "a stepped equal range a-a/n is the value a, as in Vixie cron; cronsim reads it as a/n",
    "an expression no date matches is refused at create ('never fires'); cronsim searches on",
)


def test_documented_differences() -> None:
    assert len(DIFFERENCES) == 6
    assert fires("0 9-9/2 7 8 *", 1) == ["08-07 Fri 09:00"]
    assert compile_schedule("0 9-9/2 7 8 *").next_fire(START.replace(hour=10)) == datetime(
        2027, 8, 7, 9, tzinfo=UTC
    )
    with pytest.raises(ScheduleSyntaxError, match="never fires"):
        parse_schedule_spec("0 0 */3 11 0#5")  # a fifth Sunday of November is the 29th or 30th
    assert fires("0 0 * * FRI-MON", 4) == [
        "08-08 Sat 00:00",
        "08-09 Sun 00:00",
        "08-10 Mon 00:00",
        "08-14 Fri 00:00",
    ]
    assert fires("0 22-2 7 8 *", 3) == ["08-07 Fri 01:00", "08-07 Fri 02:00", "08-07 Fri 22:00"]
    assert fires("0 0 ? * 1", 1) == ["08-10 Mon 00:00"]
    assert fires("0 0 15W * *", 2) == ["08-14 Fri 00:00", "09-15 Tue 00:00"]
    for refused in ("0 0 LW * *", "0 0 L-2 * *", "0 0 L/2 * *"):
        with pytest.raises(ScheduleSyntaxError, match=r"only 'L' .* is supported in day-of-month"):
            parse_schedule_spec(refused)
    for read in ("0 0 LW * *", "0 0 L/2 * *"):
        CronSim(read, START.replace(tzinfo=None))  # which cronsim reads (and refuses L-n)


def test_refusals_name_the_field() -> None:
    with pytest.raises(ScheduleSyntaxError, match=r"day-of-month '1#2' \(field 3 of 5\)"):
        parse_schedule_spec("0 0 1#2 * *")
    with pytest.raises(ScheduleSyntaxError, match=r"minute '\?' \(field 1 of 5\)"):
        parse_schedule_spec("? * * * *")


# ---------------------------------------------------------------- the differential test

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
EXPRESSIONS = 3_000
NEXT = 5
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _values(rng: random.Random, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    """One list item of a field taking ``low``..``high``: a value, a name, a range (ascending,
    sometimes equal), a step from * or a value, a stepped range."""

    def value(at_least: int = low) -> str:
        number = rng.randint(at_least, high)
        if names and rng.random() < 0.3 and number - (1 if names is _MONTHS else 0) < len(names):
            return names[number - (1 if names is _MONTHS else 0)]
        return str(number)

    def number_of(text: str) -> int:
        if text.isdigit():
            return int(text)
        return names.index(text) + (1 if names is _MONTHS else 0)

    kind = rng.random()
    if kind < 0.35:
        return value()
    if kind < 0.55:
        start = value()
        end = str(rng.randint(number_of(start), high)) if rng.random() < 0.8 else start
        return f"{start}-{end}"
    if kind < 0.7:
        return f"*/{rng.randint(1, high - low + 1)}"
    if kind < 0.85:
        return f"{value()}/{rng.randint(1, high - low + 1)}"
    start = rng.randint(low, high - 1)  # not a-a/n: DIFFERENCES
    return f"{start}-{rng.randint(start + 1, high)}/{rng.randint(1, high - low + 1)}"


def _field(
    rng: random.Random,
    low: int,
    high: int,
    star: float,
    *,
    extra: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
) -> str:
    if rng.random() < star:
        return rng.choice(("*", "*", "*/2", "*/3"))
    items = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if extra and rng.random() < 0.15:
            items.append(rng.choice(extra))
        else:
            items.append(_values(rng, low, high, names))
    return ",".join(items)


def random_expression(rng: random.Random) -> str:
    nth = tuple(f"{d}#{k}" for d in range(7) for k in range(1, 6))
    last_weekdays = tuple(f"{d}L" for d in range(7))
    dom = _field(rng, 1, 31, 0.5, extra=("L",))
    dow = _field(rng, 0, 7, 0.5, extra=nth + last_weekdays, names=_DAYS)
    if "L" in dow and "," in dow:  # cronsim reads nL only alone in its field
        dow = next(item for item in dow.split(",") if "L" in item)
    if "#" in dow and "L" in dow:
        dow = dow.split(",")[0]
    return " ".join(
        (
            _field(rng, 0, 59, 0.2),
            _field(rng, 0, 23, 0.3),
            dom,
            _field(rng, 1, 12, 0.6, names=_MONTHS),
            dow,
        )
    )


def expected_fires(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """cronsim's wall times, mapped to instants by taskbus's DST policy: the first ``count``
    after ``after``."""
    start = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)  # a fold's worth
    walls = CronSim(expression, start.replace(second=0, microsecond=0) - timedelta(minutes=1))
    found: list[datetime] = []
    for wall in walls:
        found.extend(i for i in wall_instants(wall, zone, DEFAULT_DST_POLICY) if i > after)
        found.sort()
        if len(found) >= count and wall - timedelta(hours=3) > _wall(found[count - 1], zone):
            return found[:count]
    return found[:count]


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def test_random_expressions_agree_with_cronsim() -> None:
    rng = random.Random(20261204)
    compared = 0
    disagreements = []
    refusals: list[tuple[str, str]] = []
    while compared < EXPRESSIONS:
        expression = random_expression(rng)
        try:
            CronSim(expression, START.replace(tzinfo=None))
        except CronSimError:
            continue  # not standard cron (the generator's odd corner): not compared
        try:
            parse_schedule_spec(expression)
        except ScheduleSyntaxError as error:
            refusals.append((expression, str(error)))  # DIFFERENCES: refused at create
            continue
        zone = rng.choice(ZONES)
        after = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(10 * 365 * 86_400)
        )
        ours = next_fires(compile_schedule(expression, zone), after, NEXT)
        theirs = expected_fires(expression, ZoneInfo(zone), after, NEXT)
        if ours != theirs:
            disagreements.append((expression, zone, after.isoformat(), ours, theirs))
        compared += 1
    assert disagreements == [], f"{len(disagreements)} of {compared}: {disagreements[:3]}"
    assert all("never fires" in reason for _, reason in refusals), refusals
    assert len(refusals) < EXPRESSIONS // 50, refusals
