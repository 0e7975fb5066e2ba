"""Who calls and what they may use: identities, developers, API keys, plans."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from usage_meter.models.timestamps import parse_rfc3339
from usage_meter.models.wire import Aggregation, DeveloperId, MeterStatus, MetricName

Role = Literal["developer", "service"]


class Identity(BaseModel):
    """Who is calling, as the authorizer resolved it."""

    model_config = ConfigDict(frozen=True)

    developer_id: DeveloperId
    role: Role


KeyStatus = Literal["active", "revoked"]
Enforcement = Literal["soft", "hard"]


class PlanAssignment(BaseModel):
    """A developer's plan from `since` on (until the next assignment)."""

    plan: str
    since: str  # RFC 3339, as format_timestamp writes it


class Developer(BaseModel):
    """A customer of the API provider; usage is counted per developer.

    `plan` is the current plan; `plan_history` every assignment, oldest first, so that an event
    backdated into an earlier billing period is judged by the plan of that period.
    """

    developer_id: DeveloperId
    name: str = Field(min_length=1, max_length=200)
    plan: str
    created_at: str
    plan_history: list[PlanAssignment] = Field(default_factory=list)

    def plan_at_end_of(self, period_end: datetime) -> str:
        """The plan that applies to a billing period ending at `period_end` (exclusive): the last
        one assigned before its end. An upgrade on Feb 10 applies to February, never to January;
        a period before the developer existed gets the first plan."""
        applying = [a.plan for a in self.plan_history if parse_rfc3339(a.since) < period_end]
        if applying:
            return applying[-1]
        return self.plan_history[0].plan if self.plan_history else self.plan


class ApiKeyRecord(BaseModel):
    """An API key as stored: its sha256, never the key itself."""

    key_id: str
    key_hash: str
    prefix: str
    developer_id: str
    role: Role
    status: KeyStatus
    created_at: str
    last_used_at: str | None = None


DEFAULT_ALERTS: tuple[int, ...] = (80, 90, 100)


class MetricLimit(BaseModel):
    """A plan's allowance of one metric per billing period; limit None means unlimited.
    `alerts`: the percentages of the limit that raise usage.threshold.reached (None: 80, 90, 100)."""

    limit: Decimal | None = None
    enforcement: Enforcement = "soft"
    alerts: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(default=None, max_length=10)

    @property
    def thresholds(self) -> tuple[int, ...]:
        """The alert percentages of a limited metric (none without a limit), ascending."""
        if self.limit is None:
            return ()
        return tuple(sorted(set(self.alerts))) if self.alerts is not None else DEFAULT_ALERTS


class Plan(BaseModel):
    """Limits per metric and a request rate. `rate_enforcement` hard refuses tracked events past
    `requests_per_minute` in a UTC minute (429 `rate_limited`); soft only reports the rate."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    metrics: dict[str, MetricLimit] = Field(default_factory=dict)
    requests_per_minute: int | None = Field(default=None, ge=1)
    rate_enforcement: Enforcement = "soft"

    @property
    def rate_ceiling(self) -> int | None:
        """Events a developer may have recorded per minute, when the plan enforces its rate."""
        return self.requests_per_minute if self.rate_enforcement == "hard" else None


MAX_DIMENSIONS = 3
MAX_SHARDS = 32
SHARDABLE_AGGREGATIONS = ("sum", "count")
MAX_UNIT = 32
MAX_DESCRIPTION = 256
DIMENSIONED_AGGREGATIONS: frozenset[Aggregation] = frozenset({"sum", "count"})
"""Aggregations whose meters may declare dimensions (see domain/dimensions.py)."""
LIMITLESS_AGGREGATIONS: frozenset[Aggregation] = frozenset({"max", "latest"})
"""Aggregations a plan may not limit: a peak or a last value is not a quantity that runs out."""


class MeterDefinition(BaseModel):
    """What a meter is, as the CLI and the catalogs declare it: `name` is the metric it
    aggregates. Consistent by construction (uniqueBy exactly for unique_count, at most three
    distinct dimensions), since a stored meter never changes its aggregation or uniqueBy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: MetricName
    aggregation: Aggregation = "sum"
    unique_by: MetricName | None = None
    dimensions: Annotated[list[MetricName], Field(max_length=MAX_DIMENSIONS)] = Field(default_factory=list)
    unit: Annotated[str, Field(min_length=1, max_length=MAX_UNIT)] | None = None
    description: Annotated[str, Field(min_length=1, max_length=MAX_DESCRIPTION)] | None = None
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 1
    """Counter items each day and month counter is spread over (1: one item). A hot developer's
    transactions then write different items, each the one its first event's key picks; reads
    add them up. A dimension combination's day counter stays one item."""

    @model_serializer(mode="wrap")
    def _shards_when_sharded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An unsharded meter is written out as it was before shards existed (no `shards`)."""
        data: dict[str, Any] = handler(self)
        if self.shards == 1:
            data.pop("shards", None)
        return data

    @field_validator("dimensions")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        repeated = sorted({d for d in value if value.count(d) > 1})
        if repeated:
            raise ValueError(f"dimensions repeat {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _unique_by_fits(self) -> MeterDefinition:
        if self.aggregation == "unique_count" and self.unique_by is None:
            raise ValueError(
                "a unique_count meter needs unique_by: the metadata property whose distinct values it counts"
            )
        if self.aggregation != "unique_count" and self.unique_by is not None:
            raise ValueError(f"unique_by applies only to unique_count meters, not to {self.aggregation}")
        if self.shards > 1 and self.aggregation not in SHARDABLE_AGGREGATIONS:
            raise ValueError(
                "shards apply to sum and count meters (their shards add up; a peak, a last value, "
                "a distinct count or a level is one figure)"
            )
        if self.dimensions and self.aggregation not in DIMENSIONED_AGGREGATIONS:
            raise ValueError(
                f"dimensions apply to sum and count meters, not to {self.aggregation} (their groups "
                "add up to the total; a peak, a last value, a distinct count or a level does not)"
            )
        return self

    @property
    def limitable(self) -> bool:
        """Whether a plan may put a limit on this meter (a ceiling, for a level)."""
        return self.aggregation not in LIMITLESS_AGGREGATIONS


class Meter(MeterDefinition):
    """A stored meter: its definition, whether it takes events, and since when."""

    status: MeterStatus = "active"
    created_at: str
    archived_at: str | None = None

    @property
    def definition(self) -> MeterDefinition:
        return MeterDefinition.model_validate(self.model_dump(include=set(MeterDefinition.model_fields)))


class DeveloperDeletion(BaseModel):
    """What deleting a developer removed: its profile and its keys. Its usage counters, month
    summaries and idempotency records stay (usage history is kept for billing)."""

    developer_id: DeveloperId
    key_ids: list[str]


class PlanDeletion(BaseModel):
    """A stored plan deleted; `default_restored` when a default plan of that name applies again."""

    name: str
    default_restored: bool
