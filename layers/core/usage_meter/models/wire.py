"""What crosses the API: requests, answers and their field rules (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from usage_meter import jsonutil
from usage_meter.models.timestamps import parse_rfc3339

METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
DEVELOPER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_QUANTITY = Decimal(10) ** 12
QUANTITY_PLACES = 9
MAX_BATCH = 100
MAX_METADATA_BYTES = 2048
MAX_IDEMPOTENCY_KEY = 255
MAX_METADATA_DEPTH = 32

EventStatus = Literal["recorded", "duplicate", "rejected", "limit_exceeded"]


def decimal_places(number: Decimal) -> int:
    """Places after the point once trailing zeros are dropped, counted exactly (1.50 -> 1).

    pydantic counts after normalize(), which rounds to the context's precision (60 digits)
    and flushes tiny numbers to 0: 1.(59 zeros)1 and 1e-999999999 would pass as 0 places,
    then reach DynamoDB (38 digits at most) and answer 500.
    """
    _, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def _number_only(value: Any) -> Any:
    """Quantities are JSON numbers: refuse strings and booleans pydantic would coerce, and
    more than 9 places (counted exactly, see decimal_places)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("quantity must be a JSON number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if decimal_places(number) > QUANTITY_PLACES:
        raise PydanticCustomError(
            "decimal_max_places",
            "Decimal input should have no more than {decimal_places} decimal places",
            {"decimal_places": QUANTITY_PLACES},
        )
    return number


def _depth(value: Any) -> int:
    """Nesting depth of plain JSON (iterative: a hostile body cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string")
    return parse_rfc3339(value)


def _not_zero(value: Decimal) -> Decimal:
    """A quantity of 0 counts nothing under any meter (the sign is the meter's business: only
    a level takes a negative change)."""
    if value == 0:
        raise PydanticCustomError("not_zero", "Input should not be 0")
    return value


Quantity = Annotated[
    Decimal,
    BeforeValidator(_number_only),
    Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, decimal_places=QUANTITY_PLACES, allow_inf_nan=False),
    AfterValidator(_not_zero),
    WithJsonSchema(
        {"type": "number", "minimum": -1e12, "maximum": 1e12, "multipleOf": 1e-9, "not": {"const": 0}}
    ),
]
Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _metadata_size(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metadata is plain JSON, at most MAX_METADATA_DEPTH deep and MAX_METADATA_BYTES serialized."""
    if value is None:
        return value
    if _depth(value) > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    try:
        size = len(jsonutil.dumps(value).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be plain JSON ({exc})") from exc
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes serialized; at most {MAX_METADATA_BYTES}")
    return value


Metadata = Annotated[dict[str, Any] | None, AfterValidator(_metadata_size)]
"""An event's metadata (the main API's and the compatible surfaces' alike)."""
Amount = Annotated[Decimal, WithJsonSchema({"type": "number"})]
"""An exact decimal in an answer: written as a JSON number, never a string."""
MetricName = Annotated[str, Field(pattern=METRIC_PATTERN)]
DeveloperId = Annotated[str, Field(pattern=DEVELOPER_ID_PATTERN)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]
Aggregation = Literal["sum", "count", "max", "latest", "unique_count", "level"]
"""How a meter turns its events into usage (see README, "Meters")."""
AGGREGATIONS: tuple[Aggregation, ...] = ("sum", "count", "max", "latest", "unique_count", "level")
MeterStatus = Literal["active", "archived"]


class ApiModel(BaseModel):
    """Wire models: camelCase aliases, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict (aliases, Decimals kept exact for jsonutil.dumps)."""
        return self.model_dump(by_alias=True, mode="python")


# ---- requests ---------------------------------------------------------------------------


class UsageEventIn(ApiModel):
    """One usage event as a backend sends it."""

    metric: MetricName
    quantity: Quantity | None = None  # required and > 0 but for count (default 1) and level (signed)
    idempotency_key: IdempotencyKey | None = None
    timestamp: Timestamp | None = None
    developer_id: DeveloperId | None = None
    metadata: Metadata = None


class EventBatchIn(ApiModel):
    """A batch: each item is validated on its own, so one bad event does not sink the others."""

    events: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, max_length=MAX_BATCH),
        WithJsonSchema(
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "items": {"$ref": "#/components/schemas/UsageEventIn"},
            }
        ),
    ]


def _body_kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


TrackBody = Annotated[
    Annotated[UsageEventIn, Tag("event")] | Annotated[EventBatchIn, Tag("batch")],
    Discriminator(_body_kind),
]


# ---- responses --------------------------------------------------------------------------


class ErrorDetail(ApiModel):
    code: str
    message: str
    details: list[Any] | None = None


class ErrorResponse(ApiModel):
    error: ErrorDetail


class UsageBlock(ApiModel):
    """Where the metric stands after the write, in the event's billing period."""

    metric: str
    consumed: Amount
    limit: Amount | None
    remaining: Amount | None
    period_start: str
    period_end: str


class EventResult(ApiModel):
    index: int
    status: EventStatus
    idempotency_key: str | None = None
    recorded_at: str | None = None
    error: ErrorDetail | None = None


class TrackResponse(ApiModel):
    results: list[EventResult]
    recorded: int
    duplicates: int
    rejected: int
    usage: UsageBlock | None = None


class PeriodOut(ApiModel):
    key: str
    start: str
    end: str


def _absent(value: Any) -> bool:
    return value is None


class GroupOut(ApiModel):
    """One group of a grouped read: the values of the dimensions grouped by ("(other)": the
    combinations past the cardinality bound), and its figures."""

    dimensions: dict[str, str]
    consumed: Amount
    events: int


class MetricUsage(ApiModel):
    """One metric in a window: `consumed` is its meter's aggregated value (the sum, the count,
    ...), `events` the events counted, `average` (sum meters) consumed / events; `groups`
    (asked with groupBy) its usage per group, largest first."""

    consumed: Amount
    limit: Amount | None = None
    remaining: Amount | None = None
    percentage_used: Amount | None = None
    aggregation: Aggregation = "sum"
    events: int = 0
    average: Amount | None = None
    groups: list[GroupOut] | None = Field(default=None, exclude_if=_absent)


class RateLimit(ApiModel):
    """The plan's request rate and the events recorded in the current minute (reported, not enforced)."""

    requests_per_minute: int | None
    current_minute_usage: int


class RateStatus(BaseModel):
    """What the RateLimit-* headers of a developer-scoped answer say: the plan's requests per
    minute, what is left of them in the current UTC minute, and seconds until it starts over."""

    model_config = ConfigDict(frozen=True)

    limit: int
    remaining: int
    reset: int


class CurrentUsageResponse(ApiModel):
    developer_id: str
    plan: str | None
    period: PeriodOut
    metrics: dict[str, MetricUsage]
    total_requests: int
    resets_in_days: int
    rate_limit: RateLimit


class EntitlementResponse(ApiModel):
    metric: str
    has_access: bool
    consumed: Amount
    limit: Amount | None
    remaining: Amount | None
    enforcement: Literal["soft", "hard"] | None
    resets_at: str


class HistoryEntry(ApiModel):
    """One step: each metric's consumption and the events of all; grouped (groupBy), also the
    events of each metric and each grouped metric's groups, largest first."""

    date: str
    metrics: dict[str, Amount]
    total_requests: int
    events: dict[str, int] | None = Field(default=None, exclude_if=_absent)
    groups: dict[str, list[GroupOut]] | None = Field(default=None, exclude_if=_absent)


class HistoryResponse(ApiModel):
    developer_id: str
    granularity: Literal["day", "month"]
    entries: list[HistoryEntry]


class MeterOut(ApiModel):
    """A meter as GET /v1/meters lists it: how the events of one metric become usage."""

    name: str
    aggregation: Aggregation
    unique_by: str | None
    dimensions: list[str]
    unit: str | None
    description: str | None
    status: MeterStatus
    shards: int  # the items its day and month counters spread over (1: not sharded)


class MetersResponse(ApiModel):
    """Every meter, sorted by name (at most MAX_METERS of them)."""

    meters: list[MeterOut]


# ---- the event log and corrections ---------------------------------------------------------

MAX_EVENT_PAGE = 100
MAX_REASON = 500
EventLogStatus = Literal["recorded", "cancelled", "amended"]
CorrectionStatus = Literal["cancelled", "already_cancelled", "amended", "unchanged"]


class RevisionOut(ApiModel):
    """One correction of an event: what it did, when, why, and (an amendment) the values before."""

    revision: int
    action: Literal["cancel", "amend"]
    at: str
    reason: str
    quantity: Amount | None = Field(default=None, exclude_if=_absent)
    metadata: dict[str, Any] | None = Field(default=None, exclude_if=_absent)


class EventOut(ApiModel):
    """An event as the log lists it: its current values, status and corrections."""

    idempotency_key: str
    metric: str
    quantity: Amount
    timestamp: str
    recorded_at: str
    status: EventLogStatus
    metadata: dict[str, Any] | None
    revision: int
    revisions: list[RevisionOut]


class EventsResponse(ApiModel):
    """A page of the event log, newest first; `nextCursor` (null on the last page) continues it."""

    events: list[EventOut]
    next_cursor: str | None


Reason = Annotated[str, Field(max_length=MAX_REASON, description="Why (kept in the event's revisions)")]


class CancelIn(ApiModel):
    """Cancel one recorded event: every counter it moved moves back."""

    developer_id: DeveloperId
    idempotency_key: IdempotencyKey
    reason: Reason = ""


class AmendIn(CancelIn):
    """Amend one recorded event's quantity and/or metadata: its old contribution out, the new in."""

    quantity: Quantity | None = None
    metadata: Metadata = None


class CorrectionResponse(ApiModel):
    """What a correction did (`unchanged`, `already_cancelled`: nothing) and the event after it."""

    status: CorrectionStatus
    revision: int
    event: EventOut
