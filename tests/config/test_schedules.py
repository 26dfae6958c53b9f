"""The one schedule grammar: what ``parse_schedule_spec`` makes of each form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from config.errors import ScheduleSyntaxError, TaskbusError
from config.schedules import ALIASES, ScheduleSpec, parse_schedule_spec

CRON = [
    ("0 3 * * *", "0 3 * * *", False),
    ("0  3 *  * *", "0 3 * * *", False),  # whitespace is normalised
    ("30 0 3 * * *", "30 0 3 * * *", True),  # seconds first, kept first
    ("*/10 * * * * *", "*/10 * * * * *", True),
    ("0 9 * * MON-FRI", "0 9 * * MON-FRI", False),
    ("0 22-2 * * *", "0 22-2 * * *", False),
]


@pytest.mark.parametrize(("text", "cron", "has_seconds"), CRON)
def test_cron_is_kept_normalised(text: str, cron: str, has_seconds: bool) -> None:
    spec = parse_schedule_spec(text)
    assert (spec.kind, spec.text, spec.cron) == ("cron", text, cron)
    assert spec.cron_has_seconds is has_seconds


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_expand_to_five_fields(alias: str) -> None:
    spec = parse_schedule_spec(alias)
    assert (spec.kind, spec.text, spec.cron) == ("cron", alias, ALIASES[alias])
    assert len(ALIASES[alias].split()) == 5


def test_alias_expansions() -> None:
    assert ALIASES == {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("interval:1", 1),
        ("interval:300", 300),
        ("interval:31622400", 31_622_400),
        ("every 30s", 30),
        ("every 5m", 300),
        ("every 2h", 7200),
        ("every 1d", 86_400),
        ("every 366d", 31_622_400),
    ],
)
def test_intervals_are_whole_seconds(text: str, seconds: int) -> None:
    assert parse_schedule_spec(text) == ScheduleSpec(kind="interval", text=text, interval_s=seconds)


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("at:2025-01-15T10:00:00Z", datetime(2025, 1, 15, 10, tzinfo=UTC)),
        (
            "at:2025-01-15T11:00:00+01:00",
            datetime(2025, 1, 15, 11, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("at:2025-01-15 10:00:00.5+00:00", datetime(2025, 1, 15, 10, 0, 0, 500_000, tzinfo=UTC)),
    ],
)
def test_at_keeps_its_offset(text: str, instant: datetime) -> None:
    spec = parse_schedule_spec(text)
    assert spec.kind == "at"
    assert spec.at == instant
    assert spec.at is not None
    assert spec.at.utcoffset() == instant.utcoffset()


@pytest.mark.parametrize("text", ["at:2025-01-15T10:00:00", "at:2025-01-15"])
def test_at_without_an_offset_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(ScheduleSyntaxError, match="has no UTC offset"):
        parse_schedule_spec(text)


def test_the_error_names_the_schedule_and_the_problem() -> None:
    with pytest.raises(ScheduleSyntaxError) as caught:
        parse_schedule_spec("0 25 * * *")
    assert isinstance(caught.value, TaskbusError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.text == "0 25 * * *"
    assert caught.value.problem == "hour '25' (field 2 of 5): out of range; hour takes 0-23"
    assert str(caught.value) == f"schedule '0 25 * * *': {caught.value.problem}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0 0 * * 5#6", "day-of-week '5#6' (field 5 of 5): is not acceptable. Invalid"),
        ("0 0 1,2, * *", "day-of-month '1,2,' (field 3 of 5): not a value, range"),
        ("-5 * * * *", "minute '-5' (field 1 of 5): negative numbers are not allowed"),
        ("0 0 31 4 *", "never fires: no date has day-of-month '31' in month '4'"),
        ("@DAILY", "@DAILY is not one of @yearly"),
        ("x" * 256, "at most 255 printable characters"),
    ],
)
def test_more_problems_say_what_and_where(text: str, problem: str) -> None:
    with pytest.raises(ScheduleSyntaxError) as caught:
        parse_schedule_spec(text)
    assert problem in caught.value.problem


def test_a_spec_sets_exactly_the_field_of_its_kind() -> None:
    with pytest.raises(ScheduleSyntaxError, match="sets exactly its own field"):
        ScheduleSpec(kind="cron", text="x", interval_s=5)
    with pytest.raises(ScheduleSyntaxError, match="sets exactly its own field"):
        ScheduleSpec(kind="interval", text="x")
