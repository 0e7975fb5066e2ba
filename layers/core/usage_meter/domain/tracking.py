"""Recording usage events exactly once.

An event with an idempotency key commits its idempotency record and all its counter changes
in one TransactWriteItems, or nothing. A batch is validated item by item, deduplicated in
memory, its counter changes combined per (day, metric) and (billing period, metric), and
split into transactions of at most 100 items so that no event is ever half-counted.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from usage_meter import clock, dal, jsonutil
from usage_meter.errors import Busy, IdempotencyKeyReused, LimitExceeded, UsageMeterError, ValidationFailed
from usage_meter.identity import DeveloperResolver
from usage_meter.models import (
    CounterIncrement,
    CounterScope,
    ErrorDetail,
    EventBatchIn,
    EventResult,
    IdempotencyRecord,
    Identity,
    MetricLimit,
    TrackResponse,
    UsageBlock,
    UsageEventIn,
)
from usage_meter.periods import day_key, format_instant, format_timestamp, month_key, month_period
from usage_meter.plans import metric_limit, remaining

logger = Logger(child=True)
metrics = Metrics()

MAX_TRANSACTION_ITEMS = 100
BACKDATE_WINDOW = timedelta(days=35)
FUTURE_TOLERANCE = timedelta(minutes=5)
# Keys are kept for the backdating window plus one day, so a retry of the oldest event that
# may still be accepted is still recognised.
IDEMPOTENCY_RETENTION = BACKDATE_WINDOW + timedelta(days=1)
MAX_COMMIT_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.4
MINUTE_COUNTER_TTL = timedelta(hours=1)

Sleeper = Callable[[float], None]


@dataclass(eq=False)  # identity, not field equality: two unkeyed events may be alike
class _Event:
    """A validated event, ready to commit."""

    index: int
    developer_id: str
    metric: str
    quantity: Decimal
    event_time: datetime
    idempotency_key: str | None
    payload_hash: str
    metadata: dict[str, Any] | None
    allowance: MetricLimit | None = None  # the plan's limit for this metric, if any
    followers: list[int] = field(default_factory=list)  # in-batch duplicates of this event

    @property
    def hard_limit(self) -> Decimal | None:
        a = self.allowance
        return a.limit if a is not None and a.enforcement == "hard" and a.limit is not None else None

    @property
    def limit_group(self) -> tuple[str, str, str]:
        return (self.developer_id, self.period, self.metric)

    @property
    def day(self) -> str:
        return day_key(self.event_time)

    @property
    def period(self) -> str:
        return month_key(self.event_time)


def _sorted_keys(value: Any) -> Any:
    """Metadata with its object keys sorted at every level: key order is not part of the payload."""
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def payload_hash(developer_id: str, event: UsageEventIn) -> str:
    """What makes two events with one key "the same": everything the client chose to send.

    A defaulted timestamp is left out, so a retry of an event sent without one is a duplicate,
    not a conflict. Quantities are normalized (1.50 == 1.5).
    """
    canonical = {
        "developerId": developer_id,
        "metric": event.metric,
        "quantity": jsonutil.number_text(event.quantity),
        "timestamp": format_timestamp(event.timestamp) if event.timestamp else None,
        "metadata": _sorted_keys(event.metadata),
    }
    return hashlib.sha256(jsonutil.dumps(canonical).encode()).hexdigest()


def _error(exc: UsageMeterError) -> ErrorDetail:
    return ErrorDetail(code=exc.code, message=exc.message, details=exc.details)


def validation_error_detail(exc: ValidationError) -> ErrorDetail:
    """A pydantic error as our error body: the field paths in the message and in details."""
    details = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return ErrorDetail(code="validation_error", message=message, details=details)


def _check_time(event: UsageEventIn, now: datetime) -> datetime:
    moment = event.timestamp or now
    if moment < now - BACKDATE_WINDOW:
        raise ValidationFailed("timestamp is more than 35 days old", code="timestamp_out_of_range")
    if moment > now + FUTURE_TOLERANCE:
        raise ValidationFailed(
            "timestamp is more than 5 minutes in the future", code="timestamp_out_of_range"
        )
    return moment


def _prepare(
    index: int, event: UsageEventIn, resolve: DeveloperResolver, now: datetime, header_key: str | None
) -> _Event:
    developer_id = resolve(event.developer_id)
    key = event.idempotency_key or header_key
    return _Event(
        index=index,
        developer_id=developer_id,
        metric=event.metric,
        quantity=event.quantity,
        event_time=_check_time(event, now),
        idempotency_key=key,
        payload_hash=payload_hash(developer_id, event),
        metadata=event.metadata,
    )


def _transaction_cost(events: Sequence[_Event]) -> int:
    """Items of one transaction: records, combined day and month counters, one minute counter
    per developer."""
    keyed = sum(1 for e in events if e.idempotency_key)
    counters = (
        {("D", e.developer_id, e.day, e.metric) for e in events}
        | {("M", e.developer_id, e.period, e.metric) for e in events}
        | {("R", e.developer_id, "", "") for e in events}
    )
    return keyed + len(counters)


def _chunks(events: Sequence[_Event]) -> list[list[_Event]]:
    """Pack events, in order, into transactions of at most 100 items (records + combined counters)."""
    chunks: list[list[_Event]] = []
    current: list[_Event] = []
    for event in events:
        if current and _transaction_cost([*current, event]) > MAX_TRANSACTION_ITEMS:
            chunks.append(current)
            current = []
        current.append(event)
    if current:
        chunks.append(current)
    return chunks


def _increments(events: Sequence[_Event], now: datetime) -> list[CounterIncrement]:
    """Combine the counter changes of events that hit the same counter item (a transaction may
    touch an item once). A month counter under a hard limit carries the limit as its ceiling;
    each developer's minute counter counts the events recorded in this minute."""
    totals: dict[tuple[str, CounterScope, str, str], tuple[Decimal, int]] = {}
    ceilings: dict[tuple[str, CounterScope, str, str], Decimal] = {}
    minute = now.strftime("%Y-%m-%dT%H:%M")
    for e in events:
        slots: list[tuple[str, CounterScope, str, str, Decimal]] = [
            (e.developer_id, "day", e.day, e.metric, e.quantity),
            (e.developer_id, "month", e.period, e.metric, e.quantity),
            (e.developer_id, "minute", minute, "*", Decimal(1)),
        ]
        for developer_id, scope, key, metric, quantity in slots:
            slot = (developer_id, scope, key, metric)
            total, count = totals.get(slot, (Decimal(0), 0))
            totals[slot] = (total + quantity, count + 1)
            if scope == "month" and e.hard_limit is not None:
                ceilings[slot] = e.hard_limit
    minute_expiry = int((now + MINUTE_COUNTER_TTL).timestamp())
    return [
        CounterIncrement(
            developer_id=d,
            scope=s,
            key=k,
            metric=m,
            quantity=q,
            events=n,
            ceiling=ceilings.get((d, s, k, m)),
            expires_at=minute_expiry if s == "minute" else None,
        )
        for (d, s, k, m), (q, n) in totals.items()
    ]


def _admit(
    pending: list[_Event], known: dict[tuple[str, str, str], Decimal]
) -> tuple[list[_Event], list[_Event]]:
    """(admitted, refused): the events, taken in order, that fit their hard limit given what the
    counters are known to hold and the room the earlier admitted events take, and those that do
    not.

    `known` starts empty (optimistic: DynamoDB's condition is the judge) and learns the real
    value from each transaction refused at a ceiling. An event that does not fit is refused
    whole; a later, smaller one may still fit. The refusal is only a proposal: it is final once
    the events admitted before it are committed (see _commit_chunk).
    """
    room_used: dict[tuple[str, str, str], Decimal] = {}
    admitted: list[_Event] = []
    refused: list[_Event] = []
    for event in pending:
        limit = event.hard_limit
        if limit is not None:
            group = event.limit_group
            used = known.get(group, Decimal(0)) + room_used.get(group, Decimal(0))
            if used + event.quantity > limit:
                refused.append(event)
                continue
            room_used[group] = room_used.get(group, Decimal(0)) + event.quantity
        admitted.append(event)
    return admitted, refused


def _record(e: _Event, recorded_at: str, expires_at: int) -> IdempotencyRecord:
    assert e.idempotency_key is not None
    return IdempotencyRecord(
        developer_id=e.developer_id,
        idempotency_key=e.idempotency_key,
        payload_hash=e.payload_hash,
        metric=e.metric,
        quantity=e.quantity,
        event_time=format_timestamp(e.event_time),
        day=e.day,
        period=e.period,
        recorded_at=recorded_at,
        expires_at=expires_at,
        metadata=e.metadata,
    )


def _backoff(attempt: int) -> float:
    """Full jitter: spreads retries of colliding writers apart."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


class _Outcomes:
    """Results by event index, filled as commits succeed or find duplicates."""

    def __init__(self) -> None:
        self.results: dict[int, EventResult] = {}

    def set(
        self, event: _Event, status: str, recorded_at: str | None, error: ErrorDetail | None = None
    ) -> None:
        for index in (event.index, *event.followers):
            # an in-batch follower is a duplicate of its leader's outcome
            follower_status = "duplicate" if index != event.index and status == "recorded" else status
            self.results[index] = EventResult(
                index=index,
                status=follower_status,
                idempotency_key=event.idempotency_key,
                recorded_at=recorded_at,
                error=error,
            )


def _refuse_over_limit(events: list[_Event], outcomes: _Outcomes) -> None:
    """Refuse events that do not fit their limit; a keyed one that was recorded before is a
    duplicate (its original outcome), not a refusal."""
    for event in events:
        held = dal.get_record(event.developer_id, event.idempotency_key) if event.idempotency_key else None
        if held is not None and held.expires_at >= int(clock.now().timestamp()):
            _settle_duplicate(event, held, outcomes)
            continue
        period = month_period(event.event_time)
        exceeded = LimitExceeded(
            f"{event.metric} would pass its limit of {jsonutil.number_text(event.hard_limit or Decimal(0))} "
            f"for {period.key}",
        )
        outcomes.set(event, "limit_exceeded", None, _error(exceeded))


def _commit_chunk(chunk: list[_Event], outcomes: _Outcomes, sleep: Sleeper) -> None:
    """Commit one transaction's worth of events, peeling off duplicates and events over a hard
    limit, and retrying contention.

    Refusals at a limit are settled only after the admitted events are committed: until then an
    admitted event may still turn out to be a duplicate (its room was never used) or be refused
    by DynamoDB (the counter holds more than assumed), and the events it crowded out must be
    judged again. Once a commit succeeds they are final, because counters only grow.
    """
    pending = list(chunk)
    known: dict[tuple[str, str, str], Decimal] = {}
    for attempt in range(MAX_COMMIT_ATTEMPTS):
        admitted, refused = _admit(pending, known)
        if not admitted:
            _refuse_over_limit(refused, outcomes)
            return
        now = clock.now()
        recorded_at = format_timestamp(now)
        expires_at = int((now + IDEMPOTENCY_RETENTION).timestamp())
        keyed = [e for e in admitted if e.idempotency_key]
        increments = _increments(admitted, now)
        try:
            dal.commit_events(
                [_record(e, recorded_at, expires_at) for e in keyed],
                increments,
                now_epoch=int(now.timestamp()),
                updated_at=recorded_at,
            )
        except dal.CommitCancelled as cancelled:
            for position, consumed in cancelled.over_limit.items():
                inc = increments[position]
                known[(inc.developer_id, inc.key, inc.metric)] = consumed
            if cancelled.duplicates:
                for position, held in cancelled.duplicates.items():
                    event = keyed[position]
                    _settle_duplicate(event, held, outcomes)
                    pending.remove(event)
                logger.info("duplicates peeled off", extra={"duplicates": len(cancelled.duplicates)})
            if cancelled.duplicates or cancelled.over_limit:
                continue  # no wait: what blocked this attempt is settled, not contended
            logger.info("transaction contention, retrying", extra={"attempt": attempt + 1})
            metrics.add_metric(name="TransactionConflicts", unit=MetricUnit.Count, value=1)
            sleep(_backoff(attempt))
            continue
        for event in admitted:
            outcomes.set(event, "recorded", recorded_at)
        _refuse_over_limit(refused, outcomes)
        return
    logger.warning("commit attempts exhausted", extra={"events": len(pending)})
    busy = Busy("DynamoDB kept refusing the write; retry with the same idempotency keys")
    for event in pending:
        outcomes.set(event, "rejected", None, _error(busy))


def _settle_duplicate(event: _Event, held: IdempotencyRecord, outcomes: _Outcomes) -> None:
    if held.payload_hash == event.payload_hash:
        outcomes.set(event, "duplicate", held.recorded_at)
    else:
        reused = IdempotencyKeyReused("this idempotency key was used for a different event")
        outcomes.set(event, "rejected", None, _error(reused))


def _usage_block(event: _Event) -> UsageBlock:
    """Where the event's metric stands in the event's billing period, after the write."""
    counter = dal.month_counter(event.developer_id, event.period, event.metric)
    consumed = counter.consumed if counter else Decimal(0)
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


_SINGLE_EVENT_ERRORS: dict[str, type[UsageMeterError]] = {
    "idempotency_key_reused": IdempotencyKeyReused,
    "temporarily_unavailable": Busy,
}


def track(
    identity: Identity,
    body: UsageEventIn | EventBatchIn,
    *,
    header_key: str | None = None,
    sleep: Sleeper = time.sleep,
) -> TrackResponse:
    """Record one event or a batch; every event gets a result, in order.

    Raises UsageMeterError (422/403/409/503) for a single event that fails; a batch never
    raises for a bad item, it reports it.
    """
    now = clock.now()
    single = isinstance(body, UsageEventIn)
    if header_key is not None:
        if not single:
            raise ValidationFailed(
                "the Idempotency-Key header is for single events; give each batch item its idempotencyKey",
                code="idempotency_header_on_batch",
            )
        if body.idempotency_key not in (None, header_key):  # type: ignore[union-attr]
            raise ValidationFailed(
                "idempotencyKey and the Idempotency-Key header differ", code="idempotency_key_mismatch"
            )
    raw: list[Any] = [body] if single else list(body.events)  # type: ignore[union-attr]
    outcomes = _Outcomes()
    resolve = DeveloperResolver(identity)
    leaders: dict[tuple[str, str], _Event] = {}
    to_commit: list[_Event] = []
    unavailable: list[tuple[_Event, ErrorDetail]] = []

    # (developer asked for, key) of items that failed transiently: a later item with the same key
    # must not take their place, since the earlier one may be the event the client meant
    blocked: dict[tuple[str | None, str], ErrorDetail] = {}
    for index, item in enumerate(raw):
        event_in: UsageEventIn | None = None
        try:
            event_in = item if isinstance(item, UsageEventIn) else UsageEventIn.model_validate(item)
            claim = (event_in.developer_id, event_in.idempotency_key or header_key or "")
            if claim[1] and claim in blocked:
                outcomes.results[index] = EventResult(
                    index=index, status="rejected", idempotency_key=claim[1], error=blocked[claim]
                )
                continue
            event = _prepare(index, event_in, resolve, now, header_key if single else None)
        except ValidationError as exc:
            if single:
                raise
            outcomes.results[index] = EventResult(
                index=index, status="rejected", error=validation_error_detail(exc)
            )
            continue
        except UsageMeterError as exc:
            if single:
                raise
            detail = _error(exc)
            if isinstance(exc, Busy) and event_in is not None and event_in.idempotency_key:
                blocked[(event_in.developer_id, event_in.idempotency_key)] = detail
            outcomes.results[index] = EventResult(index=index, status="rejected", error=detail)
            continue
        if event.idempotency_key:
            slot = (event.developer_id, event.idempotency_key)
            leader = leaders.get(slot)
            if leader is not None:
                if leader.payload_hash == event.payload_hash:
                    leader.followers.append(index)
                else:
                    reused = IdempotencyKeyReused(
                        "this idempotency key was used for a different event in the same batch"
                    )
                    outcomes.results[index] = EventResult(
                        index=index,
                        status="rejected",
                        idempotency_key=event.idempotency_key,
                        error=_error(reused),
                    )
                continue
            leaders[slot] = event
        # the plan is read after the key is claimed: if the read fails, a later item with the
        # same key still compares against this one instead of taking its place
        try:
            event.allowance = metric_limit(resolve.plan(event.developer_id), event.metric)
        except UsageMeterError as exc:
            if single:
                raise
            unavailable.append((event, _error(exc)))
            continue
        to_commit.append(event)

    for event, error in unavailable:  # after the loop, so in-batch followers are included
        outcomes.set(event, "rejected", None, error)
    for chunk in _chunks(to_commit):
        _commit_chunk(chunk, outcomes, sleep)

    results = [outcomes.results[i] for i in range(len(raw))]
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
    if single:
        only = results[0]
        if only.status == "rejected" and only.error is not None:
            error_class = _SINGLE_EVENT_ERRORS.get(only.error.code, ValidationFailed)
            raise error_class(only.error.message, code=only.error.code)
        try:
            usage: UsageBlock | None = _usage_block(to_commit[0])
        except Busy:
            # the event is recorded; failing the answer now would make a keyless client count
            # it twice on retry, so the usage block is left out instead
            logger.warning("usage block unavailable after the write")
            usage = None
        if only.status == "limit_exceeded" and only.error is not None:
            period_end = month_period(to_commit[0].event_time).end
            wait = math.ceil((period_end - clock.now()).total_seconds())
            raise LimitExceeded(
                only.error.message,
                retry_after=wait if wait > 0 else None,
                extra={"usage": usage.wire() if usage else None},
            )
        response.usage = usage
    return response
