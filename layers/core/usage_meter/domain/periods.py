"""UTC days, ISO weeks and calendar-month billing periods, and RFC 3339 parsing/formatting."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)


class Period(BaseModel):
    """A half-open time range [start, end) with a display key ("2026-11", "2026-W48", ...)."""

    model_config = ConfigDict(frozen=True)

    key: str
    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        """Last UTC day inside the period (end is exclusive)."""
        return (self.end - timedelta(days=1)).date()


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into an aware UTC datetime.

    Stricter than datetime.fromisoformat: no dates without times, no missing offsets, no
    week dates, so that "when" an event happened is never guessed.
    """
    match = _RFC3339.fullmatch(text)  # not match(): "$" would accept a trailing newline
    if not match:
        raise ValueError("timestamp must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
    fraction = (match.group(7) or "")[:7]  # at most microseconds, truncated not rounded
    offset = match.group(8).upper()
    normalized = f"{text[:19]}{fraction}{'+00:00' if offset == 'Z' else offset}"
    parsed = datetime.fromisoformat(normalized.replace("t", "T"))
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, trailing Z: the one timestamp format the API answers with."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_instant(moment: datetime) -> str:
    """Period bounds: whole seconds, trailing Z (2026-11-01T00:00:00Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_key(moment: datetime | date) -> str:
    return moment.strftime("%Y-%m-%d")


def month_key(moment: datetime | date) -> str:
    return moment.strftime("%Y-%m")


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_period(moment: datetime | date) -> Period:
    """The calendar month (UTC) containing `moment`: the billing period."""
    start = date(moment.year, moment.month, 1)
    end = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
    return Period(key=month_key(start), start=_midnight(start), end=_midnight(end))


def day_period(moment: datetime | date) -> Period:
    day = moment.date() if isinstance(moment, datetime) else moment
    return Period(key=day_key(day), start=_midnight(day), end=_midnight(day + timedelta(days=1)))


def week_period(moment: datetime | date) -> Period:
    """The ISO week (Monday to Sunday, UTC) containing `moment`."""
    day = moment.date() if isinstance(moment, datetime) else moment
    monday = day - timedelta(days=day.weekday())
    year, week, _ = monday.isocalendar()
    return Period(
        key=f"{year}-W{week:02d}", start=_midnight(monday), end=_midnight(monday + timedelta(days=7))
    )


def range_period(first: date, last: date) -> Period:
    """An inclusive range of days as a half-open period."""
    return Period(
        key=f"{day_key(first)}..{day_key(last)}",
        start=_midnight(first),
        end=_midnight(last + timedelta(days=1)),
    )


def days_between(first: date, last: date) -> list[date]:
    """Every day from first to last inclusive, oldest first."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def months_between(first: date, last: date) -> list[str]:
    """Month keys from first's month to last's month inclusive."""
    keys: list[str] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys
