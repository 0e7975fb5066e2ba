"""Recording usage events exactly once: the track pipeline.

Every event commits its idempotency record (with the client's key, or one the service made)
and all its counter changes in one TransactWriteItems, or nothing. A request goes through
three steps: its items are checked and claimed (intake), packed into transactions of at most
100 items and committed (packing, commit), and summarised into one result per item, in
order. A single event is the same pipeline with one item, answered with its status and the
usage block.

A request works to the deadline of its Lambda invocation: when no time is left for another
DynamoDB attempt, it answers what it knows. A batch part that cannot be committed leaves its
events (and those of the later parts) `temporarily_unavailable`, while the parts committed
before it stay `recorded`: a batch answers 200 once it is past its request-level checks, and
a 5xx means nothing of the request was counted.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter.domain import clock
from usage_meter.domain.commit import Outcomes, Sleeper, commit_part, unavailable
from usage_meter.domain.identity import DeveloperResolver, require_role
from usage_meter.domain.intake import Intake
from usage_meter.domain.meters import MeterBook
from usage_meter.domain.packing import PendingEvent, chunks
from usage_meter.domain.periods import month_period
from usage_meter.domain.plans import remaining
from usage_meter.domain.ratelimit import seconds_to_next_minute
from usage_meter.domain.verified import StaleAccounts, VerifiedAccounts
from usage_meter.errors import (
    Busy,
    IdempotencyKeyReused,
    LimitExceeded,
    RateLimited,
    UsageMeterError,
    ValidationFailed,
)
from usage_meter.models.accounts import Identity
from usage_meter.models.records import LEVEL_KEY, AccountCheck
from usage_meter.models.timestamps import format_instant
from usage_meter.models.wire import EventBatchIn, EventResult, TrackResponse, UsageBlock, UsageEventIn
from usage_meter.store import catalog, dynamodb, keys
from usage_meter.store import counters as counter_store

logger = Logger(child=True)
metrics = Metrics()

_SINGLE_EVENT_ERRORS: dict[str, type[UsageMeterError]] = {
    "idempotency_key_reused": IdempotencyKeyReused,
    "temporarily_unavailable": Busy,
    "rate_limited": RateLimited,
}


def _check_header_key(body: UsageEventIn | EventBatchIn, header_key: str | None) -> None:
    """The Idempotency-Key header is for a single event, and must agree with its body."""
    if header_key is None:
        return
    if isinstance(body, EventBatchIn):
        raise ValidationFailed(
            "the Idempotency-Key header is for single events; give each batch item its idempotencyKey",
            code="idempotency_header_on_batch",
        )
    if body.idempotency_key not in (None, header_key):
        raise ValidationFailed(
            "idempotencyKey and the Idempotency-Key header differ", code="idempotency_key_mismatch"
        )


def _summarise(results: list[EventResult]) -> TrackResponse:
    """The answer's counts, and the same counts as metrics."""
    response = TrackResponse(
        results=results,
        recorded=sum(1 for r in results if r.status == "recorded"),
        duplicates=sum(1 for r in results if r.status == "duplicate"),
        rejected=sum(1 for r in results if r.status in ("rejected", "limit_exceeded")),
    )
    for name, value in (
        ("EventsRecorded", response.recorded),
        ("EventsDuplicate", response.duplicates),
        ("EventsRejected", sum(1 for r in results if r.status == "rejected")),
        ("EventsLimitExceeded", sum(1 for r in results if r.status == "limit_exceeded")),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return response


def _usage_block(event: PendingEvent, resolve: DeveloperResolver) -> UsageBlock:
    """Where the event's metric stands in the event's billing period, after the write; read
    with the developer's minute counter when its plan states a rate (one BatchGetItem; a
    stated rate keeps that counter on one item), which the rate headers then use."""
    main = (
        [keys.counter_sk("level", LEVEL_KEY, event.metric)]  # where the level stands now
        if event.aggregation == "level"
        else [keys.counter_sk("month", event.period, event.metric, n) for n in range(event.shards)]
    )
    minute = keys.minute_key(clock.now())
    rate = [keys.counter_sk("minute", minute, "*")] if event.rate_stated else []
    read = counter_store.read_counters(event.developer_id, [*main, *rate])
    if event.rate_stated:
        resolve.minute_events[(event.developer_id, minute)] = sum(
            c.events for c in read if c.scope == "minute"
        )
    consumed = sum((c.consumed for c in read if c.scope != "minute"), Decimal(0))
    period = month_period(event.event_time)
    limit = event.allowance.limit if event.allowance else None
    return UsageBlock(
        metric=event.metric,
        consumed=consumed,
        limit=limit,
        remaining=remaining(limit, consumed),
        period_start=format_instant(period.start),
        period_end=format_instant(period.end),
    )


def _run(
    resolve: DeveloperResolver, items: list[Any], *, single: bool, header_key: str | None, sleep: Sleeper
) -> tuple[TrackResponse, list[PendingEvent]]:
    """The pipeline: check and claim every item, commit the events in parts, summarise."""
    outcomes = Outcomes()
    intake = Intake(
        resolve=resolve,
        now=clock.now(),
        single=single,
        header_key=header_key,
        outcomes=outcomes,
        meters=MeterBook(resolve.verified),
    )
    for index, item in enumerate(items):
        intake.take(index, item)
    to_commit = intake.finish()
    checks = resolve.verified.checks if resolve.verified else []
    _commit(to_commit, outcomes, sleep, single=single, checks=checks)
    return _summarise([outcomes.results[i] for i in range(len(items))]), to_commit


def _run_single(
    resolve: DeveloperResolver, body: UsageEventIn, header_key: str | None, sleep: Sleeper
) -> tuple[TrackResponse, PendingEvent]:
    """A single event, judged by the container's copies of its profile, plan and meter, which
    its transaction checks; judged again from fresh reads when a copy proved stale (nothing was
    written) or when the event was refused (a refusal has no transaction to check them by)."""
    verified = VerifiedAccounts()
    resolve.use_copies(verified)
    try:
        response, events = _run(resolve, [body], single=True, header_key=header_key, sleep=sleep)
        if not verified.used or response.results[0].status in ("recorded", "duplicate"):
            return response, events[0]
    except Busy:
        raise
    except StaleAccounts:
        logger.info("an account changed since it was copied: judged again")
    except UsageMeterError:
        if not verified.used:
            raise
    verified.forget()
    resolve.use_copies(None)
    response, events = _run(resolve, [body], single=True, header_key=header_key, sleep=sleep)
    return response, events[0]


def _commit(
    events: list[PendingEvent],
    outcomes: Outcomes,
    sleep: Sleeper,
    *,
    single: bool,
    checks: list[AccountCheck],
) -> None:
    """Commit the events part by part, in order. Once a part cannot finish (DynamoDB kept
    failing, or the deadline came), the later parts are not tried: their events are answered
    temporarily_unavailable beside the recorded ones. A failure nobody foresaw still answers
    per item once anything is recorded, since a 5xx must mean nothing was counted."""
    parts = chunks(events, catalog.catalogued)
    for position, part in enumerate(parts):
        try:
            finished = commit_part(part, outcomes, sleep, checks)
        except (Busy, StaleAccounts):
            if single:
                raise
            finished = False
        except Exception:
            if single or not any(r.status == "recorded" for r in outcomes.results.values()):
                raise
            logger.exception("commit failed after part of the request was recorded")
            finished = False
        if not finished:
            rest = [e for p in parts[position:] for e in p if e.index not in outcomes.results]
            unavailable(rest, outcomes)
            return


def _answer_single(response: TrackResponse, event: PendingEvent, resolve: DeveloperResolver) -> TrackResponse:
    """A single event's answer: its refusal raised with its status, else the usage block."""
    only = response.results[0]
    if only.status == "rejected" and only.error is not None:
        error_class = _SINGLE_EVENT_ERRORS.get(only.error.code, ValidationFailed)
        error = error_class(only.error.message, code=only.error.code)
        if isinstance(error, RateLimited):  # the answer says when the rate starts over
            error.retry_after = seconds_to_next_minute(clock.now())
            error.requests_per_minute = event.rate_ceiling
        raise error
    try:
        usage: UsageBlock | None = _usage_block(event, resolve)
    except Busy:
        # the event is recorded; failing the answer now would make a keyless client count
        # it twice on retry, so the usage block is left out instead
        logger.warning("usage block unavailable after the write")
        usage = None
    if only.status == "limit_exceeded" and only.error is not None:
        # a period's limit resets with the period; a level's ceiling does not reset
        reset = month_period(event.event_time).end if event.aggregation != "level" else clock.now()
        wait = math.ceil((reset - clock.now()).total_seconds())
        raise LimitExceeded(
            only.error.message,
            retry_after=wait if wait > 0 else None,
            extra={"usage": usage.wire() if usage else None},
        )
    response.usage = usage
    return response


def track(
    identity: Identity,
    body: UsageEventIn | EventBatchIn,
    *,
    header_key: str | None = None,
    sleep: Sleeper = time.sleep,
    time_left_ms: int | None = None,
    resolve: DeveloperResolver | None = None,
) -> TrackResponse:
    """Record one event or a batch; every event gets a result, in order.

    Raises UsageMeterError (422/403/409/429/503) for a single event that fails; a batch never
    raises for a bad item, it reports it. `time_left_ms` is what the Lambda invocation has
    left (None: no deadline); the DynamoDB work keeps a safety margin inside it. `resolve`
    (for `identity`) lets the caller reuse the profiles and plans read here.
    """
    require_role(identity, "service", "tracking")
    resolve = resolve or DeveloperResolver(identity)
    _check_header_key(body, header_key)
    deadline = None if time_left_ms is None else dynamodb.Deadline.within(time_left_ms)
    with dynamodb.working_to(deadline):
        if isinstance(body, EventBatchIn):
            response, _ = _run(resolve, list(body.events), single=False, header_key=None, sleep=sleep)
            return response
        response, event = _run_single(resolve, body, header_key, sleep)
        return _answer_single(response, event, resolve)
