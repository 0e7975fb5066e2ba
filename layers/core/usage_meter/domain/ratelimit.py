"""A developer's request rate as its answers report it (the RateLimit-* headers).

The plan's `requestsPerMinute` against the minute counter the track pipeline keeps (events
recorded in the current UTC minute). Reported on every developer-scoped answer; enforcing it
is the track pipeline's business.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from usage_meter.domain import clock
from usage_meter.domain.identity import DeveloperResolver
from usage_meter.errors import UsageMeterError
from usage_meter.models.accounts import Identity, Plan
from usage_meter.models.wire import (
    DEVELOPER_ID_PATTERN,
    EventBatchIn,
    RateLimit,
    RateStatus,
    UsageEventIn,
)
from usage_meter.store import counters as counter_store
from usage_meter.store import keys as store_keys

logger = Logger(child=True)

MINUTE = timedelta(minutes=1)


def seconds_to_next_minute(now: datetime) -> int:
    """Whole seconds until the minute counter starts over (1-60, rounded up)."""
    start = now.replace(second=0, microsecond=0)
    return max(1, math.ceil((start + MINUTE - now).total_seconds()))


def status_of(report: RateLimit, now: datetime) -> RateStatus | None:
    """The status of a rate report (GET /v1/usage's `rateLimit`); None when the plan states
    no requestsPerMinute."""
    if report.requests_per_minute is None:
        return None
    return RateStatus(
        limit=report.requests_per_minute,
        remaining=max(0, report.requests_per_minute - report.current_minute_usage),
        reset=seconds_to_next_minute(now),
    )


def rate_report(plan: Plan | None, developer_id: str, now: datetime) -> RateLimit:
    """The plan's rate and the events recorded in `now`'s minute (one Query)."""
    minute = counter_store.minute_counter(developer_id, store_keys.minute_key(now))
    return RateLimit(
        requests_per_minute=plan.requests_per_minute if plan else None,
        current_minute_usage=minute.events if minute else 0,
    )


def rate_status(resolve: DeveloperResolver, developer_id: str) -> RateStatus | None:
    """Where `developer_id` stands in the current minute: the plan (unless `resolve` already
    read it for this request), then one Query when the plan has a rate."""
    plan = resolve.plan(developer_id)
    if plan is None or plan.requests_per_minute is None:
        return None
    now = clock.now()
    read = resolve.minute_events.get((developer_id, store_keys.minute_key(now)))
    if read is not None:  # read with the usage block, after this request's write
        return status_of(
            RateLimit(requests_per_minute=plan.requests_per_minute, current_minute_usage=read), now
        )
    return status_of(rate_report(plan, developer_id, now), now)


def _named_developer(identity: Identity, body: UsageEventIn | EventBatchIn) -> str | None:
    """The one developer a track request acts for: the key's own, or the one every item of a
    service key's request names (None when they name several, or none that could exist)."""
    if identity.role != "service":
        return identity.developer_id
    items = (
        [body.developer_id] if isinstance(body, UsageEventIn) else [e.get("developerId") for e in body.events]
    )
    named = {item if isinstance(item, str) else "" for item in items}
    if len(named) != 1:
        return None
    (only,) = named
    return only if re.fullmatch(DEVELOPER_ID_PATTERN, only) else None


def track_rate_status(resolve: DeveloperResolver, body: UsageEventIn | EventBatchIn) -> RateStatus | None:
    """The rate status after a track request, read once it is committed (with the profiles and
    plans `resolve` read for the request: one Query more); None when the request is not about
    one developer, or when the read fails: its events are recorded either way, and an answer
    without the headers is better than a 5xx that invites a resend."""
    developer_id = _named_developer(resolve.identity, body)
    if developer_id is None:
        return None
    try:
        return rate_status(resolve, resolve(developer_id))
    except UsageMeterError as exc:
        logger.warning("rate status unavailable after the write", extra={"code": exc.code})
        return None
