"""Committing packed events: one transaction per part, duplicates, limits and rates settled.

Each part commits its idempotency records, combined counter changes and metric catalog
claims in one TransactWriteItems. A cancelled transaction says why: a key already held (a
duplicate, or a key reused with another payload), a ceiling that would be passed (a hard
limit, an enforced rate), a catalog that is full or already holds a metric, or contention;
the part is then rebuilt without what was settled, so no event is half-counted and none is
refused while it still fits. A transaction whose answer was lost (a timeout, a
5xx, TransactionInProgressException) may have been applied: it is retried unchanged, with
its ClientRequestToken and item values, so DynamoDB applies it at most once, and when no
retry is left its outcome is read back. Every attempt keeps to the request's deadline.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter import jsonutil
from usage_meter.domain import alerts, clock
from usage_meter.domain.dimensions import OTHER
from usage_meter.domain.packing import (
    MAX_UNDECLARED_METRICS,
    Known,
    PendingEvent,
    Refusal,
    RefusalReason,
    admit,
    combination_claims,
    group_increments,
    increments,
    metric_claims,
    unique_markers,
)
from usage_meter.domain.periods import RETENTION, month_period
from usage_meter.domain.verified import StaleAccounts
from usage_meter.errors import (
    Busy,
    IdempotencyKeyReused,
    LimitExceeded,
    RateLimited,
    TooManyMetrics,
    UsageMeterError,
    ValidationFailed,
)
from usage_meter.models.records import (
    AccountCheck,
    CombinationClaim,
    CounterIncrement,
    GroupIncrement,
    IdempotencyRecord,
    MetricClaim,
    UniqueMarker,
)
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import ErrorDetail, EventResult
from usage_meter.settings import settings
from usage_meter.store import catalog
from usage_meter.store import events as event_store
from usage_meter.store.keys import minute_key, spread_of

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


def record(e: PendingEvent, recorded_at: str, expires_at: int, token: str) -> IdempotencyRecord:
    """The idempotency record an event commits with, marked with its transaction's token."""
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
        commit_token=token,
        dimensions=e.counted_as,
        counter_shard=e.shard if e.shards > 1 else None,
        minute_shard=e.minute_shard,
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


def _refusal(event: PendingEvent, reason: RefusalReason) -> tuple[str, UsageMeterError]:
    """The status and error of an event that does not fit."""
    if reason == "limit":
        limit = jsonutil.number_text(event.hard_limit or Decimal(0))
        if event.aggregation == "level":
            return "limit_exceeded", LimitExceeded(f"{event.metric} would pass its ceiling of {limit}")
        period = month_period(event.event_time)
        return "limit_exceeded", LimitExceeded(
            f"{event.metric} would pass its limit of {limit} for {period.key}"
        )
    if reason == "floor":
        return "rejected", ValidationFailed(
            f"{event.metric} is a level that never goes below zero: a change of "
            f"{jsonutil.number_text(event.quantity)} would take it there",
            code="level_below_zero",
        )
    if reason == "metrics":
        return "rejected", TooManyMetrics(
            f"{event.developer_id} already uses {MAX_UNDECLARED_METRICS} metrics its plan does not "
            f"declare; {event.metric} would be one more (declare it in the plan, or use a metric "
            "already in use)"
        )
    return "rejected", RateLimited(
        f"the plan allows {event.rate_ceiling} events a minute for {event.developer_id}; "
        "retry in the next minute"
    )


def refuse(refused: list[Refusal], outcomes: Outcomes) -> None:
    """Refuse events that do not fit; a keyed one that was recorded before is a duplicate (its
    original outcome), not a refusal."""
    for event, reason in refused:
        # a key the service made for this request was never held by anyone
        held = None if event.key_made else event_store.get_record(event.developer_id, event.idempotency_key)
        if held is not None and held.expires_at >= int(clock.now().timestamp()):
            settle_duplicate(event, held, outcomes)
            continue
        status, error = _refusal(event, reason)
        if reason == "limit":
            flag_refusal(event)
        outcomes.set(event, status, None, error_detail(error))


_flagged: set[tuple[str, str, str]] = set()
"""(developer, month, metric) whose first refusal this container already flagged."""


def flag_refusal(event: PendingEvent) -> None:
    """The period's first hard-limit refusal raises usage.limit.reached (through the stream):
    a conditional put, made once per container and period."""
    seen = (event.developer_id, month_period(event.event_time).key, event.metric)
    if seen in _flagged:
        return
    try:
        alerts.refused_at_limit(
            event.developer_id, event.metric, event.event_time, event.hard_limit or Decimal(0)
        )
    except Busy:  # the refusal stands; the period's next refusal puts the flag
        logger.warning("refusal flag not written", extra={"developer_id": event.developer_id})
        return
    _flagged.add(seen)


@dataclass
class Transaction:
    """One TransactWriteItems as built, kept unchanged (token, times, items) until its outcome
    is known: a retry after a lost answer must be the very same request."""

    admitted: list[PendingEvent]
    refused: list[Refusal]  # proposed refusals, final once this commits
    records: list[IdempotencyRecord]
    changes: list[CounterIncrement]
    claims: list[MetricClaim]
    markers: list[UniqueMarker]
    groups: list[GroupIncrement]
    combinations: list[CombinationClaim]
    checks: list[AccountCheck]  # the accounts its events were judged by, from the container's copies
    token: str
    now_epoch: int
    recorded_at: str
    in_doubt: bool = False  # an attempt may have been applied although no answer said so

    def commit(self) -> None:
        event_store.commit_events(
            self.records,
            self.changes,
            self.claims,
            self.markers,
            self.groups,
            self.combinations,
            self.checks,
            token=self.token,
            now_epoch=self.now_epoch,
            updated_at=self.recorded_at,
        )

    def settle(self, outcomes: Outcomes) -> None:
        """It was applied: its events are recorded, its proposed refusals final, its metrics
        in their catalogs (the request's later parts must not claim them again)."""
        for claim in self.claims:
            catalog.learn(claim.developer_id, claim.metrics)
        for event in self.admitted:
            outcomes.set(event, "recorded", self.recorded_at)
        refuse(self.refused, outcomes)
        overflowed = [g for g in self.groups if OTHER in g.values.values()]
        for g in overflowed:
            logger.warning(
                "dimension combinations past the bound counted under (other)",
                extra={"developer_id": g.developer_id, "metric": g.metric, "day": g.day, "events": g.events},
            )
            metrics.add_metric(name="DimensionOverflow", unit=MetricUnit.Count, value=g.events)


def build(
    pending: list[PendingEvent], known: Known, checks: list[AccountCheck]
) -> tuple[Transaction | None, list[Refusal]]:
    """The transaction of the pending events that fit (None if none fits): a new token, now's
    times; and the refusals proposed."""
    now = clock.now()
    spread = spread_of(pending[0].idempotency_key) if pending else 0
    for event in pending:
        event.spread(spread)
    admitted, refused = admit(pending, known, minute_key(now), catalog.catalogued)
    if not admitted:
        return None, refused
    recorded_at = format_timestamp(now)
    expires_at = int((now + RETENTION).timestamp())
    token = str(uuid.uuid4())
    groups = group_increments(admitted, known)
    return Transaction(
        admitted=admitted,
        refused=refused,
        records=[record(e, recorded_at, expires_at, token) for e in admitted],
        changes=increments(
            admitted, now, known, exact={e.level_group for e, _ in refused if e.aggregation == "level"}
        ),
        claims=metric_claims(admitted, catalog.catalogued),
        markers=unique_markers(admitted),
        groups=groups,
        combinations=combination_claims(groups, known.cardinality),
        checks=checks,
        token=token,
        now_epoch=int(now.timestamp()),
        recorded_at=recorded_at,
    ), refused


def _learn(
    cancelled: event_store.CommitCancelled,
    tx: Transaction,
    pending: list[PendingEvent],
    known: Known,
    outcomes: Outcomes,
    ours: set[str],
) -> bool:
    """Take what a cancelled commit says: the real values of counters refused at a ceiling, the
    metrics already catalogued and the catalogs that are full (read again whole, so that a
    metric already in one is not refused), and the keys already held (settled and removed
    from `pending`): `recorded` when the holder is a transaction of this request (`ours`:
    applied by an attempt whose answer was lost), else the original outcome. True when
    something was learned (retry at once), False for contention (back off first)."""
    for position, consumed in cancelled.over_limit.items():
        change = tx.changes[position]
        known.counters[(change.developer_id, change.key, change.metric)] = consumed
        if position in cancelled.latest_keys:
            known.latest[(change.developer_id, change.key, change.metric)] = cancelled.latest_keys[position]
    known.seen.update((m.developer_id, m.scope, m.window, m.metric, m.digest) for m in cancelled.seen)
    for position in cancelled.groups_flipped:  # a combination is new, or was created meanwhile
        g = tx.groups[position]
        known.absent.symmetric_difference_update({(g.developer_id, g.metric, g.day, g.digest)})
    for position, stored in cancelled.combinations.items():
        c = tx.combinations[position]
        known.combinations[(c.developer_id, c.metric, c.day)] = stored
    for developer_id, metric in cancelled.catalogued:
        catalog.learn(developer_id, [metric])
    for developer_id, size in cancelled.catalog_sizes.items():
        known.catalog_sizes[developer_id] = size
        catalog.load(developer_id)
    for position, held in cancelled.duplicates.items():
        event = tx.admitted[position]
        if held.commit_token in ours:
            outcomes.set(event, "recorded", held.recorded_at)
        else:
            settle_duplicate(event, held, outcomes)
        pending.remove(event)
    if cancelled.duplicates:
        logger.info("duplicates peeled off", extra={"duplicates": len(cancelled.duplicates)})
    return bool(
        cancelled.duplicates
        or cancelled.over_limit
        or cancelled.catalogued
        or cancelled.catalog_sizes
        or cancelled.seen
        or cancelled.groups_flipped
        or cancelled.combinations
    )


def commit_part(
    part: list[PendingEvent], outcomes: Outcomes, sleep: Sleeper, checks: Sequence[AccountCheck] = ()
) -> bool:
    """Commit one transaction's worth of events, peeling off duplicates and events that do not
    fit (a hard limit, an enforced rate, a full catalog), and retrying contention and lost
    answers; False when it could not finish (its unsettled events are answered
    temporarily_unavailable).

    Refusals are settled only after the admitted events are committed: until then an admitted
    event may still turn out to be a duplicate (its room was never used) or be refused by
    DynamoDB (the counter holds more than assumed), and the events it crowded out must be
    judged again. Once a commit succeeds they are final, because what they were judged by only
    grows: a period's counter, the transaction's minute counter, a catalog.
    Only a cancellation (nothing applied) rebuilds the transaction; any other failure retries
    it unchanged. `checks` (the accounts the events were judged by, taken from the container's
    copies) go in every transaction; one that fails raises StaleAccounts, with nothing written.
    """
    pending = list(part)
    known = Known(cardinality=settings().dimension_cardinality)
    ours: set[str] = set()
    tx: Transaction | None = None
    for attempt in range(MAX_COMMIT_ATTEMPTS):
        if not event_store.time_to_commit():
            break
        if tx is None:
            tx, refused = build(pending, known, list(checks))
            if tx is None:  # nothing fits: the refusals are final
                refuse(refused, outcomes)
                return True
            ours.add(tx.token)
        try:
            tx.commit()
        except event_store.CommitCancelled as cancelled:
            learned = _learn(cancelled, tx, pending, known, outcomes, ours)
            if cancelled.stale and pending:
                raise StaleAccounts("an account changed since the container copied it") from cancelled
            if not learned:
                logger.info("transaction contention, retrying", extra={"attempt": attempt + 1})
                metrics.add_metric(name="TransactionConflicts", unit=MetricUnit.Count, value=1)
                sleep(backoff(attempt))
            tx = None
            continue
        except event_store.CommitInDoubt as doubt:
            tx.in_doubt = tx.in_doubt or doubt.maybe_applied
            logger.info("transaction outcome unknown, retrying it unchanged", extra={"in_doubt": tx.in_doubt})
            if doubt.out_of_time:
                break
            sleep(backoff(attempt))
            continue
        tx.settle(outcomes)
        return True
    if tx is not None and tx.in_doubt and event_store.written_by(tx.records[0], tx.token):
        tx.settle(outcomes)  # the answer was lost, the write was not
        return True
    logger.warning(
        "commit not finished", extra={"events": len(pending), "in_doubt": bool(tx and tx.in_doubt)}
    )
    unavailable(pending, outcomes)
    return False


def unavailable(events: list[PendingEvent], outcomes: Outcomes) -> None:
    """Answer events temporarily_unavailable: resent with the same key (the one in their
    result, for an event sent without one) they are counted once."""
    busy = Busy(
        "DynamoDB did not confirm the write in time; resend with the same idempotency key "
        "(the idempotencyKey of this result for an event sent without one)"
    )
    for event in events:
        outcomes.set(event, "rejected", None, error_detail(busy))
