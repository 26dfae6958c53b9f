"""Next-fire tables for every schedule format, ``fires_between``, errors and the compile cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.errors import ScheduleSyntaxError, TaskbusError
from scheduler import (
    CronSchedule,
    DstPolicy,
    IntervalSchedule,
    OneShotSchedule,
    ScheduleError,
    clear_schedule_cache,
    compile_schedule,
)


def utc(text: str) -> datetime:
    """``"2024-01-01 03:00"`` or with seconds, as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (schedule, zone, after (UTC), the next fire (UTC)); "after" is exclusive.
NEXT_FIRE = [
    # 5-field cron
    ("0 3 * * *", "UTC", "2024-01-01 00:00", "2024-01-01 03:00"),
    ("0 3 * * *", "UTC", "2024-01-01 03:00", "2024-01-02 03:00"),  # strictly after
    ("0 3 * * *", "UTC", "2024-01-01 02:59:59.999999", "2024-01-01 03:00"),
    ("*/5 * * * *", "UTC", "2024-01-01 10:02:30", "2024-01-01 10:05"),
    ("5,35 */2 * * *", "UTC", "2024-01-01 00:36", "2024-01-01 02:05"),
    ("0 9 * * mon-fri", "UTC", "2024-01-05 10:00", "2024-01-08 09:00"),  # Friday -> Monday
    ("0 0 * * 7", "UTC", "2024-01-01 00:00", "2024-01-07 00:00"),  # 7 is Sunday too
    ("0 22-2 * * *", "UTC", "2024-01-01 02:30", "2024-01-01 22:00"),  # backwards range wraps
    ("0 22-2 * * *", "UTC", "2024-01-01 23:30", "2024-01-02 00:00"),
    ("0 0 13 * 5", "UTC", "2024-01-01 00:00", "2024-01-05 00:00"),  # day-of-month OR weekday
    ("0 0 29 2 *", "UTC", "2024-03-01 00:00", "2028-02-29 00:00"),
    ("0 0 L * *", "UTC", "2024-02-01 00:00", "2024-02-29 00:00"),
    ("0 0 * * 5#2", "UTC", "2024-01-01 00:00", "2024-01-12 00:00"),
    ("0 12 1 jan,jul *", "UTC", "2024-01-01 12:00", "2024-07-01 12:00"),
    # 6-field cron, seconds first
    ("30 0 3 * * *", "UTC", "2024-01-01 00:00", "2024-01-01 03:00:30"),
    ("*/20 * * * * *", "UTC", "2024-01-01 10:00:05", "2024-01-01 10:00:20"),
    ("*/20 * * * * *", "UTC", "2024-01-01 10:00:19.5", "2024-01-01 10:00:20"),
    ("*/20 * * * * *", "UTC", "2024-01-01 10:00:40", "2024-01-01 10:01:00"),
    ("0 */15 * * * *", "UTC", "2024-01-01 10:00", "2024-01-01 10:15"),
    ("15 30 2 * * *", "Europe/Berlin", "2024-01-01 00:00", "2024-01-01 01:30:15"),
    # aliases
    ("@yearly", "UTC", "2024-05-15 12:34", "2025-01-01 00:00"),
    ("@annually", "UTC", "2024-05-15 12:34", "2025-01-01 00:00"),
    ("@monthly", "UTC", "2024-05-15 12:34", "2024-06-01 00:00"),
    ("@weekly", "UTC", "2024-05-15 12:34", "2024-05-19 00:00"),  # Sunday
    ("@daily", "UTC", "2024-05-15 12:34", "2024-05-16 00:00"),
    ("@midnight", "UTC", "2024-05-15 12:34", "2024-05-16 00:00"),
    ("@hourly", "UTC", "2024-05-15 12:34", "2024-05-15 13:00"),
    # cron in a zone: wall times of the zone
    ("0 3 * * *", "Europe/Berlin", "2024-01-10 00:00", "2024-01-10 02:00"),  # CET
    ("0 3 * * *", "Europe/Berlin", "2024-07-10 00:00", "2024-07-10 01:00"),  # CEST
    ("0 3 * * *", "Asia/Kolkata", "2024-01-10 00:00", "2024-01-10 21:30"),  # +05:30
    ("@daily", "America/New_York", "2024-01-10 00:00", "2024-01-10 05:00"),
    ("@daily", "Australia/Sydney", "2024-01-10 00:00", "2024-01-10 13:00"),  # AEDT +11
    ("@monthly", "Pacific/Auckland", "2024-01-15 00:00", "2024-01-31 11:00"),  # NZDT +13
    # intervals: absolute time, phase from the Unix epoch
    ("interval:90", "UTC", "2024-01-01 00:00", "2024-01-01 00:01:30"),
    ("interval:7", "UTC", "1970-01-01 00:00:06", "1970-01-01 00:00:07"),
    ("every 30s", "UTC", "2024-01-01 10:00:10", "2024-01-01 10:00:30"),
    ("every 30s", "UTC", "2024-01-01 10:00:30", "2024-01-01 10:01:00"),
    ("every 5m", "UTC", "2024-01-01 10:02", "2024-01-01 10:05"),
    ("every 2h", "UTC", "2024-01-01 01:00", "2024-01-01 02:00"),
    ("every 1d", "UTC", "2024-01-01 05:00", "2024-01-02 00:00"),
    ("every 1d", "Europe/Berlin", "2024-01-01 05:00", "2024-01-02 00:00"),  # zone ignored
    # one-shot
    ("at:2025-01-15T10:00:00Z", "UTC", "2025-01-01 00:00", "2025-01-15 10:00"),
    ("at:2025-01-15T11:00:00+01:00", "UTC", "2025-01-01 00:00", "2025-01-15 10:00"),
    ("at:2025-01-15T11:00:00+01:00", "America/New_York", "2025-01-15 09:59:59", "2025-01-15 10:00"),
]


@pytest.mark.parametrize(("text", "zone", "after", "expected"), NEXT_FIRE)
def test_next_fire(text: str, zone: str, after: str, expected: str) -> None:
    fire = compile_schedule(text, zone).next_fire(utc(after))
    assert fire == utc(expected)
    assert fire is not None
    assert fire.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "after"),
    [
        ("at:2025-01-15T10:00:00Z", "2025-01-15 10:00"),  # at the instant: already past
        ("at:2025-01-15T10:00:00Z", "2026-01-01 00:00"),
        ("at:2025-01-15T11:00:00+01:00", "2025-01-15 10:00:00.000001"),
    ],
)
def test_a_past_one_shot_has_no_next_fire(text: str, after: str) -> None:
    assert compile_schedule(text).next_fire(utc(after)) is None


def test_after_may_be_in_any_offset() -> None:
    after = datetime(2024, 1, 1, 4, 0, tzinfo=timezone(timedelta(hours=2)))  # 02:00 UTC
    assert compile_schedule("0 3 * * *").next_fire(after) == utc("2024-01-01 03:00")


def test_the_kinds_compile_to_their_classes() -> None:
    cron = compile_schedule("@daily", "Europe/Berlin")
    assert isinstance(cron, CronSchedule)
    assert cron.zone == ZoneInfo("Europe/Berlin")
    assert isinstance(compile_schedule("every 5m"), IntervalSchedule)
    one_shot = compile_schedule("at:2025-01-15T11:00:00+01:00")
    assert isinstance(one_shot, OneShotSchedule)
    assert one_shot.at == utc("2025-01-15 10:00")
    assert cron.spec.text == "@daily"
    assert cron.spec.cron == "0 0 * * *"


def test_an_anchor_sets_the_phase_of_an_interval() -> None:
    anchor = utc("2024-01-01 00:00:07")
    every = compile_schedule("every 1m", anchor=anchor)
    assert every.next_fire(utc("2024-01-01 00:00:30")) == utc("2024-01-01 00:01:07")
    assert every.next_fire(anchor) == utc("2024-01-01 00:01:07")
    # Before the anchor too: the anchor is a phase, not a start.
    assert every.next_fire(utc("2023-12-31 23:59:30")) == utc("2024-01-01 00:00:07")
    later = datetime(2024, 1, 1, 1, 0, 7, tzinfo=timezone(timedelta(hours=1)))  # same instant
    assert compile_schedule("every 1m", anchor=later) is every


def test_fires_between_is_start_exclusive_end_inclusive_and_limited() -> None:
    hourly = compile_schedule("@hourly")
    start, end = utc("2024-01-01 00:00"), utc("2024-01-01 03:00")
    assert hourly.fires_between(start, end, 10) == [
        utc("2024-01-01 01:00"),
        utc("2024-01-01 02:00"),
        utc("2024-01-01 03:00"),
    ]
    assert hourly.fires_between(start, end, 2) == [utc("2024-01-01 01:00"), utc("2024-01-01 02:00")]
    assert hourly.fires_between(start, end, 0) == []
    assert hourly.fires_between(end, start, 10) == []
    far = datetime(9999, 12, 31, tzinfo=UTC)
    assert hourly.fires_between(start, far, 1) == [utc("2024-01-01 01:00")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 20m", ["2024-01-01 00:20", "2024-01-01 00:40", "2024-01-01 01:00"]),
        ("at:2024-01-01T00:30:00Z", ["2024-01-01 00:30"]),
        ("at:2024-01-01T00:00:00Z", []),
        ("at:2024-01-01T01:00:01Z", []),
        ("0 30 0 * * *", ["2024-01-01 00:30"]),
    ],
)
def test_fires_between_for_each_kind(text: str, expected: list[str]) -> None:
    fires = compile_schedule(text).fires_between(
        utc("2024-01-01 00:00"), utc("2024-01-01 01:00"), 9
    )
    assert fires == [utc(e) for e in expected]


def test_a_fire_far_in_the_future_ends_the_search_without_error() -> None:
    assert compile_schedule("every 1d").next_fire(datetime(9999, 12, 31, 12, tzinfo=UTC)) is None
    assert compile_schedule("@yearly").next_fire(datetime(9999, 6, 1, tzinfo=UTC)) is None
    new_york = compile_schedule("@daily", "America/New_York")  # its midnight is the next UTC day
    assert new_york.next_fire(datetime(9999, 12, 30, 6, tzinfo=UTC)) == datetime(
        9999, 12, 31, 5, tzinfo=UTC
    )
    assert new_york.next_fire(datetime(9999, 12, 31, 6, tzinfo=UTC)) is None


# ---------------------------------------------------------------------------------------------
# Errors: ScheduleError, a TaskbusError and a ValueError, saying what is wrong and where.


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 25 * * *", "schedule '0 25 * * *': hour '25' (field 2 of 5): out of range"),
        ("60 0 3 * * *", "second '60' (field 1 of 6): out of range; second takes 0-59"),
        ("0 3 * *", "cron has 5 fields, or 6 with seconds first; found 4"),
        ("0 3 * * * * *", "found 7"),
        ("@fortnightly", "@fortnightly is not one of @yearly"),
        ("every 5 minutes", "'every' takes a whole number and a unit s, m, h or d"),
        ("interval:-5", "interval takes a whole number of seconds, not '-5'"),
        ("at:2025-01-15T10:00:00", "has no UTC offset"),
        ("at:soon", "ISO 8601"),
        ("0 0 30 2 *", "never fires"),
        ("R 3 * * *", "minute 'R' (field 1 of 5): hashed (H) and random (R)"),
    ],
)
def test_bad_text_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        compile_schedule(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, TaskbusError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, ScheduleSyntaxError)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", "", "Europe"])
def test_an_unknown_zone_is_named(zone: str) -> None:
    with pytest.raises(ScheduleError, match=f"time zone {zone!r} is not known"):
        compile_schedule("@daily", zone)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: compile_schedule(5), "a schedule is a string, not int"),  # type: ignore[arg-type]
        (lambda: compile_schedule("@daily", None), "IANA name"),  # type: ignore[arg-type]
        (
            lambda: compile_schedule("@daily", dst_policy="skip"),  # type: ignore[arg-type]
            "dst_policy must be a DstPolicy",
        ),
        (lambda: compile_schedule("every 1m", anchor=datetime(2024, 1, 1)), "anchor must be"),
        (lambda: DstPolicy(gap="never"), "DST gap rule 'never'"),  # type: ignore[arg-type]
        (lambda: DstPolicy(fold="twice"), "DST fold rule 'twice'"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_say_which(call: Any, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        call()


@pytest.mark.parametrize("text", ["@daily", "every 5m", "at:2025-01-15T10:00:00Z"])
def test_naive_instants_are_refused(text: str) -> None:
    schedule = compile_schedule(text)
    with pytest.raises(ScheduleError, match="after must be an aware datetime"):
        schedule.next_fire(datetime(2024, 1, 1))
    with pytest.raises(ScheduleError, match="end must be an aware datetime"):
        schedule.fires_between(utc("2024-01-01 00:00"), datetime(2024, 1, 2), 5)
    with pytest.raises(ScheduleError, match="limit must be a whole number"):
        schedule.fires_between(utc("2024-01-01 00:00"), utc("2024-01-02 00:00"), -1)


# ---------------------------------------------------------------------------------------------
# The compiled-schedule cache.


def test_the_cache_returns_the_same_object() -> None:
    daily = compile_schedule("@daily")
    assert compile_schedule("@daily") is daily
    assert compile_schedule("@daily", "UTC") is daily
    assert compile_schedule("@daily", timezone="UTC", dst_policy=DstPolicy()) is daily
    assert compile_schedule("@daily", dst_policy=DstPolicy(gap="shift", fold="first")) is daily


def test_the_cache_keys_on_text_zone_policy_and_anchor() -> None:
    daily = compile_schedule("@daily")
    assert compile_schedule("0 0 * * *") is not daily  # the text is the key, not its meaning
    assert compile_schedule("@daily", "Europe/Berlin") is not daily
    assert compile_schedule("@daily", dst_policy=DstPolicy(fold="both")) is not daily
    every = compile_schedule("every 5m")
    assert compile_schedule("every 5m", anchor=utc("2024-01-01 00:00:01")) is not every
    assert compile_schedule("0 0 * * *").spec.cron == daily.spec.cron


def test_clearing_the_cache_compiles_afresh() -> None:
    daily = compile_schedule("@daily")
    clear_schedule_cache()
    again = compile_schedule("@daily")
    assert again is not daily
    assert again == daily


def test_errors_are_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(ScheduleError):
            compile_schedule("0 25 * * *")


def test_a_shared_schedule_keeps_no_position_between_calls() -> None:
    hourly = compile_schedule("@hourly")
    assert hourly.next_fire(utc("2024-06-01 10:30")) == utc("2024-06-01 11:00")
    assert hourly.next_fire(utc("2020-01-01 00:30")) == utc("2020-01-01 01:00")
    assert hourly.next_fire(utc("2024-06-01 10:30")) == utc("2024-06-01 11:00")
