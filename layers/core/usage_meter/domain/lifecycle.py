"""Lifecycle events (usage.event.cancelled, usage.event.amended, usage.period.adjusted, ...):
the one place the domain announces what happened, after it is committed.

Today an announcement is a structured log line; delivery (the stack's event bus and webhooks)
plugs in here, so no caller changes when it does.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)

EVENT_CANCELLED = "usage.event.cancelled"
EVENT_AMENDED = "usage.event.amended"
PERIOD_ADJUSTED = "usage.period.adjusted"


def publish(event_type: str, detail: dict[str, Any]) -> None:
    """Announce a committed change (`detail` is JSON-ready: camelCase keys, no secrets)."""
    logger.info("lifecycle event", extra={"event_type": event_type, "detail": detail})
