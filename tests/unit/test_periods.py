"""UTC days, ISO weeks, calendar-month billing periods and strict RFC 3339 parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from usage_meter.domain.periods import (
    day_key,
    day_period,
    days_between,
    month_key,
    month_period,
    months_between,
    range_period,
    week_period,
)
from usage_meter.models.timestamps import format_instant, format_timestamp, parse_rfc3339


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# ---- parse_rfc3339 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", utc(2026, 11, 25, 10, 0, 0)),
        ("2026-11-25t10:00:00z", utc(2026, 11, 25, 10, 0, 0)),
        ("2026-11-25T10:00:00+00:00", utc(2026, 11, 25, 10, 0, 0)),
        ("2026-11-25T10:00:00-00:00", utc(2026, 11, 25, 10, 0, 0)),
        ("2026-11-25T10:00:00.5Z", utc(2026, 11, 25, 10, 0, 0, 500000)),
        ("2026-11-25T10:00:00.123Z", utc(2026, 11, 25, 10, 0, 0, 123000)),
        ("2026-11-25T10:00:00.123456Z", utc(2026, 11, 25, 10, 0, 0, 123456)),
        # beyond microseconds: truncated, never rounded up into the next second/day
        ("2026-11-25T23:59:59.999999999Z", utc(2026, 11, 25, 23, 59, 59, 999999)),
        # offsets are converted to UTC, which decides the day and the billing period
        ("2026-11-25T10:00:00+05:30", utc(2026, 11, 25, 4, 30, 0)),
        ("2026-11-25T23:30:00-08:00", utc(2026, 11, 26, 7, 30, 0)),
        ("2026-12-01T01:00:00+02:00", utc(2026, 11, 30, 23, 0, 0)),
        ("2026-12-31T20:00:00-05:00", utc(2027, 1, 1, 1, 0, 0)),
        ("2028-02-29T12:00:00Z", utc(2028, 2, 29, 12, 0, 0)),
    ],
)
def test_parse_rfc3339_accepts(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25",  # date only
        "2026-11-25T10:00:00",  # no offset
        "2026-11-25T10:00Z",  # no seconds
        "2026-11-25 10:00:00Z",  # space instead of T
        "2026-11-25T10:00:00+0530",  # offset without colon
        "2026-11-25T10:00:00+05",  # offset without minutes
        "2026-11-25T10:00:00.Z",  # empty fraction
        "2026-11-25T10:00:00.1234567890Z",  # more than nanoseconds
        "2026-W48-3T10:00:00Z",  # week date
        "2026-329T10:00:00Z",  # ordinal date
        "20261125T100000Z",  # basic format
        "+2026-11-25T10:00:00Z",
        "1795600000",
        "",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-11-31T00:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T10:60:00Z",
        "2026-11-25T10:00:60Z",  # leap seconds are not representable
        "2026-11-25T10:00:00+24:00",
        " 2026-11-25T10:00:00Z",
    ],
)
def test_parse_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every refusal is a ValueError (pydantic turns it into 422)
        parse_rfc3339(text)


def test_parse_rfc3339_refuses_a_trailing_newline() -> None:
    """ "$" in a Python pattern also matches before a final newline; the parser must not."""
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339("2026-11-25T10:00:00Z\n")


def test_parse_rfc3339_refuses_offset_minutes_over_59() -> None:
    """RFC 3339 time-numoffset minutes are 00-59; "+05:60" is not an offset of 6 hours."""
    with pytest.raises(ValueError):  # noqa: PT011
        parse_rfc3339("2026-11-25T10:00:00+05:60")


# ---- formatting and keys ------------------------------------------------------------------------


def test_format_timestamp_is_utc_milliseconds_with_z() -> None:
    moment = datetime(2026, 11, 25, 12, 30, 15, 123999, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-11-25T10:30:15.123Z"
    assert format_timestamp(utc(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"


def test_format_instant_is_whole_seconds_with_z() -> None:
    moment = datetime(2026, 12, 1, 1, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert format_instant(moment) == "2026-12-01T00:00:00Z"


def test_day_and_month_keys() -> None:
    assert day_key(utc(2026, 1, 5, 23, 59)) == "2026-01-05"
    assert day_key(date(2026, 12, 31)) == "2026-12-31"
    assert month_key(utc(2026, 1, 5)) == "2026-01"
    assert month_key(date(2026, 12, 31)) == "2026-12"


# ---- periods ----------------------------------------------------------------------------------


def test_month_period() -> None:
    period = month_period(utc(2026, 11, 25, 10, 0))
    assert (period.key, period.start, period.end) == ("2026-11", utc(2026, 11, 1), utc(2026, 12, 1))
    assert (period.first_day, period.last_day) == (date(2026, 11, 1), date(2026, 11, 30))


def test_month_period_of_december_ends_in_the_next_year() -> None:
    period = month_period(utc(2026, 12, 31, 23, 59, 59))
    assert (period.key, period.start, period.end) == ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1))
    assert period.last_day == date(2026, 12, 31)


@pytest.mark.parametrize(
    ("moment", "last_day"),
    [
        (date(2028, 2, 10), date(2028, 2, 29)),
        (date(2026, 2, 10), date(2026, 2, 28)),
        (date(2026, 1, 1), date(2026, 1, 31)),
    ],
)
def test_month_period_lengths(moment: date, last_day: date) -> None:
    period = month_period(moment)
    assert period.start == utc(moment.year, moment.month, 1)
    assert period.last_day == last_day


def test_month_period_starts_at_the_first_instant() -> None:
    assert month_period(utc(2026, 11, 1, 0, 0, 0)).key == "2026-11"
    assert month_period(utc(2026, 10, 31, 23, 59, 59, 999999)).key == "2026-10"


def test_day_period() -> None:
    period = day_period(utc(2026, 11, 30, 23, 59))
    assert (period.key, period.start, period.end) == ("2026-11-30", utc(2026, 11, 30), utc(2026, 12, 1))
    assert day_period(date(2026, 11, 30)) == period


@pytest.mark.parametrize(
    ("moment", "key", "monday"),
    [
        (date(2026, 11, 25), "2026-W48", date(2026, 11, 23)),  # a Wednesday
        (date(2026, 11, 23), "2026-W48", date(2026, 11, 23)),  # the Monday itself
        (date(2026, 11, 29), "2026-W48", date(2026, 11, 23)),  # the Sunday
        # 2026-01-01 is a Thursday: its ISO week 1 starts in December 2025
        (date(2026, 1, 1), "2026-W01", date(2025, 12, 29)),
        (date(2025, 12, 29), "2026-W01", date(2025, 12, 29)),
        # 2026 has 53 ISO weeks: 2027-01-01 (a Friday) is in 2026-W53
        (date(2027, 1, 1), "2026-W53", date(2026, 12, 28)),
        (date(2027, 1, 3), "2026-W53", date(2026, 12, 28)),
        (date(2027, 1, 4), "2027-W01", date(2027, 1, 4)),
    ],
)
def test_week_period_is_the_iso_week(moment: date, key: str, monday: date) -> None:
    period = week_period(moment)
    assert period.key == key
    assert period.first_day == monday
    assert period.end - period.start == timedelta(days=7)
    assert period.last_day == monday + timedelta(days=6)
    assert week_period(utc(moment.year, moment.month, moment.day, 23, 59)) == period


def test_range_period_is_half_open() -> None:
    period = range_period(date(2026, 11, 1), date(2026, 11, 30))
    assert period.key == "2026-11-01..2026-11-30"
    assert (period.start, period.end) == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert (period.first_day, period.last_day) == (date(2026, 11, 1), date(2026, 11, 30))


# ---- ranges -------------------------------------------------------------------------------------


def test_days_between_is_inclusive_and_oldest_first() -> None:
    assert days_between(date(2026, 12, 30), date(2027, 1, 2)) == [
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
        date(2027, 1, 2),
    ]


def test_days_between_edge_cases() -> None:
    assert days_between(date(2026, 11, 25), date(2026, 11, 25)) == [date(2026, 11, 25)]
    assert days_between(date(2026, 11, 26), date(2026, 11, 25)) == []
    assert len(days_between(date(2027, 1, 1), date(2027, 12, 31))) == 365
    assert len(days_between(date(2028, 1, 1), date(2028, 12, 31))) == 366
    assert days_between(date(2028, 2, 28), date(2028, 3, 1))[1] == date(2028, 2, 29)


def test_months_between_crosses_the_year() -> None:
    assert months_between(date(2026, 11, 15), date(2027, 2, 1)) == [
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
    ]


def test_months_between_edge_cases() -> None:
    assert months_between(date(2026, 11, 1), date(2026, 11, 30)) == ["2026-11"]
    assert months_between(date(2026, 11, 30), date(2026, 12, 1)) == ["2026-11", "2026-12"]
    assert months_between(date(2026, 12, 1), date(2026, 11, 30)) == []
    assert len(months_between(date(2025, 11, 25), date(2026, 11, 25))) == 13
