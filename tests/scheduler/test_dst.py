"""DST: what a cron schedule does on transition days, under each policy, in three hemispheres'
zones, checked against exact UTC instants and against a brute-force minute-by-minute oracle.

Transitions of 2024 used below (UTC):

    Europe/Berlin      spring 03-31 01:00 (02:00 -> 03:00)   fall 10-27 01:00 (03:00 -> 02:00)
    America/New_York   spring 03-10 07:00 (02:00 -> 03:00)   fall 11-03 06:00 (02:00 -> 01:00)
    Australia/Sydney   spring 10-05 16:00 (02:00 -> 03:00)   fall 04-06 16:00 (03:00 -> 02:00)
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from scheduler import DstPolicy, compile_schedule
from scheduler.dst import FOLD_RULES, GAP_RULES, wall_instants

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
POLICIES = [DstPolicy(gap=gap, fold=fold) for gap in GAP_RULES for fold in FOLD_RULES]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(f"2024-{text}").replace(tzinfo=UTC)


@functools.cache
def transitions(zone: ZoneInfo, year: int) -> tuple[datetime, ...]:
    """Every instant of ``year`` at which ``zone``'s offset changes, to the minute."""
    found = []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    while hour.year == year:
        nxt = hour + timedelta(hours=1)
        if hour.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            instant = hour
            while instant.astimezone(zone).utcoffset() == hour.astimezone(zone).utcoffset():
                instant += MINUTE
            found.append(instant)
        hour = nxt
    return tuple(found)


TRANSITIONS = {
    "Europe/Berlin": ("03-31 01:00", "10-27 01:00"),
    "America/New_York": ("03-10 07:00", "11-03 06:00"),
    "Australia/Sydney": ("04-06 16:00", "10-05 16:00"),
}


@pytest.mark.parametrize(("zone", "expected"), TRANSITIONS.items())
def test_the_transitions_these_tests_rely_on(zone: str, expected: tuple[str, str]) -> None:
    assert transitions(ZoneInfo(zone), 2024) == tuple(utc(t) for t in expected)


def fires(text: str, zone: str, policy: DstPolicy, around: str) -> list[datetime]:
    """The fires within 36 hours either side of a transition: three days' worth."""
    middle = utc(around)
    schedule = compile_schedule(text, zone, dst_policy=policy)
    return schedule.fires_between(middle - 1.5 * DAY, middle + 1.5 * DAY, 1000)


# (zone, transition, schedule, policy, the fires over the three days around it, UTC)
DAILY = [
    # Spring forward: 02:30 does not exist on the middle day.
    ("Europe/Berlin", "03-31 01:00", "30 2 * * *", DstPolicy(gap="shift"),
     ["03-30 01:30", "03-31 01:00", "04-01 00:30"]),
    ("Europe/Berlin", "03-31 01:00", "30 2 * * *", DstPolicy(gap="skip"),
     ["03-30 01:30", "04-01 00:30"]),
    ("America/New_York", "03-10 07:00", "30 2 * * *", DstPolicy(gap="shift"),
     ["03-09 07:30", "03-10 07:00", "03-11 06:30"]),
    ("America/New_York", "03-10 07:00", "30 2 * * *", DstPolicy(gap="skip"),
     ["03-09 07:30", "03-11 06:30"]),
    ("Australia/Sydney", "10-05 16:00", "30 2 * * *", DstPolicy(gap="shift"),
     ["10-04 16:30", "10-05 16:00", "10-06 15:30"]),
    ("Australia/Sydney", "10-05 16:00", "30 2 * * *", DstPolicy(gap="skip"),
     ["10-04 16:30", "10-06 15:30"]),
    # Fall back: 02:30 (Berlin, Sydney) and 01:30 (New York) happen twice on the middle day.
    ("Europe/Berlin", "10-27 01:00", "30 2 * * *", DstPolicy(fold="first"),
     ["10-26 00:30", "10-27 00:30", "10-28 01:30"]),
    ("Europe/Berlin", "10-27 01:00", "30 2 * * *", DstPolicy(fold="last"),
     ["10-26 00:30", "10-27 01:30", "10-28 01:30"]),
    ("Europe/Berlin", "10-27 01:00", "30 2 * * *", DstPolicy(fold="both"),
     ["10-26 00:30", "10-27 00:30", "10-27 01:30", "10-28 01:30"]),
    ("America/New_York", "11-03 06:00", "30 1 * * *", DstPolicy(fold="first"),
     ["11-02 05:30", "11-03 05:30", "11-04 06:30"]),
    ("America/New_York", "11-03 06:00", "30 1 * * *", DstPolicy(fold="last"),
     ["11-02 05:30", "11-03 06:30", "11-04 06:30"]),
    ("America/New_York", "11-03 06:00", "30 1 * * *", DstPolicy(fold="both"),
     ["11-02 05:30", "11-03 05:30", "11-03 06:30", "11-04 06:30"]),
    ("Australia/Sydney", "04-06 16:00", "30 2 * * *", DstPolicy(fold="first"),
     ["04-05 15:30", "04-06 15:30", "04-07 16:30"]),
    ("Australia/Sydney", "04-06 16:00", "30 2 * * *", DstPolicy(fold="last"),
     ["04-05 15:30", "04-06 16:30", "04-07 16:30"]),
    ("Australia/Sydney", "04-06 16:00", "30 2 * * *", DstPolicy(fold="both"),
     ["04-05 15:30", "04-06 15:30", "04-06 16:30", "04-07 16:30"]),
    # New York's repeated hour is 01:00-02:00: a 02:30 job is not in it, whatever the policy.
    *[
        ("America/New_York", "11-03 06:00", "30 2 * * *", DstPolicy(fold=fold),
         ["11-02 06:30", "11-03 07:30", "11-04 07:30"])
        for fold in FOLD_RULES
    ],
]  # fmt: skip


@pytest.mark.parametrize(("zone", "around", "text", "policy", "expected"), DAILY)
def test_a_daily_job_on_transition_days(
    zone: str, around: str, text: str, policy: DstPolicy, expected: list[str]
) -> None:
    assert fires(text, zone, policy, around) == [utc(e) for e in expected]


def test_the_defaults_fire_a_daily_job_once_a_day_in_every_zone() -> None:
    for zone, (first, second) in TRANSITIONS.items():
        for around in (first, second):
            for text in ("30 2 * * *", "30 1 * * *", "0 2 * * *", "59 2 * * *"):
                found = fires(text, zone, DstPolicy(), around)
                days = [f.astimezone(ZoneInfo(zone)).date() for f in found]
                assert len(days) == len(set(days)) == 3, (zone, around, text, found)


# (zone, transition, schedule, policy, fires in the 3 days, the fires from 2 h before to 3 h after)
HOURLY = [
    ("Europe/Berlin", "03-31 01:00", "0 * * * *", DstPolicy(gap="shift"), 72,
     ["03-30 23:00", "03-31 00:00", "03-31 01:00", "03-31 02:00", "03-31 03:00", "03-31 04:00"]),
    ("Europe/Berlin", "03-31 01:00", "0 * * * *", DstPolicy(gap="skip"), 72,
     ["03-30 23:00", "03-31 00:00", "03-31 01:00", "03-31 02:00", "03-31 03:00", "03-31 04:00"]),
    # At :30 the gap matters: 02:30 shifts to 03:00, half an hour before 03:30.
    ("Europe/Berlin", "03-31 01:00", "30 * * * *", DstPolicy(gap="shift"), 73,
     ["03-30 23:30", "03-31 00:30", "03-31 01:00", "03-31 01:30", "03-31 02:30", "03-31 03:30"]),
    ("Europe/Berlin", "03-31 01:00", "30 * * * *", DstPolicy(gap="skip"), 72,
     ["03-30 23:30", "03-31 00:30", "03-31 01:30", "03-31 02:30", "03-31 03:30"]),
    ("Europe/Berlin", "10-27 01:00", "0 * * * *", DstPolicy(fold="first"), 71,
     ["10-26 23:00", "10-27 00:00", "10-27 02:00", "10-27 03:00", "10-27 04:00"]),
    ("Europe/Berlin", "10-27 01:00", "0 * * * *", DstPolicy(fold="last"), 71,
     ["10-26 23:00", "10-27 01:00", "10-27 02:00", "10-27 03:00", "10-27 04:00"]),
    ("Europe/Berlin", "10-27 01:00", "0 * * * *", DstPolicy(fold="both"), 72,
     ["10-26 23:00", "10-27 00:00", "10-27 01:00", "10-27 02:00", "10-27 03:00", "10-27 04:00"]),
    ("America/New_York", "03-10 07:00", "0 * * * *", DstPolicy(), 72,
     ["03-10 05:00", "03-10 06:00", "03-10 07:00", "03-10 08:00", "03-10 09:00", "03-10 10:00"]),
    ("America/New_York", "11-03 06:00", "0 * * * *", DstPolicy(fold="first"), 71,
     ["11-03 04:00", "11-03 05:00", "11-03 07:00", "11-03 08:00", "11-03 09:00"]),
    ("America/New_York", "11-03 06:00", "0 * * * *", DstPolicy(fold="last"), 71,
     ["11-03 04:00", "11-03 06:00", "11-03 07:00", "11-03 08:00", "11-03 09:00"]),
    ("America/New_York", "11-03 06:00", "0 * * * *", DstPolicy(fold="both"), 72,
     ["11-03 04:00", "11-03 05:00", "11-03 06:00", "11-03 07:00", "11-03 08:00", "11-03 09:00"]),
    ("Australia/Sydney", "10-05 16:00", "0 * * * *", DstPolicy(gap="shift"), 72,
     ["10-05 14:00", "10-05 15:00", "10-05 16:00", "10-05 17:00", "10-05 18:00", "10-05 19:00"]),
    ("Australia/Sydney", "10-05 16:00", "30 * * * *", DstPolicy(gap="shift"), 73,
     ["10-05 14:30", "10-05 15:30", "10-05 16:00", "10-05 16:30", "10-05 17:30", "10-05 18:30"]),
    ("Australia/Sydney", "10-05 16:00", "30 * * * *", DstPolicy(gap="skip"), 72,
     ["10-05 14:30", "10-05 15:30", "10-05 16:30", "10-05 17:30", "10-05 18:30"]),
    ("Australia/Sydney", "04-06 16:00", "0 * * * *", DstPolicy(fold="first"), 71,
     ["04-06 14:00", "04-06 15:00", "04-06 17:00", "04-06 18:00", "04-06 19:00"]),
    ("Australia/Sydney", "04-06 16:00", "0 * * * *", DstPolicy(fold="last"), 71,
     ["04-06 14:00", "04-06 16:00", "04-06 17:00", "04-06 18:00", "04-06 19:00"]),
    ("Australia/Sydney", "04-06 16:00", "0 * * * *", DstPolicy(fold="both"), 72,
     ["04-06 14:00", "04-06 15:00", "04-06 16:00", "04-06 17:00", "04-06 18:00", "04-06 19:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "around", "text", "policy", "count", "near"), HOURLY)
def test_an_hourly_job_on_transition_days(
    zone: str, around: str, text: str, policy: DstPolicy, *, count: int, near: list[str]
) -> None:
    found = fires(text, zone, policy, around)
    assert len(found) == count
    middle = utc(around)
    window = [
        f for f in found if middle - 2 * timedelta(hours=1) <= f <= middle + 3 * timedelta(hours=1)
    ]
    assert window == [utc(n) for n in near]
    assert len(set(found)) == len(found)


@pytest.mark.parametrize("around", ["03-31 01:00", "10-27 01:00"])
def test_intervals_run_in_absolute_time_across_transitions(around: str) -> None:
    for text, step in (("every 1h", 3600), ("every 15m", 900), ("interval:5400", 5400)):
        found = fires(text, "Europe/Berlin", DstPolicy(), around)
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(found)}
        assert gaps == {step}
        assert len(found) == 3 * 86_400 // step
    daily = fires("every 1d", "Europe/Berlin", DstPolicy(), around)
    assert [f.time() for f in daily] == [datetime.min.time()] * 3  # 00:00 UTC, not local


# ---------------------------------------------------------------------------------------------
# A brute-force oracle: walk every UTC minute, read the local wall clock, and apply the rules by
# counting: a wall time seen twice is in a fold, wall times jumped over are in a gap.


@functools.cache
def readings(
    zone_name: str, start: datetime, end: datetime
) -> tuple[tuple[datetime, datetime], ...]:
    """(instant, local wall time) of every UTC minute from a day before ``start`` to a day after
    ``end``, so that a fold straddling either end is seen whole."""
    zone = ZoneInfo(zone_name)
    found = []
    instant = start - DAY
    while instant <= end + DAY:
        found.append((instant, instant.astimezone(zone).replace(tzinfo=None)))
        instant += MINUTE
    return tuple(found)


# Under each fold rule, which occurrence of a repeated wall time fires.
FOLD_WANTS = {1: ("first", "both"), 2: ("last", "both")}


def oracle(text: str, zone_name: str, policy: DstPolicy, start: datetime, end: datetime) -> list:
    """Fires in ``(start, end]`` of a ``<minutes> <hours> * * *`` expression, by brute force."""
    expanded = croniter.expand(text)[0]
    minutes = set(range(60)) if expanded[0] == ["*"] else set(expanded[0])
    hours = set(range(24)) if expanded[1] == ["*"] else set(expanded[1])

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    walls = readings(zone_name, start, end)
    seen = Counter(wall for _, wall in walls)
    occurrence: Counter[datetime] = Counter()
    found = set()
    for index, (instant, wall) in enumerate(walls):
        occurrence[wall] += 1
        if matches(wall) and (seen[wall] == 1 or policy.fold in FOLD_WANTS[occurrence[wall]]):
            found.add(instant)
        if index and policy.gap == "shift":
            skipped = walls[index - 1][1] + MINUTE
            while skipped < wall:
                if matches(skipped):
                    found.add(instant)  # the first instant after the gap
                skipped += MINUTE
    return sorted(f for f in found if start < f <= end)


ORACLE_ZONES = [*TRANSITIONS, "Australia/Lord_Howe", "America/Santiago", "America/Havana"]
ORACLE_EXPRESSIONS = ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "59 0-3 * * *"]


@pytest.mark.parametrize("zone_name", ORACLE_ZONES)
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: f"{p.gap}-{p.fold}")
def test_fires_match_the_brute_force_oracle(zone_name: str, policy: DstPolicy) -> None:
    zone = ZoneInfo(zone_name)
    moments = transitions(zone, 2024)
    assert len(moments) == 2, moments  # one gap and one fold each
    for moment in moments:
        start, end = moment - DAY, moment + DAY
        for text in ORACLE_EXPRESSIONS:
            schedule = compile_schedule(text, zone_name, dst_policy=policy)
            expected = oracle(text, zone_name, policy, start, end)
            assert schedule.fires_between(start, end, 1000) == expected, (text, moment)
            # next_fire from anywhere near the transition, inside a fold too
            after = moment - timedelta(hours=3)
            while after < moment + timedelta(hours=3):
                want = next((f for f in expected if f > after), None)
                got = schedule.next_fire(after)
                assert got == want or (want is None and got is not None and got > end), (
                    text,
                    after,
                )
                after += timedelta(minutes=13)


def test_wall_instants_names_each_case() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    ordinary, gap, fold = (
        datetime(2024, 3, 30, 2, 30),
        datetime(2024, 3, 31, 2, 30),
        datetime(2024, 10, 27, 2, 30),
    )
    assert wall_instants(ordinary, berlin, DstPolicy()) == (utc("03-30 01:30"),)
    assert wall_instants(gap, berlin, DstPolicy(gap="shift")) == (utc("03-31 01:00"),)
    assert wall_instants(gap, berlin, DstPolicy(gap="skip")) == ()
    assert wall_instants(fold, berlin, DstPolicy(fold="first")) == (utc("10-27 00:30"),)
    assert wall_instants(fold, berlin, DstPolicy(fold="last")) == (utc("10-27 01:30"),)
    both = (utc("10-27 00:30"), utc("10-27 01:30"))
    assert wall_instants(fold, berlin, DstPolicy(fold="both")) == both
