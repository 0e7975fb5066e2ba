"""Lifecycle events (usage.event.cancelled, usage.event.amended, usage.period.adjusted, ...):
the one place the domain announces what happened, after it is committed.

An announcement is logged, then published like an alert: on the stack's event bus and to
the webhooks that take it. Its id is made from what it announces (developer, key, revision,
type), so a correction answered again (a client's retry) never announces another event. It
is sent after the commit: a bus or queue that fails then loses this announcement (logged,
and counted as LifecycleUnpublished), never the correction itself.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter.domain import alerts

logger = Logger(child=True)
metrics = Metrics()

EVENT_CANCELLED = "usage.event.cancelled"
EVENT_AMENDED = "usage.event.amended"
PERIOD_ADJUSTED = "usage.period.adjusted"


def publish(event_type: str, detail: dict[str, Any]) -> None:
    """Announce a committed change (`detail` is JSON-ready: camelCase keys, no secrets)."""
    logger.info("lifecycle event", extra={"event_type": event_type, "detail": detail})
    keyed = "idempotencyKey" in detail and "revision" in detail
    ident = (
        alerts.event_id(
            event_type, str(detail["developerId"]), str(detail["idempotencyKey"]), str(detail["revision"])
        )
        if keyed
        else None
    )
    try:
        alerts.publish(event_type, detail, ident)  # type: ignore[arg-type]
    except Exception:
        logger.exception("lifecycle event not published", extra={"event_type": event_type})
        metrics.add_metric(name="LifecycleUnpublished", unit=MetricUnit.Count, value=1)
