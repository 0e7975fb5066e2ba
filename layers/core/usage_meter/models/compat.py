"""What crosses the compatible surfaces: the seeds' own requests and answers, field for field.

Grantex speaks camelCase (the main API's ApiModel); Glyphnet and BillingOS answer in
snake_case, so their models keep their field names as they are. Figures that the seeds type
as integers (Grantex's counts) are ints; those typed `number` stay exact decimals.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from usage_meter.models.wire import (
    Amount,
    ApiModel,
    DeveloperId,
    IdempotencyKey,
    Metadata,
    MetricName,
    Quantity,
)

# ---- Grantex (camelCase) -------------------------------------------------------------------


class GrantexUsage(ApiModel):
    """GET /compat/grantex/v1/usage: the billing period's counts (Grantex's UsageMetrics)."""

    developer_id: str
    period: str
    token_exchanges: int
    authorizations: int
    verifications: int
    total_requests: int


class GrantexHistoryEntry(ApiModel):
    """One day of GET /compat/grantex/v1/usage/history (Grantex's UsageEntry)."""

    date: str
    token_exchanges: int
    authorizations: int
    verifications: int
    total_requests: int


class GrantexHistory(ApiModel):
    """GET /compat/grantex/v1/usage/history: the last `days` days, oldest first."""

    developer_id: str
    days: int
    entries: list[GrantexHistoryEntry]


# ---- Glyphnet and BillingOS (snake_case) ---------------------------------------------------


class SnakeModel(BaseModel):
    """An answer whose fields are written as named (snake_case), unknown fields refused."""

    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict (Decimals kept exact for jsonutil.dumps)."""
        return self.model_dump(mode="python")


class GlyphnetOrganization(SnakeModel):
    id: str
    name: str
    plan: str | None


class GlyphnetPeriod(SnakeModel):
    """The window's first and last instants, both inclusive (Glyphnet's own form)."""

    start: str
    end: str


class GlyphnetRateLimit(SnakeModel):
    requests_per_minute: int | None
    current_minute_usage: int


class GlyphnetDay(SnakeModel):
    """One day: requests, claims verified and the average confidence of that day's
    verifications (null on a day without any)."""

    date: str
    requests: Amount
    verified_claims: Amount
    avg_confidence: Amount | None


class GlyphnetUsage(SnakeModel):
    """GET /compat/glyphnet/v1/usage."""

    organization: GlyphnetOrganization
    period: GlyphnetPeriod
    current_usage: Amount
    monthly_limit: Amount | None
    remaining: Amount | None
    percentage_used: Amount | None
    rate_limit: GlyphnetRateLimit
    breakdown: dict[str, Amount]
    daily: list[GlyphnetDay]


class BillingTrackIn(ApiModel):
    """POST /compat/billingos/v1/usage/track: BillingOS's trackUsage parameters (camelCase in,
    like its SDK sends them); `quantity` is required and must be > 0 whatever the meter."""

    customer_id: DeveloperId
    feature_key: MetricName
    quantity: Quantity
    idempotency_key: IdempotencyKey | None = None
    metadata: Metadata = None


class BillingUsage(SnakeModel):
    """Where the feature stands after the write, in the event's billing period."""

    consumed_units: Amount
    limit_units: Amount | None
    remaining_units: Amount | None
    period_start: str
    period_end: str


class BillingTrackResponse(SnakeModel):
    success: bool
    feature_key: str
    quantity: Amount
    recorded_at: str
    usage: BillingUsage | None = Field(default=None, exclude_if=lambda value: value is None)
    """Absent (BillingOS's `usage?`) when it could not be read after the write."""


class BillingMetric(SnakeModel):
    feature_key: str
    feature_title: str
    product_name: str | None
    consumed: Amount
    limit: Amount | None
    remaining: Amount | None
    percentage_used: Amount | None
    period_start: str
    period_end: str
    resets_in_days: int


class BillingMetrics(SnakeModel):
    """GET /compat/billingos/v1/usage/metrics."""

    metrics: list[BillingMetric]
    customer_id: str


class BillingEntitlement(SnakeModel):
    """GET /compat/billingos/v1/entitlements/check."""

    customer_id: str
    feature_key: str
    has_access: bool
    usage: Amount
    limit: Amount | None
    remaining: Amount | None
