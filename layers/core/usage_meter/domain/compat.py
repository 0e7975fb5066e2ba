"""The seeds' own APIs (Grantex, Glyphnet, BillingOS) presented over the same domain functions.

Nothing here reads or writes on its own terms: every answer is built from what the main API's
reads (current_usage, usage_history, entitlement, dimensions.breakdown) and the track pipeline
answer, so a compatible surface applies exactly the main API's rules (roles, limits, rates,
bounds) and refuses with the same codes. Only the shape changes: names, casing, integers.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

from usage_meter.domain import clock
from usage_meter.domain import meters as meter_domain
from usage_meter.domain.dimensions import breakdown
from usage_meter.domain.identity import DeveloperResolver, require_role
from usage_meter.domain.meters import MeterBook, require_positive
from usage_meter.domain.tracking import track
from usage_meter.domain.usage import AVERAGE_PLACES, current_usage, entitlement, usage_history
from usage_meter.errors import LimitExceeded
from usage_meter.models.compat import (
    BillingEntitlement,
    BillingMetric,
    BillingMetrics,
    BillingTrackIn,
    BillingTrackResponse,
    BillingUsage,
    GlyphnetDay,
    GlyphnetOrganization,
    GlyphnetPeriod,
    GlyphnetRateLimit,
    GlyphnetUsage,
    GrantexHistory,
    GrantexHistoryEntry,
    GrantexUsage,
)
from usage_meter.models.timestamps import format_instant, parse_rfc3339
from usage_meter.models.wire import CurrentUsageResponse, HistoryEntry, MetricUsage, UsageBlock, UsageEventIn

# ---- Grantex -------------------------------------------------------------------------------

GRANTEX_METERS = ("token_exchanges", "authorizations", "verifications")
"""The meters behind Grantex's usage fields (the `grantex` plan catalog declares them)."""


def whole(value: Decimal) -> int:
    """A figure Grantex types as an integer. Its meters are count meters, so the figure is
    whole already; a fraction (a sum meter under one of those names) is rounded down."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _grantex_counts(values: dict[str, Decimal]) -> dict[str, int]:
    return {name: whole(values.get(name, Decimal(0))) for name in GRANTEX_METERS}


def grantex_usage(
    resolve: DeveloperResolver, developer_id: str | None
) -> tuple[GrantexUsage, CurrentUsageResponse]:
    """Grantex's current-period usage, and the main API's answer it was built from (its
    `rateLimit` gives the rate headers)."""
    current = current_usage(resolve, developer_id=developer_id)
    counts = _grantex_counts({name: usage.consumed for name, usage in current.metrics.items()})
    answer = GrantexUsage(
        developer_id=current.developer_id,
        period=current.period.key,
        total_requests=current.total_requests,
        **counts,
    )
    return answer, current


def grantex_history(resolve: DeveloperResolver, developer_id: str | None, days: int | None) -> GrantexHistory:
    """Grantex's daily history: the main API's (days default 30, at most 366), oldest first."""
    history = usage_history(resolve, developer_id=developer_id, days=days)
    return GrantexHistory(
        developer_id=history.developer_id,
        days=len(history.entries),
        entries=[
            GrantexHistoryEntry(
                date=entry.date, total_requests=entry.total_requests, **_grantex_counts(entry.metrics)
            )
            for entry in history.entries
        ],
    )


# ---- Glyphnet ------------------------------------------------------------------------------

GLYPHNET_CLAIMS = "verified_claims"
GLYPHNET_CONFIDENCE = "confidence"
"""The `glyphnet` catalog's meters behind `daily`: claims verified (a sum) and each
verification's confidence (a sum, whose average is Glyphnet's avg_confidence)."""


def glyphnet_usage(
    resolve: DeveloperResolver,
    *,
    requests_meter: str,
    developer_id: str | None = None,
    period: Literal["day", "week", "month"] | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> tuple[GlyphnetUsage, CurrentUsageResponse]:
    """Glyphnet's usage answer for the window asked (default: the billing month), and the main
    API's answer it was built from. The limits describe the billing month, as in the main API."""
    current = current_usage(
        resolve, developer_id=developer_id, period=period, start_date=start_date, end_date=end_date
    )
    target = current.developer_id
    start, end = parse_rfc3339(current.period.start), parse_rfc3339(current.period.end)
    first, last = start.date(), (end - timedelta(days=1)).date()
    requests = current.metrics.get(requests_meter) or MetricUsage(consumed=Decimal(0))
    developer = resolve.developer(target)
    answer = GlyphnetUsage(
        organization=GlyphnetOrganization(
            id=target, name=developer.name if developer else target, plan=current.plan
        ),
        period=GlyphnetPeriod(start=current.period.start, end=format_instant(end - timedelta(seconds=1))),
        current_usage=requests.consumed,
        monthly_limit=requests.limit,
        remaining=requests.remaining,
        percentage_used=requests.percentage_used,
        rate_limit=GlyphnetRateLimit(
            requests_per_minute=current.rate_limit.requests_per_minute,
            current_minute_usage=current.rate_limit.current_minute_usage,
        ),
        breakdown=_glyphnet_breakdown(target, requests_meter, first, last),
        daily=_glyphnet_daily(resolve, target, requests_meter, first, min(last, clock.now().date())),
    )
    return answer, current


def _glyphnet_breakdown(
    developer_id: str, requests_meter: str, first: date, last: date
) -> dict[str, Decimal]:
    """The requests meter's usage by its first dimension (e.g. endpoint), largest first: one
    Query; empty when the meter declares no dimension."""
    meter = MeterBook()(requests_meter)
    if meter is None or not meter.dimensions:
        return {}
    dimension = meter.dimensions[0]
    groups = breakdown(developer_id, requests_meter, first, last, [dimension])
    return {group.dimensions[dimension]: group.consumed for group in groups}


def _glyphnet_daily(
    resolve: DeveloperResolver, developer_id: str, requests_meter: str, first: date, last: date
) -> list[GlyphnetDay]:
    """One entry per day of the window up to today, oldest first (one Query)."""
    if last < first:  # a window that has not begun
        return []
    history = usage_history(
        resolve, developer_id=developer_id, start_date=first, end_date=last, per_metric_events=True
    )
    return [_glyphnet_day(entry, requests_meter) for entry in history.entries]


def _glyphnet_day(entry: HistoryEntry, requests_meter: str) -> GlyphnetDay:
    confidence = entry.metrics.get(GLYPHNET_CONFIDENCE, Decimal(0))
    verifications = (entry.events or {}).get(GLYPHNET_CONFIDENCE, 0)
    average = (
        (confidence / verifications).quantize(AVERAGE_PLACES, rounding=ROUND_HALF_UP).normalize()
        if verifications
        else None
    )
    return GlyphnetDay(
        date=entry.date,
        requests=entry.metrics.get(requests_meter, Decimal(0)),
        verified_claims=entry.metrics.get(GLYPHNET_CLAIMS, Decimal(0)),
        avg_confidence=average,
    )


# ---- BillingOS -----------------------------------------------------------------------------


def _billing_usage(block: UsageBlock) -> BillingUsage:
    return BillingUsage(
        consumed_units=block.consumed,
        limit_units=block.limit,
        remaining_units=block.remaining,
        period_start=block.period_start,
        period_end=block.period_end,
    )


def billing_track(
    resolve: DeveloperResolver, body: BillingTrackIn, *, time_left_ms: int | None = None
) -> tuple[BillingTrackResponse, UsageEventIn]:
    """BillingOS's trackUsage: one event through the track pipeline (service keys only, exactly
    once with its idempotencyKey, limits and rates enforced). BillingOS wants quantity > 0
    whatever the meter, so a level is only ever raised here. A refusal over a hard limit keeps
    the main API's error and carries the usage block in BillingOS's names. Also answers the
    event as the main API took it (for the rate headers)."""
    require_role(resolve.identity, "service", "tracking")
    require_positive(body.quantity)
    event = UsageEventIn(
        developer_id=body.customer_id,
        metric=body.feature_key,
        quantity=body.quantity,
        idempotency_key=body.idempotency_key,
        metadata=body.metadata,
    )
    try:
        answer = track(resolve.identity, event, time_left_ms=time_left_ms, resolve=resolve)
    except LimitExceeded as exc:
        usage = exc.extra.get("usage") if exc.extra else None
        if usage is not None:
            exc.extra = {"usage": _billing_usage(UsageBlock.model_validate(usage)).wire()}
        raise
    result = answer.results[0]
    response = BillingTrackResponse(
        success=True,
        feature_key=body.feature_key,
        quantity=body.quantity,
        recorded_at=result.recorded_at or "",
        usage=_billing_usage(answer.usage) if answer.usage else None,
    )
    return response, event


def billing_metrics(
    resolve: DeveloperResolver, customer_id: str | None, feature_key: str | None
) -> tuple[BillingMetrics, CurrentUsageResponse]:
    """BillingOS's getUsageMetrics: each feature of the billing period (the plan's and those
    used), sorted by key; its title is its meter's description (else its key) and its product
    the customer's plan."""
    current = current_usage(resolve, developer_id=customer_id, metric=feature_key)
    titles = {meter.name: meter.description or meter.name for meter in meter_domain.meters()}
    metrics = [
        BillingMetric(
            feature_key=name,
            feature_title=titles.get(name, name),
            product_name=current.plan,
            consumed=usage.consumed,
            limit=usage.limit,
            remaining=usage.remaining,
            percentage_used=usage.percentage_used,
            period_start=current.period.start,
            period_end=current.period.end,
            resets_in_days=current.resets_in_days,
        )
        for name, usage in sorted(current.metrics.items())
    ]
    return BillingMetrics(metrics=metrics, customer_id=current.developer_id), current


def billing_entitlement(
    resolve: DeveloperResolver, customer_id: str | None, feature_key: str
) -> BillingEntitlement:
    """BillingOS's checkEntitlement: the main API's entitlement in BillingOS's names."""
    answer = entitlement(resolve, feature_key, developer_id=customer_id)
    return BillingEntitlement(
        customer_id=resolve(customer_id),  # resolved already: no read
        feature_key=answer.metric,
        has_access=answer.has_access,
        usage=answer.consumed,
        limit=answer.limit,
        remaining=answer.remaining,
    )
