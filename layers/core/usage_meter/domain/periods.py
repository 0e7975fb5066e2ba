"""UTC days, ISO weeks, calendar-month billing periods, and the backdating window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

BACKDATE_WINDOW = timedelta(days=35)
"""How old an event may be: its day and billing period may still change that long after."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far ahead of the service's clock an event's timestamp may be (client clock skew)."""
RETENTION = BACKDATE_WINDOW + timedelta(days=1)
"""How long an idempotency key is kept and the rollup looks back: a retry of the oldest event
that may still be accepted is still recognised, and its day still summed."""


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
