"""Typed results (snake_case attributes; camelCase on the wire) and the event a caller sends."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

EventStatus = Literal["recorded", "duplicate", "rejected", "limit_exceeded"]
LogStatus = Literal["recorded", "cancelled", "amended"]
CorrectionStatus = Literal["cancelled", "already_cancelled", "amended", "unchanged"]
Enforcement = Literal["soft", "hard"]
PeriodName = Literal["day", "week", "month"]
Granularity = Literal["day", "month"]

_MONTH = re.compile(r"\d{4}-\d{2}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _month_or_day(value: Any) -> Any:
    """History entries of `granularity="month"` are dated "2026-11": read as the month's first day."""
    if isinstance(value, str) and _MONTH.fullmatch(value):
        return f"{value}-01"
    return value


class ApiObject(BaseModel):
    """Base of every result: immutable, snake_case attributes, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=_camel, populate_by_name=True, extra="ignore", frozen=True)


class Period(ApiObject):
    """The period a usage answer covers; `end` is exclusive."""

    key: str
    start: dt.datetime
    end: dt.datetime


class Group(ApiObject):
    """One group of a grouped read (`group_by`): the values of the dimensions grouped by
    ("(other)": the combinations past the service's cardinality bound) and its figures."""

    dimensions: dict[str, str]
    consumed: Decimal
    events: int


class MetricUsage(ApiObject):
    """One metric's consumption; `limit`, `remaining` and `percentage_used` are None when
    unlimited. `aggregation` is its meter's (sum, count, max, latest, unique_count, level),
    `events` the events counted in the window, `average` (sum meters) consumed / events,
    `groups` (asked with `group_by`) its usage per group, largest first."""

    consumed: Decimal
    limit: Decimal | None = None
    remaining: Decimal | None = None
    percentage_used: Decimal | None = None
    aggregation: str = "sum"
    events: int = 0
    average: Decimal | None = None
    groups: list[Group] | None = None

    @property
    def unlimited(self) -> bool:
        return self.limit is None


class RateLimit(ApiObject):
    """The plan's request rate and the events recorded in the current minute (reported, not enforced)."""

    requests_per_minute: int | None = None
    current_minute_usage: int = 0


class CurrentUsage(ApiObject):
    """`GET /v1/usage`: usage of the billing period (or the period or dates asked for)."""

    developer_id: str
    plan: str | None = None
    period: Period
    metrics: dict[str, MetricUsage]
    total_requests: int
    resets_in_days: int
    rate_limit: RateLimit | None = None


class HistoryEntry(ApiObject):
    """One day (or month: `date` is then the month's first day) of usage; a grouped history
    (`group_by`, `filters`) also has each metric's `events` and each grouped metric's `groups`."""

    date: Annotated[dt.date, BeforeValidator(_month_or_day)]
    metrics: dict[str, Decimal]
    total_requests: int
    events: dict[str, int] | None = None
    groups: dict[str, list[Group]] | None = None


class History(ApiObject):
    """`GET /v1/usage/history`: oldest first, every day (or month) of the range present."""

    developer_id: str
    granularity: Granularity
    entries: list[HistoryEntry]

    def total(self, metric: str) -> Decimal:
        """The metric's consumption summed over the entries."""
        return sum((entry.metrics.get(metric, Decimal(0)) for entry in self.entries), Decimal(0))


class ErrorInfo(ApiObject):
    code: str
    message: str
    details: list[Any] | None = None


class UsageSnapshot(ApiObject):
    """Where a metric stands in the event's billing period after a write (or a refusal)."""

    metric: str
    consumed: Decimal
    limit: Decimal | None = None
    remaining: Decimal | None = None
    period_start: dt.datetime
    period_end: dt.datetime


class EventResult(ApiObject):
    """The outcome of one event. A `duplicate` carries the original `recorded_at`."""

    index: int
    status: EventStatus
    idempotency_key: str | None = None
    recorded_at: dt.datetime | None = None
    error: ErrorInfo | None = None


class BatchResult(ApiObject):
    """The answer to `track_batch`: one result per event, in order."""

    results: list[EventResult]
    recorded: int
    duplicates: int
    rejected: int

    @property
    def failed(self) -> list[EventResult]:
        """The events that were not counted (`rejected` or `limit_exceeded`)."""
        return [r for r in self.results if r.status in ("rejected", "limit_exceeded")]


class TrackResult(BatchResult):
    """The answer to `track`: the event's outcome and, usually, its metric's usage."""

    usage: UsageSnapshot | None = None

    @property
    def status(self) -> EventStatus:
        return self.results[0].status

    @property
    def idempotency_key(self) -> str | None:
        return self.results[0].idempotency_key

    @property
    def recorded_at(self) -> dt.datetime | None:
        return self.results[0].recorded_at

    @property
    def duplicate(self) -> bool:
        """True when the service had already counted this idempotency key (the answer is the original)."""
        return self.results[0].status == "duplicate"


class Revision(ApiObject):
    """One correction of a logged event; an amendment keeps the quantity and metadata before it."""

    revision: int
    action: Literal["cancel", "amend"]
    at: dt.datetime
    reason: str
    quantity: Decimal | None = None
    metadata: dict[str, Any] | None = None


class LoggedEvent(ApiObject):
    """An event of the event log (`GET /v1/usage/events`), as it stands now."""

    idempotency_key: str
    metric: str
    quantity: Decimal
    timestamp: dt.datetime
    recorded_at: dt.datetime
    status: LogStatus
    metadata: dict[str, Any] | None = None
    revision: int = 0
    revisions: list[Revision] = []


class EventPage(ApiObject):
    """One page of the event log, newest first; `next_cursor` is None on the last page."""

    events: list[LoggedEvent]
    next_cursor: str | None = None


class Correction(ApiObject):
    """What a cancel or an amend did (`unchanged` and `already_cancelled`: nothing) and the event after it."""

    status: CorrectionStatus
    revision: int
    event: LoggedEvent


class Entitlement(ApiObject):
    """`GET /v1/entitlements/{metric}`; `has_access` is False when the plan lacks the metric or a hard
    limit is used up."""

    metric: str
    has_access: bool
    consumed: Decimal
    limit: Decimal | None = None
    remaining: Decimal | None = None
    enforcement: Enforcement | None = None
    resets_at: dt.datetime


Quantity = Decimal | int | float | str


def now() -> dt.datetime:
    """The client's clock, UTC (one place, so tests can move it)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class UsageEvent:
    """One event for `track_batch`. Without an idempotency key the client generates one per call.

    Without a timestamp it is stamped with the time it is created: every send of this event
    then carries the same time, so a resend within the 35-day backdating window is a
    duplicate of the first, and a later one is refused as too old. Left to the service, the
    time would be that of each send, and a resend after the key's 36 days would count again.
    """

    metric: str
    quantity: Quantity
    idempotency_key: str | None = None
    timestamp: dt.datetime | str | None = None
    developer_id: str | None = None
    metadata: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.timestamp is None:
            object.__setattr__(self, "timestamp", now())


def to_decimal(quantity: Quantity) -> Decimal:
    """A quantity as an exact Decimal: floats by their shortest repr (0.1 -> 0.1), never binary noise."""
    if isinstance(quantity, bool) or not isinstance(quantity, Decimal | int | float | str):
        raise TypeError(f"quantity must be a number, not {type(quantity).__name__}")
    value = Decimal(repr(quantity)) if isinstance(quantity, float) else Decimal(quantity)
    if not value.is_finite():
        raise ValueError(f"quantity must be finite, not {quantity!r}")
    return value


def timestamp_text(timestamp: dt.datetime | str) -> str:
    """RFC 3339 with an offset; naive datetimes are refused rather than guessed."""
    if isinstance(timestamp, str):
        return timestamp
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return timestamp.isoformat()


def date_text(value: dt.date | str) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
