"""Alerts: thresholds crossed, hard limits reached, periods closed, raised exactly once each.

The usage table's stream carries every counter change with its old and new image. A change
that crosses a threshold of the plan's limit (old < t <= new) raises one alert per
(developer, meter, period, threshold): whoever puts the claim item first owns it, and the
claim keeps the event, so a retry of a batch whose publish failed publishes the same event
again (same id) until the claim says it was published. Duplicate stream records, retries and
bisections therefore never raise a second alert; at worst an event whose publish succeeded
but whose claim update failed is published twice with the same id, and the webhook deliverer
delivers an id once per endpoint.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter.domain import clock, plans
from usage_meter.domain.periods import RETENTION, month_key, month_period
from usage_meter.models.accounts import MetricLimit
from usage_meter.models.alerts import Crossing, Delivery, Envelope, EventType, Webhook
from usage_meter.models.timestamps import format_timestamp, parse_rfc3339
from usage_meter.store import accounts as account_store
from usage_meter.store import alerts as alert_store
from usage_meter.store import dynamodb, keys, outbox
from usage_meter.store import meters as meter_store

logger = Logger(child=True)
metrics = Metrics()

CLAIM_KEPT = RETENTION + timedelta(days=5)
"""How long after its period ends a claim is kept: past the backdating window, so no late
event of the period can raise the alert again."""
ENDPOINTS_CACHE_S = 10.0
LIMITLESS = frozenset({"max", "latest"})


# ---- publishing ------------------------------------------------------------------------------


@dataclass
class _Endpoints:
    """The registered endpoints, read at most every ENDPOINTS_CACHE_S seconds."""

    hooks: list[Webhook] = field(default_factory=list)
    read_at: float = float("-inf")

    def current(self) -> list[Webhook]:
        if time.monotonic() - self.read_at > ENDPOINTS_CACHE_S:
            self.hooks = alert_store.list_webhooks()
            self.read_at = time.monotonic()
        return self.hooks

    def forget(self) -> None:
        self.read_at = float("-inf")


_endpoints = _Endpoints()
dynamodb.on_reset(_endpoints.forget)


def event_id(*parts: str) -> str:
    """A stable id: the same alert has the same id however often it is published."""
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def envelope(kind: EventType, data: dict[str, Any], ident: str | None = None) -> Envelope:
    return Envelope(
        id=ident or event_id(kind, format_timestamp(clock.now()), repr(sorted(data.items()))),
        type=kind,
        created_at=format_timestamp(clock.now()),
        data=data,
    )


def deliver_to(event: Envelope, hooks: list[Webhook]) -> None:
    """One delivery message per endpoint that takes the event."""
    outbox.send_deliveries([Delivery(webhook_id=h.webhook_id, event=event) for h in hooks if h.wants(event)])


def publish_envelope(event: Envelope) -> None:
    """The event on the bus and to every endpoint that takes it (at least once; same id)."""
    outbox.put_event(event)
    deliver_to(event, _endpoints.current())
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=1)
    logger.info("event published", extra={"event_id": event.id, "event_type": event.type})


def publish(kind: EventType, data: dict[str, Any], ident: str | None = None) -> Envelope:
    """Publish a lifecycle event (`ident`: a stable id, for events that may be published twice)."""
    event = envelope(kind, data, ident)
    publish_envelope(event)
    return event


def raise_once(developer_id: str, claim_sk: str, event: Envelope, period_end: datetime) -> bool:
    """Publish `event` unless its claim says it was; True when this call published it."""
    expires_at = int((period_end + CLAIM_KEPT).timestamp())
    state, held = alert_store.claim(developer_id, claim_sk, event, expires_at)
    if state == "published":
        metrics.add_metric(name="AlertsDeduplicated", unit=MetricUnit.Count, value=1)
        return False
    publish_envelope(held)
    alert_store.mark_published(developer_id, claim_sk)
    return True


# ---- crossings -------------------------------------------------------------------------------


def crossed(old: Decimal, new: Decimal, limit: Decimal, thresholds: tuple[int, ...]) -> list[int]:
    """The thresholds (percent of `limit`) a change from `old` to `new` crosses: old < t <= new."""
    if limit <= 0 or new <= old:
        return []
    return [t for t in thresholds if old < limit * t / 100 <= new]


@dataclass
class Lookup:
    """Developers and plans read once per batch."""

    developers: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)

    def sharded(self, metric: str) -> bool:
        if metric not in self.shards:
            meter = meter_store.get_meter(metric)
            self.shards[metric] = meter.shards if meter is not None else 1
        return self.shards[metric] > 1

    def allowance(self, developer_id: str, metric: str, period_end: datetime) -> MetricLimit | None:
        if developer_id not in self.developers:
            self.developers[developer_id] = account_store.get_developer(developer_id)
        developer = self.developers[developer_id]
        if developer is None:
            return None
        name = developer.plan_at_end_of(period_end)
        if name not in self.plans:
            self.plans[name] = plans.get_plan(name)
        return plans.metric_limit(self.plans[name], metric)


def _number(image: dict[str, Any], name: str) -> Decimal:
    value = image.get(name)
    return Decimal(str(value)) if value is not None else Decimal(0)


def counter_crossings(sk: str, old: dict[str, Any], new: dict[str, Any], lookup: Lookup) -> list[Crossing]:
    """The thresholds one counter change crossed: a month counter (sum, count, unique_count)
    or a level's running level (its period: the month of the change)."""
    aggregation = str(new.get("aggregation", "sum"))
    scope = keys.scope_of_sk(sk)
    if aggregation in LIMITLESS or (scope == "month") == (aggregation == "level"):
        return []
    developer_id, metric = str(new["developerId"]), str(new["metric"])
    month = str(new["month"]) if scope == "month" else month_key(parse_rfc3339(str(new["updatedAt"])))
    period = month_period(datetime.fromisoformat(f"{month}-01T00:00:00+00:00"))
    allowance = lookup.allowance(developer_id, metric, period.end)
    if allowance is None or allowance.limit is None:
        return []
    before, after = _number(old, "consumed"), _number(new, "consumed")
    if scope == "month" and lookup.sharded(metric):
        before, after = _sharded_totals(developer_id, month, metric, after - before)
    return [
        Crossing(
            developer_id=developer_id,
            metric=metric,
            period=month,
            threshold=t,
            consumed=after,
            limit=allowance.limit,
            crossed_at=str(new.get("updatedAt", "")),
        )
        for t in crossed(before, after, allowance.limit, allowance.thresholds)
    ]


def _sharded_totals(developer_id: str, month: str, metric: str, change: Decimal) -> tuple[Decimal, Decimal]:
    """A sharded counter's totals: the shards read now (one Query), and before: nothing, so that
    every threshold the total has reached is claimed (the claims keep each to one alert; the
    shards' own old and new images cannot say when the total crossed)."""
    low, high = keys.shard_range("month", month, metric)
    items = dynamodb.query_range(developer_id, low, high)
    total = sum((Decimal(str(dynamodb.from_av(i["consumed"]))) for i in items if "consumed" in i), Decimal(0))
    return (Decimal(0), total) if change > 0 else (total, total)


def alert_crossing(crossing: Crossing) -> bool:
    """usage.threshold.reached for one crossing, once."""
    sk = keys.claim_sk(crossing.period, crossing.metric, str(crossing.threshold))
    data = {
        "developerId": crossing.developer_id,
        "metric": crossing.metric,
        "period": crossing.period,
        "threshold": crossing.threshold,
        "consumed": crossing.consumed,
        "limit": crossing.limit,
        "crossedAt": crossing.crossed_at,
    }
    event = envelope("usage.threshold.reached", data, event_id(crossing.developer_id, sk))
    return raise_once(crossing.developer_id, sk, event, _period_end(crossing.period))


def _period_end(month: str) -> datetime:
    return month_period(datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=UTC)).end


def limit_reached(flag: dict[str, Any]) -> bool:
    """usage.limit.reached for the flag the track path put on a period's first refusal, once."""
    developer_id, metric, month = str(flag["developerId"]), str(flag["metric"]), str(flag["period"])
    sk = keys.claim_sk(month, metric, keys.LIMIT_CLAIM)
    data = {
        "developerId": developer_id,
        "metric": metric,
        "period": month,
        "limit": Decimal(str(flag["limit"])),
        "refusedAt": str(flag["refusedAt"]),
    }
    event = envelope("usage.limit.reached", data, event_id(developer_id, sk))
    return raise_once(developer_id, sk, event, _period_end(month))


def on_change(sk: str, old: dict[str, Any], new: dict[str, Any], lookup: Lookup) -> int:
    """One stream record (an insert or modify of a counter or refusal flag): alerts raised."""
    if sk.startswith("X#"):
        return int(limit_reached(new)) if not old else 0
    return sum(alert_crossing(c) for c in counter_crossings(sk, old, new, lookup))


def period_closed(developer_id: str, month: str, totals: dict[str, Decimal]) -> bool:
    """usage.period.closed once per developer and month, when the rollup closes it."""
    sk = keys.claim_sk(month, "*", keys.CLOSED_CLAIM)
    data = {"developerId": developer_id, "period": month, "metrics": dict(sorted(totals.items()))}
    event = envelope("usage.period.closed", data, event_id(developer_id, sk))
    return raise_once(developer_id, sk, event, _period_end(month))


def refused_at_limit(developer_id: str, metric: str, moment: datetime, limit: Decimal) -> None:
    """Flag a period's first hard-limit refusal (the stream raises usage.limit.reached)."""
    period = month_period(moment)
    alert_store.flag_refusal(
        developer_id,
        period.key,
        metric,
        str(limit),
        format_timestamp(clock.now()),
        int((period.end + CLAIM_KEPT).timestamp()),
    )
