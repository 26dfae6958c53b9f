"""Describe: a schedule's next fire times in its zone, with a note for every fire a DST gap or
fold decided, under each rule, in Europe/Berlin (a one-hour shift) and Australia/Lord_Howe (a
30-minute shift). The fire times are the schedule's own; every note names the rule applied. And
what a pause passed over: one range of the schedule's fires.

Transitions used (local):

    Europe/Berlin        2027-03-28 02:00 -> 03:00    2027-10-31 03:00 -> 02:00
    Australia/Lord_Howe  2026-10-04 02:00 -> 02:30    2027-04-04 02:00 -> 01:30
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler import DstPolicy, compile_schedule
from scheduler.describe import MAX_COUNT, NextFire, next_fires
from scheduler.misfire import MissedRange
from scheduler.pauses import passed_while_paused, pause_reason

BERLIN = "Europe/Berlin"
LORD_HOWE = "Australia/Lord_Howe"


def describe(
    schedule: str, zone: str, after: str, count: int = 4, **rules: str
) -> tuple[NextFire, ...]:
    compiled = compile_schedule(schedule, zone, dst_policy=DstPolicy(**rules))  # type: ignore[arg-type]
    return next_fires(compiled, ZoneInfo(zone), datetime.fromisoformat(after), count)


def rows(fires: tuple[NextFire, ...]) -> list[tuple[str | None, str, str | None]]:
    return [
        (None if f.at is None else f.at.isoformat(), f.local.isoformat(), f.note) for f in fires
    ]


def test_a_berlin_gap_shifted_says_when_it_fires() -> None:
    fires = describe("30 2 * * *", BERLIN, "2027-03-27T00:00:00+00:00", 3)
    assert rows(fires) == [
        ("2027-03-27T01:30:00+00:00", "2027-03-27T02:30:00+01:00", None),
        (
            "2027-03-28T01:00:00+00:00",
            "2027-03-28T03:00:00+02:00",
            "02:30 does not exist on 2027-03-28: fires at 03:00 (dst_gap shift)",
        ),
        ("2027-03-29T00:30:00+00:00", "2027-03-29T02:30:00+02:00", None),
    ]


def test_a_berlin_gap_skipped_lists_the_wall_time_not_fired() -> None:
    fires = describe("30 2 * * *", BERLIN, "2027-03-27T00:00:00+00:00", 2, gap="skip")
    assert rows(fires) == [
        ("2027-03-27T01:30:00+00:00", "2027-03-27T02:30:00+01:00", None),
        (
            None,
            "2027-03-28T02:30:00",
            "02:30 does not exist on 2027-03-28: not fired (dst_gap skip)",
        ),
        ("2027-03-29T00:30:00+00:00", "2027-03-29T02:30:00+02:00", None),
    ]


def test_several_wall_times_in_one_gap_fire_once() -> None:
    (first, *_) = describe("*/15 2 * * *", BERLIN, "2027-03-28T00:00:00+00:00", 2)
    assert first.at == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert first.note == (
        "02:00, 02:15, 02:30, 02:45 do not exist on 2027-03-28: fires once at 03:00 (dst_gap shift)"
    )


@pytest.mark.parametrize(
    ("fold", "expected"),
    [
        (
            "first",
            [("2027-10-31T00:30:00+00:00", "fires at the first (UTC+02:00) (dst_fold first)")],
        ),
        (
            "last",
            [("2027-10-31T01:30:00+00:00", "fires at the second (UTC+01:00) (dst_fold last)")],
        ),
        (
            "both",
            [
                (
                    "2027-10-31T00:30:00+00:00",
                    "fires at both: this is the first (UTC+02:00) (dst_fold both)",
                ),
                (
                    "2027-10-31T01:30:00+00:00",
                    "fires at both: this is the second (UTC+01:00) (dst_fold both)",
                ),
            ],
        ),
    ],
)
def test_a_berlin_fold_says_which_occurrence_fires(
    fold: str, expected: list[tuple[str, str]]
) -> None:
    fires = describe(
        "30 2 * * *", BERLIN, "2027-10-30T12:00:00+00:00", len(expected) + 1, fold=fold
    )
    marked = [(f.at.isoformat(), f.note) for f in fires if f.note is not None and f.at]
    assert marked == [(at, f"02:30 occurs twice on 2027-10-31: {note}") for at, note in expected]
    assert fires[-1].note is None  # the next day is an ordinary one
    assert fires[-1].local.isoformat() == "2027-11-01T02:30:00+01:00"


def test_lord_howe_gap_is_half_an_hour() -> None:
    fires = describe("15 2 * * *", LORD_HOWE, "2026-10-03T00:00:00+00:00", 2)
    assert rows(fires) == [
        (
            "2026-10-03T15:30:00+00:00",
            "2026-10-04T02:30:00+11:00",
            "02:15 does not exist on 2026-10-04: fires at 02:30 (dst_gap shift)",
        ),
        ("2026-10-04T15:15:00+00:00", "2026-10-05T02:15:00+11:00", None),
    ]
    # 02:45 is after the 30-minute gap: an ordinary time that day
    (ordinary,) = describe("45 2 * * *", LORD_HOWE, "2026-10-03T00:00:00+00:00", 1)
    assert (ordinary.local.isoformat(), ordinary.note) == ("2026-10-04T02:45:00+11:00", None)


def test_lord_howe_fold_is_half_an_hour() -> None:
    fires = describe("45 1 * * *", LORD_HOWE, "2027-04-03T12:00:00+00:00", 3, fold="both")
    assert rows(fires) == [
        (
            "2027-04-03T14:45:00+00:00",
            "2027-04-04T01:45:00+11:00",
            "01:45 occurs twice on 2027-04-04: fires at both: this is the first (UTC+11:00) "
            "(dst_fold both)",
        ),
        (
            "2027-04-03T15:15:00+00:00",
            "2027-04-04T01:45:00+10:30",
            "01:45 occurs twice on 2027-04-04: fires at both: this is the second (UTC+10:30) "
            "(dst_fold both)",
        ),
        ("2027-04-04T15:15:00+00:00", "2027-04-05T01:45:00+10:30", None),
    ]
    # 01:15 is before the fold (01:30-02:00 repeats): one fire, no note
    (ordinary,) = describe("15 1 * * *", LORD_HOWE, "2027-04-03T12:00:00+00:00", 1, fold="both")
    assert ordinary.note is None


def test_the_fires_are_the_schedules_own() -> None:
    """Every instant listed is the schedule's next fire, in order, for every rule."""
    for gap in ("shift", "skip"):
        for fold in ("first", "last", "both"):
            compiled = compile_schedule(
                "*/20 1-3 * * *",
                BERLIN,
                dst_policy=DstPolicy(gap=gap, fold=fold),  # type: ignore[arg-type]
            )
            after = datetime(2027, 3, 27, tzinfo=UTC)
            fires = next_fires(compiled, ZoneInfo(BERLIN), after, 30)
            instants = [f.at for f in fires if f.at is not None]
            assert instants == compiled.fires_between(after, datetime(2028, 1, 1, tzinfo=UTC), 30)


def test_an_interval_has_no_notes_and_count_is_checked() -> None:
    fires = describe("every 30m", BERLIN, "2027-03-28T00:30:00+00:00", 3)
    assert [f.note for f in fires] == [None, None, None]
    assert fires[1].local.isoformat() == "2027-03-28T03:30:00+02:00"  # absolute time: no gap
    for bad in (0, MAX_COUNT + 1, True):
        with pytest.raises(ValueError, match="count"):
            describe("every 30m", BERLIN, "2027-03-28T00:30:00+00:00", bad)


def test_a_one_shot_in_the_past_has_no_next_fire() -> None:
    assert describe("at:2027-01-01T00:00:00Z", BERLIN, "2027-03-28T00:00:00+00:00", 3) == ()


# ------------------------------------------------------------------ what a pause passed over


def test_the_fires_a_pause_passed_over_are_one_range() -> None:
    hourly = compile_schedule("0 * * * *")
    paused_from = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)  # its last fire
    passed = passed_while_paused(hourly, paused_from, datetime(2027, 1, 1, 14, 5, tzinfo=UTC), "x")
    assert passed == MissedRange(
        datetime(2027, 1, 1, 11, tzinfo=UTC), datetime(2027, 1, 1, 14, tzinfo=UTC), 4, "paused: x"
    )
    assert (
        passed_while_paused(hourly, paused_from, paused_from + timedelta(minutes=59), None) is None
    )
    assert pause_reason(None) == "paused"


def test_a_long_pause_is_counted_across_pages() -> None:
    every_second = compile_schedule("every 1s")
    start = datetime(2027, 1, 1, tzinfo=UTC)
    passed = passed_while_paused(every_second, start, start + timedelta(seconds=25_000), "n")
    assert passed is not None
    assert (passed.count, passed.first, passed.last) == (
        25_000,
        start + timedelta(seconds=1),
        start + timedelta(seconds=25_000),
    )
