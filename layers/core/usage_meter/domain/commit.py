"""Committing packed events: one transaction per part, duplicates and hard limits settled.

Each part commits its idempotency records and combined counter changes in one
TransactWriteItems. A cancelled transaction says why: a key already held (a duplicate, or a
key reused with another payload), a ceiling that would be passed (a hard limit), or
contention; the part is then retried without what was settled, so no event is half-counted
and none is refused while it still fits.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter import jsonutil
from usage_meter.domain import clock
from usage_meter.domain.packing import LimitGroup, PendingEvent, admit, increments
from usage_meter.domain.periods import RETENTION, month_period
from usage_meter.errors import Busy, IdempotencyKeyReused, LimitExceeded, UsageMeterError
from usage_meter.models.records import CounterIncrement, IdempotencyRecord
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import ErrorDetail, EventResult
from usage_meter.store import events as event_store

logger = Logger(child=True)
metrics = Metrics()

MAX_COMMIT_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.4

Sleeper = Callable[[float], None]


def error_detail(exc: UsageMeterError) -> ErrorDetail:
    """A domain error as a batch item's `error`."""
    return ErrorDetail(code=exc.code, message=exc.message, details=exc.details)


class Outcomes:
    """Results by event index, filled as items are refused, commits succeed or find duplicates."""

    def __init__(self) -> None:
        self.results: dict[int, EventResult] = {}

    def refuse(self, index: int, error: ErrorDetail, idempotency_key: str | None = None) -> None:
        """An item refused before it became an event (invalid, or its key blocked)."""
        self.results[index] = EventResult(
            index=index, status="rejected", idempotency_key=idempotency_key, error=error
        )

    def set(
        self, event: PendingEvent, status: str, recorded_at: str | None, error: ErrorDetail | None = None
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


def record(e: PendingEvent, recorded_at: str, expires_at: int) -> IdempotencyRecord:
    """The idempotency record a keyed event commits with."""
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


def backoff(attempt: int) -> float:
    """Full jitter: spreads retries of colliding writers apart."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def settle_duplicate(event: PendingEvent, held: IdempotencyRecord, outcomes: Outcomes) -> None:
    """A key already held: the original outcome for the same payload, a refusal for another."""
    if held.payload_hash == event.payload_hash:
        outcomes.set(event, "duplicate", held.recorded_at)
    else:
        reused = IdempotencyKeyReused("this idempotency key was used for a different event")
        outcomes.set(event, "rejected", None, error_detail(reused))


def refuse_over_limit(events: list[PendingEvent], outcomes: Outcomes) -> None:
    """Refuse events that do not fit their limit; a keyed one that was recorded before is a
    duplicate (its original outcome), not a refusal."""
    for event in events:
        held = (
            event_store.get_record(event.developer_id, event.idempotency_key)
            if event.idempotency_key
            else None
        )
        if held is not None and held.expires_at >= int(clock.now().timestamp()):
            settle_duplicate(event, held, outcomes)
            continue
        period = month_period(event.event_time)
        exceeded = LimitExceeded(
            f"{event.metric} would pass its limit of {jsonutil.number_text(event.hard_limit or Decimal(0))} "
            f"for {period.key}",
        )
        outcomes.set(event, "limit_exceeded", None, error_detail(exceeded))


def _learn(
    cancelled: event_store.CommitCancelled,
    keyed: list[PendingEvent],
    changes: list[CounterIncrement],
    pending: list[PendingEvent],
    known: dict[LimitGroup, Decimal],
    outcomes: Outcomes,
) -> bool:
    """Take what a cancelled commit says: the real values of counters refused at a ceiling, and
    the keys already held (settled and removed from `pending`). True when something was settled
    (retry at once), False for contention (back off first)."""
    for position, consumed in cancelled.over_limit.items():
        change = changes[position]
        known[(change.developer_id, change.key, change.metric)] = consumed
    for position, held in cancelled.duplicates.items():
        event = keyed[position]
        settle_duplicate(event, held, outcomes)
        pending.remove(event)
    if cancelled.duplicates:
        logger.info("duplicates peeled off", extra={"duplicates": len(cancelled.duplicates)})
    return bool(cancelled.duplicates or cancelled.over_limit)


def commit_part(part: list[PendingEvent], outcomes: Outcomes, sleep: Sleeper) -> None:
    """Commit one transaction's worth of events, peeling off duplicates and events over a hard
    limit, and retrying contention.

    Refusals at a limit are settled only after the admitted events are committed: until then an
    admitted event may still turn out to be a duplicate (its room was never used) or be refused
    by DynamoDB (the counter holds more than assumed), and the events it crowded out must be
    judged again. Once a commit succeeds they are final, because counters only grow.
    """
    pending = list(part)
    known: dict[LimitGroup, Decimal] = {}
    for attempt in range(MAX_COMMIT_ATTEMPTS):
        admitted, refused = admit(pending, known)
        if not admitted:
            refuse_over_limit(refused, outcomes)
            return
        now = clock.now()
        recorded_at = format_timestamp(now)
        expires_at = int((now + RETENTION).timestamp())
        keyed = [e for e in admitted if e.idempotency_key]
        changes = increments(admitted, now)
        try:
            event_store.commit_events(
                [record(e, recorded_at, expires_at) for e in keyed],
                changes,
                now_epoch=int(now.timestamp()),
                updated_at=recorded_at,
            )
        except event_store.CommitCancelled as cancelled:
            if not _learn(cancelled, keyed, changes, pending, known, outcomes):
                logger.info("transaction contention, retrying", extra={"attempt": attempt + 1})
                metrics.add_metric(name="TransactionConflicts", unit=MetricUnit.Count, value=1)
                sleep(backoff(attempt))
            continue
        for event in admitted:
            outcomes.set(event, "recorded", recorded_at)
        refuse_over_limit(refused, outcomes)
        return
    logger.warning("commit attempts exhausted", extra={"events": len(pending)})
    busy = Busy("DynamoDB kept refusing the write; retry with the same idempotency keys")
    for event in pending:
        outcomes.set(event, "rejected", None, error_detail(busy))
