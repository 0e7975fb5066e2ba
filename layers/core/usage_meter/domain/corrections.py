"""Corrections: cancel or amend a recorded event, exactly once, for as long as its record is kept.

A correction commits in one TransactWriteItems: the record's new revision (conditioned on the
revision it read, so concurrent corrections of one event serialize: the loser reads again and
finds the event cancelled, or amends the amended one) and every counter change it implies.
What an event moved is what packing says it moves (`contribution_slots`): its day and month
counters, a level's running level, the minute counter while its minute lasts, its dimension
combination's day counter (the combination is kept on the record), a unique_count meter's
value markers. An amendment takes the old contribution out and puts the new one in.

Sums, counts and levels move by the difference. A max, a latest value or a distinct count is
recomputed for its window from what remains:

- the day: from the day's other events, read through the event log (16 index Queries, keys
  only) and then from the table itself (BatchGetItem, strongly consistent); their number must
  equal the day counter's events, else the index is behind and the correction tries again;
- the month: from the month's day counters (one Query) for max and latest, and from the
  month's day markers of the value (one Query) for a distinct count;
- and only when needed: a max that is not the day's peak, or a latest value that is not the
  day's latest, moves no figure.

The counters of a recomputed window are asserted (events, consumed, latest key) as read, so a
track or a correction landing in between cancels the transaction, which is retried with fresh
reads (at most MAX_ATTEMPTS times, then 503 temporarily_unavailable). A cancellation gives
room back under a hard limit; an amendment that would take a hard-limited period past its limit
is refused (limit_exceeded), and a level is never taken below zero or past its ceiling.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter import jsonutil
from usage_meter.domain import clock, lifecycle
from usage_meter.domain import dimensions as dims
from usage_meter.domain.commit import backoff
from usage_meter.domain.eventlog import event_out
from usage_meter.domain.identity import DeveloperResolver, require_role
from usage_meter.domain.meters import MeterBook, contribution, unique_value
from usage_meter.domain.packing import PendingEvent, contribution_slots, unique_markers
from usage_meter.domain.periods import RETENTION, day_key, month_period
from usage_meter.domain.plans import metric_limit
from usage_meter.errors import Busy, Conflict, LimitExceeded, NotFound, ValidationFailed
from usage_meter.models.accounts import Identity, Meter
from usage_meter.models.records import (
    CombinationClaim,
    Counter,
    CounterCorrection,
    CounterScope,
    GroupIncrement,
    IdempotencyRecord,
    Revision,
    UniqueMarker,
)
from usage_meter.models.timestamps import format_timestamp, parse_rfc3339
from usage_meter.models.wire import AmendIn, CancelIn, CorrectionResponse, CorrectionStatus
from usage_meter.settings import settings
from usage_meter.store import counters as counter_store
from usage_meter.store import eventlog as log_store
from usage_meter.store import events as event_store
from usage_meter.store import groups as group_store
from usage_meter.store import keys
from usage_meter.store.keys import minute_key

logger = Logger(child=True)
metrics = Metrics()

MAX_REVISIONS = 20
"""Corrections one event takes: its record keeps them all, and stays well under 400 KB."""
MAX_ATTEMPTS = 8
IN_DOUBT_RETRIES = 2

Sleeper = Callable[[float], None]


class _Behind(Exception):
    """The event log's index does not list every event of a window yet: read again."""


def event_not_found(key: str) -> NotFound:
    """The one answer for an unknown, expired or other developer's key (no hint which)."""
    return NotFound(f"no event with idempotency key {key} in the retention window", code="event_not_found")


# ---- one version of the event: what it contributes -------------------------------------------


def _version(
    record: IdempotencyRecord, meter: Meter | None, quantity: Decimal, metadata: Any
) -> PendingEvent:
    """The event as packing sees it, with `quantity` (its contribution) and `metadata`."""
    aggregation = meter.aggregation if meter else "sum"
    unique = unique_value(meter, metadata) if meter and aggregation == "unique_count" else None
    shards = meter.shards if meter else 1  # a sharded meter is never hard-limited: as tracked
    return PendingEvent(
        index=0,
        developer_id=record.developer_id,
        metric=record.metric,
        quantity=quantity,
        event_time=parse_rfc3339(record.event_time),
        idempotency_key=record.idempotency_key,
        payload_hash=record.payload_hash,
        metadata=metadata,
        aggregation=aggregation,
        unique_value=unique,
        dimensions=dims.event_values(meter, metadata),
        shards=shards,
        shard=_counter_shard(record, shards),
        minute_shard=record.minute_shard,
    )


def _counter_shard(record: IdempotencyRecord, shards: int) -> int:
    """The shard its transaction added to (kept on the record; by its key before that was)."""
    if shards == 1:
        return 0
    return (
        record.counter_shard
        if record.counter_shard is not None
        else keys.shard_of(record.idempotency_key, shards)
    )


def _digest(event: PendingEvent) -> str:
    return event.markers[0][4]


@dataclass
class _Plan:
    """What one correction writes, gathered as it is worked out."""

    record: IdempotencyRecord
    meter: Meter | None
    old: PendingEvent
    new: PendingEvent | None  # None: cancelled
    now: datetime
    counters: list[CounterCorrection] = field(default_factory=list)
    markers_added: list[UniqueMarker] = field(default_factory=list)
    markers_removed: list[UniqueMarker] = field(default_factory=list)
    groups: list[GroupIncrement] = field(default_factory=list)
    claims: list[CombinationClaim] = field(default_factory=list)
    counted_as: dict[str, str] | None = None

    @property
    def events(self) -> int:
        return -1 if self.new is None else 0

    def change(
        self, scope: CounterScope, key: str, metric: str | None = None, **fields: Any
    ) -> CounterCorrection:
        change = CounterCorrection(
            developer_id=self.old.developer_id,
            scope=scope,
            key=key,
            metric=metric or self.old.metric,
            **fields,
        )
        self.counters.append(change)
        return change


# ---- sums, counts and levels: moved by the difference ------------------------------------------


def _additive(plan: _Plan) -> None:
    """Day, month and level counters move by new minus old; a hard limit and a level's bounds
    are judged on what is stored now (and asserted in the transaction)."""
    old, new = plan.old, plan.new
    delta = (new.quantity if new else Decimal(0)) - old.quantity
    for (_, scope, key, _, shard), _, ceiling in contribution_slots(old, ""):
        if scope == "minute":
            continue
        change = plan.change(scope, key, quantity=delta, events=plan.events, shard=shard)
        if scope == "level":
            _level_bounds(change, old, delta)
        elif scope == "month" and ceiling is not None and delta > 0:
            _within_limit(change, old, delta, ceiling)


def _level_bounds(change: CounterCorrection, event: PendingEvent, delta: Decimal) -> None:
    stored = counter_store.level(event.developer_id, event.metric)
    level = stored.consumed if stored else Decimal(0)
    if level + delta < 0:
        raise ValidationFailed(
            f"{event.metric} is a level that never goes below zero: this correction would take it "
            f"from {jsonutil.number_text(level)} to {jsonutil.number_text(level + delta)}",
            code="level_below_zero",
        )
    change.low = max(-delta, Decimal(0))
    ceiling = event.hard_limit
    if ceiling is not None and delta > 0:
        if level + delta > ceiling:
            raise LimitExceeded(f"{event.metric} would pass its ceiling of {jsonutil.number_text(ceiling)}")
        change.high = ceiling - delta


def _within_limit(change: CounterCorrection, event: PendingEvent, delta: Decimal, limit: Decimal) -> None:
    stored = counter_store.month_counter(event.developer_id, event.period, event.metric)
    if (stored.consumed if stored else Decimal(0)) + delta > limit:
        raise _over_limit(event, limit)
    change.high = limit - delta


def _over_limit(event: PendingEvent, limit: Decimal) -> LimitExceeded:
    return LimitExceeded(
        f"{event.metric} would pass its limit of {jsonutil.number_text(limit)} for {event.period}"
    )


def _minute(plan: _Plan) -> None:
    """A cancelled event recorded in the current minute no longer counts against the rate."""
    recorded = minute_key(parse_rfc3339(plan.record.recorded_at))
    if plan.new is None and recorded == minute_key(plan.now):
        plan.change(
            "minute",
            recorded,
            "*",
            quantity=Decimal(-1),
            events=-1,
            low=Decimal(1),
            shard=plan.record.minute_shard,
        )


# ---- max, latest and distinct counts: recomputed for their windows -----------------------------


def _day_counter(event: PendingEvent) -> Counter:
    found = [
        c
        for c in counter_store.day_counters(event.developer_id, event.day, event.day)
        if c.metric == event.metric
    ]
    if not found:
        raise _Behind()
    return found[0]


def _others(plan: _Plan, day: Counter) -> list[PendingEvent]:
    """The day's other live events of the metric, as the table holds them; their number (with
    this one) must be the day counter's, else the index is behind."""
    old = plan.old
    low, high = keys.event_log_day(old.day)
    records = log_store.window_records(old.developer_id, old.metric, low, high)
    live = [r for r in records if r.status != "cancelled"]
    if len(live) != day.events or all(r.idempotency_key != old.idempotency_key for r in live):
        if parse_rfc3339(f"{old.day}T00:00:00Z") < plan.now - RETENTION and len(live) < day.events:
            raise Conflict(
                f"{old.metric} is a {old.aggregation} meter: the other events of {old.day} are past the "
                "retention window, so its figure can no longer be recomputed",
                code="window_expired",
            )
        raise _Behind()
    return [
        _version(r, plan.meter, r.quantity, r.metadata)
        for r in live
        if r.idempotency_key != old.idempotency_key
    ]


def _assert_read(change: CounterCorrection, counter: Counter) -> CounterCorrection:
    change.expect_events = counter.events
    change.expect_consumed = counter.consumed
    change.expect_latest_key = counter.latest_key or ""
    change.expect_corrections = counter.corrections
    return change


def _extreme(plan: _Plan) -> None:
    """A max or latest meter: the day's figure from its other events (when the event held it),
    the month's from its day counters."""
    old, new = plan.old, plan.new
    day = _day_counter(old)
    holds = old.quantity == day.consumed if old.aggregation == "max" else day.latest_key == old.order_key
    if new is not None and old.aggregation == "max" and new.quantity >= day.consumed:
        figure: tuple[Decimal, str] | None = (new.quantity, "")
    elif new is not None and old.aggregation == "latest" and holds:
        figure = (new.quantity, old.order_key)
    elif not holds:
        figure = (day.consumed, day.latest_key or "")
    else:
        candidates = _others(plan, day) + ([new] if new is not None else [])
        figure = _best(old.aggregation, candidates)
    consumed, latest = figure if figure is not None else (Decimal(0), "")
    change = _assert_read(plan.change("day", old.day, consumed=consumed, events=plan.events), day)
    if old.aggregation == "latest":
        change.latest_key = latest
    _extreme_month(plan, change)


def _best(aggregation: str, events: list[PendingEvent]) -> tuple[Decimal, str] | None:
    """The largest quantity (max) or the latest event's (latest) of events, None if none."""
    if not events:
        return None
    if aggregation == "max":
        return max(e.quantity for e in events), ""
    latest = max(events, key=lambda e: e.order_key)
    return latest.quantity, latest.order_key


def _extreme_month(plan: _Plan, day_change: CounterCorrection) -> None:
    old = plan.old
    month = counter_store.month_counter(old.developer_id, old.period, old.metric)
    if month is None:
        raise _Behind()
    period = month_period(old.event_time)
    days = [
        c
        for c in counter_store.day_counters(
            old.developer_id, day_key(period.first_day), day_key(period.last_day)
        )
        if c.metric == old.metric and c.key != old.day and c.events > 0
    ]
    figures = [(c.consumed, c.latest_key or "") for c in days]
    if day_change.events + (day_change.expect_events or 0) > 0:
        figures.append((day_change.consumed or Decimal(0), day_change.latest_key or ""))
    if not figures:
        consumed, latest = Decimal(0), ""
    elif old.aggregation == "max":
        consumed, latest = max(f[0] for f in figures), ""
    else:
        consumed, latest = max(figures, key=lambda f: f[1])
    change = _assert_read(plan.change("month", old.period, consumed=consumed, events=plan.events), month)
    if old.aggregation == "latest":
        change.latest_key = latest


def _distinct(plan: _Plan) -> None:
    """A unique_count meter: its value leaves a window when no other live event there has it;
    an amendment's new value enters a window where none has it. Markers move with it."""
    old, new = plan.old, plan.new
    day = _day_counter(old)
    month = counter_store.month_counter(old.developer_id, old.period, old.metric)
    if month is None:
        raise _Behind()
    if new is not None and new.unique_value == old.unique_value:
        return  # it counts as before: one more event with its value, in the same windows
    others = {_digest(e) for e in _others(plan, day)}
    period = month_period(old.event_time)
    gone, came = _digest(old), _digest(new) if new is not None else None
    day_delta = month_delta = 0
    if gone not in others:
        day_delta -= 1
        plan.markers_removed.extend(_markers(old, {"day"}))
        if not _days_with(old, period, gone):
            month_delta -= 1
            plan.markers_removed.extend(_markers(old, {"month"}))
    if new is not None and came is not None and came not in others:
        day_delta += 1
        if _days_with(new, period, came):
            new.unique_new = {"day"}
        else:
            month_delta += 1
            new.unique_new = {"day", "month"}
        plan.markers_added.extend(unique_markers([new]))
    _assert_read(plan.change("day", old.day, quantity=Decimal(day_delta), events=plan.events), day)
    # the month is asserted as read: the limit below is judged on exactly what it holds
    _assert_read(plan.change("month", old.period, quantity=Decimal(month_delta), events=plan.events), month)
    limit = old.hard_limit
    if month_delta > 0 and limit is not None and month.consumed + month_delta > limit:
        raise _over_limit(old, limit)


def _days_with(event: PendingEvent, period: Any, digest: str) -> set[str]:
    """The month's other days whose markers hold the value."""
    found = log_store.day_markers_with(
        event.developer_id, event.metric, day_key(period.first_day), day_key(period.last_day), digest
    )
    return found - {event.day}


def _markers(event: PendingEvent, scopes: set[Any]) -> list[UniqueMarker]:
    event.unique_new = scopes
    return unique_markers([event])


# ---- dimension combinations --------------------------------------------------------------------


def _group(plan: _Plan, values: dict[str, str], quantity: Decimal, events: int, new: bool = False) -> None:
    old = plan.old
    plan.groups.append(
        GroupIncrement(
            developer_id=old.developer_id,
            metric=old.metric,
            day=old.day,
            values=values,
            digest=dims.digest(values),
            quantity=quantity,
            events=events,
            aggregation=old.aggregation,
            new=new,
        )
    )


def _combinations(plan: _Plan) -> None:
    """The combination's day counter moves back; an amendment with other dimension values moves
    the event to its new combination (placed as tracking places it: its own while the day's
    bound leaves room, else "(other)")."""
    old, new = plan.old, plan.new
    held = plan.record.dimensions
    if held is None:
        return
    if new is None:
        _group(plan, held, -old.quantity, -1)
        return
    target = held if new.dimensions == old.dimensions else _place(plan, new.dimensions or {})
    plan.counted_as = target
    if target == held:
        _group(plan, held, new.quantity - old.quantity, 0)
        return
    _group(plan, held, -old.quantity, -1)
    exists = _group_exists(old, target)
    _group(plan, target, new.quantity, 1, new=not exists)
    if not exists and dims.OTHER not in target.values():
        bound = settings().dimension_cardinality
        plan.claims.append(
            CombinationClaim(
                developer_id=old.developer_id, metric=old.metric, day=old.day, combinations=1, ceiling=bound
            )
        )


def _group_exists(event: PendingEvent, values: dict[str, str]) -> bool:
    return group_store.group_exists(event.developer_id, event.metric, event.day, dims.digest(values))


def _place(plan: _Plan, values: dict[str, str]) -> dict[str, str]:
    old = plan.old
    if _group_exists(old, values):
        return values
    stored = group_store.combinations(old.developer_id, old.metric, old.day)
    return values if stored < settings().dimension_cardinality else dims.overflow(values)


# ---- the correction ---------------------------------------------------------------------------


def _plan(plan: _Plan) -> None:
    aggregation = plan.old.aggregation
    if aggregation in ("max", "latest"):
        _extreme(plan)
    elif aggregation == "unique_count":
        _distinct(plan)
    else:
        _additive(plan)
    _minute(plan)
    _combinations(plan)


def _revised(plan: _Plan, action: Any, reason: str, token: str) -> IdempotencyRecord:
    record, new = plan.record, plan.new
    entry = Revision(
        revision=record.revision + 1,
        action=action,
        at=format_timestamp(plan.now),
        reason=reason,
        quantity=record.quantity if new is not None else None,
        metadata=record.metadata if new is not None else None,
    )
    return record.model_copy(
        update={
            "status": "cancelled" if new is None else "amended",
            "revision": record.revision + 1,
            "revisions": [*record.revisions, entry],
            "quantity": new.quantity if new is not None else record.quantity,
            "metadata": new.metadata if new is not None else record.metadata,
            "dimensions": plan.counted_as if plan.counted_as is not None else record.dimensions,
            "correction_token": token,
        }
    )


@dataclass
class _Request:
    developer_id: str
    key: str
    reason: str
    quantity: Decimal | None = None
    metadata: dict[str, Any] | None = None
    amend: bool = False
    metadata_given: bool = False


def _live(request: _Request, now: datetime) -> IdempotencyRecord:
    record = event_store.get_record(request.developer_id, request.key)
    if record is None or record.expires_at < int(now.timestamp()):
        raise event_not_found(request.key)
    return record


def _settled(
    record: IdempotencyRecord, request: _Request, meter: Meter | None
) -> tuple[CorrectionStatus, PendingEvent | None] | None:
    """The answer when nothing is to be written (already cancelled, unchanged), else None; and
    the amended version."""
    if record.status == "cancelled":
        if request.amend:
            raise Conflict(
                f"event {record.idempotency_key} is cancelled: it cannot be amended", code="event_cancelled"
            )
        return "already_cancelled", None
    if not request.amend:
        return None
    aggregation = meter.aggregation if meter else "sum"
    quantity = contribution(
        aggregation, request.quantity if request.quantity is not None else record.quantity
    )
    metadata = request.metadata if request.metadata_given else record.metadata
    if quantity == record.quantity and metadata == record.metadata:
        return "unchanged", None
    return None


def correct(
    identity: Identity, body: CancelIn | AmendIn, *, sleep: Sleeper = time.sleep
) -> CorrectionResponse:
    """Cancel (CancelIn) or amend (AmendIn) one event; see the module docstring."""
    require_role(identity, "service", "correcting events")
    resolve = DeveloperResolver(identity)
    amend = isinstance(body, AmendIn)
    request = _Request(
        developer_id=resolve(body.developer_id),
        key=body.idempotency_key,
        reason=body.reason,
        quantity=body.quantity if isinstance(body, AmendIn) else None,
        metadata=body.metadata if isinstance(body, AmendIn) else None,
        amend=amend,
        metadata_given=isinstance(body, AmendIn) and "metadata" in body.model_fields_set,
    )
    meters = MeterBook()
    ours: set[str] = set()  # tokens of this request's commits: one may have applied unseen
    for attempt in range(MAX_ATTEMPTS):
        now = clock.now()
        record = _live(request, now)
        if record.correction_token in ours:  # an attempt whose answer was lost was applied
            return _answer("cancelled" if record.status == "cancelled" else "amended", record)
        meter = meters(record.metric)
        settled = _settled(record, request, meter)
        if settled is not None:
            return _answer(settled[0], record)
        if record.revision >= MAX_REVISIONS:
            raise Conflict(
                f"event {record.idempotency_key} has taken {MAX_REVISIONS} corrections, the most it takes",
                code="too_many_revisions",
            )
        try:
            written = _attempt(record, request, meter, resolve, now, ours)
        except (_Behind, log_store.CorrectionConflict):
            metrics.add_metric(name="CorrectionConflicts", unit=MetricUnit.Count, value=1)
            sleep(backoff(attempt))
            continue
        if written is not None:
            _announce(*written, before=record)
            return _answer("cancelled" if written[0].status == "cancelled" else "amended", written[0])
    raise Busy("the event kept changing while it was being corrected; retry shortly")


def _attempt(
    record: IdempotencyRecord,
    request: _Request,
    meter: Meter | None,
    resolve: DeveloperResolver,
    now: datetime,
    ours: set[str],
) -> tuple[IdempotencyRecord, bool] | None:
    """Work out and commit one correction from what is stored now: the record as written and
    whether it adjusted a closed month, or None when the commit's outcome stayed unknown and
    it was not applied."""
    old = _version(record, meter, record.quantity, record.metadata)
    plan_of_period = resolve.plan(record.developer_id, month_period(old.event_time).end)
    old.allowance = metric_limit(plan_of_period, record.metric)
    new = None
    if request.amend:
        sent = request.quantity if request.quantity is not None else record.quantity
        metadata = request.metadata if request.metadata_given else record.metadata
        new = _version(record, meter, contribution(old.aggregation, sent), metadata)
        new.allowance = old.allowance
    plan = _Plan(record=record, meter=meter, old=old, new=new, now=now)
    _plan(plan)
    token = str(uuid.uuid4())
    ours.add(token)
    closed = log_store.summary_closed(old.developer_id, old.period, old.metric)
    revised = _revised(plan, "amend" if request.amend else "cancel", request.reason, token)
    write = log_store.CorrectionWrite(
        record=revised,
        read_revision=record.revision,
        counters=plan.counters,
        markers_added=plan.markers_added,
        markers_removed=plan.markers_removed,
        groups=plan.groups,
        claims=plan.claims,
        adjusted=[(old.period, old.metric)] if closed else [],
        token=token,
        now_epoch=int(now.timestamp()),
        at=format_timestamp(now),
    )
    return (revised, closed) if _commit(write) else None


def _commit(write: log_store.CorrectionWrite) -> bool:
    """Commit, retrying an unknown outcome unchanged (same token); False if it was not applied."""
    for _ in range(IN_DOUBT_RETRIES + 1):
        try:
            log_store.commit_correction(write)
            return True
        except log_store.CorrectionInDoubt:
            logger.info("correction outcome unknown, retrying it unchanged")
    held = event_store.get_record(write.record.developer_id, write.record.idempotency_key)
    return held is not None and held.correction_token == write.token


def _announce(written: IdempotencyRecord, adjusted: bool, *, before: IdempotencyRecord) -> None:
    kind = lifecycle.EVENT_CANCELLED if written.status == "cancelled" else lifecycle.EVENT_AMENDED
    detail = {
        "developerId": written.developer_id,
        "idempotencyKey": written.idempotency_key,
        "metric": written.metric,
        "revision": written.revision,
        "quantityBefore": jsonutil.number_text(before.quantity),
        "quantity": jsonutil.number_text(written.quantity),
    }
    lifecycle.publish(kind, detail)
    logger.info(
        "event corrected",
        extra={"developer_id": written.developer_id, "status": written.status, "revision": written.revision},
    )
    if adjusted:
        lifecycle.publish(
            lifecycle.PERIOD_ADJUSTED,
            {"developerId": written.developer_id, "period": written.period, "metric": written.metric},
        )


def _answer(status: CorrectionStatus, record: IdempotencyRecord) -> CorrectionResponse:
    return CorrectionResponse(status=status, revision=record.revision, event=event_out(record))
