"""Checking and claiming the items of a track request, before anything is written.

Each item is validated on its own, its developer resolved, its time checked, its payload
hashed; keyed items claim their key within the request, so that an in-batch duplicate
follows its leader's outcome and a reused key is refused. What survives is a list of
`PendingEvent`s, in order, each with its plan's allowance.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from usage_meter import jsonutil
from usage_meter.domain.commit import Outcomes, error_detail
from usage_meter.domain.dimensions import event_values
from usage_meter.domain.identity import DeveloperResolver
from usage_meter.domain.meters import MeterBook, contribution, refuse_unusable, unique_value
from usage_meter.domain.packing import PendingEvent
from usage_meter.domain.periods import BACKDATE_WINDOW, FUTURE_TOLERANCE, month_period
from usage_meter.domain.plans import metric_limit
from usage_meter.errors import (
    Busy,
    IdempotencyKeyReused,
    UsageMeterError,
    ValidationFailed,
    validation_failed,
)
from usage_meter.models.accounts import Meter
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import Aggregation, ErrorDetail, UsageEventIn
from usage_meter.settings import settings
from usage_meter.store import catalog


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
        "quantity": jsonutil.number_text(event.quantity) if event.quantity is not None else None,
        "timestamp": format_timestamp(event.timestamp) if event.timestamp else None,
        "metadata": _sorted_keys(event.metadata),
    }
    return hashlib.sha256(jsonutil.dumps(canonical).encode()).hexdigest()


def check_time(event: UsageEventIn, now: datetime) -> datetime:
    """The event's moment (default now), inside the backdating window and the clock tolerance."""
    moment = event.timestamp or now
    if moment < now - BACKDATE_WINDOW:
        raise ValidationFailed(
            f"timestamp is more than {BACKDATE_WINDOW.days} days old", code="timestamp_out_of_range"
        )
    if moment > now + FUTURE_TOLERANCE:
        raise ValidationFailed(
            f"timestamp is more than {int(FUTURE_TOLERANCE.total_seconds() // 60)} minutes in the future",
            code="timestamp_out_of_range",
        )
    return moment


MADE_KEY_PREFIX = "um_evt_"


def made_key() -> str:
    """The key the service gives an event sent without one: random (128 bits), unguessable."""
    return f"{MADE_KEY_PREFIX}{secrets.token_hex(16)}"


def judge_by_meter(event: UsageEventIn, meter: Meter | None) -> tuple[Aggregation, Decimal, str | None]:
    """What the event adds to its metric's meter, if the meter takes it: (aggregation,
    contribution, unique value). Judged first, like the event's own validation: the rules
    depend on the metric alone."""
    refuse_unusable(event.metric, meter, settings().undeclared_metrics)
    aggregation: Aggregation = meter.aggregation if meter else "sum"
    value = unique_value(meter, event.metadata) if meter and meter.aggregation == "unique_count" else None
    return aggregation, contribution(aggregation, event.quantity), value


def prepare(
    index: int,
    event: UsageEventIn,
    resolve: DeveloperResolver,
    meters: MeterBook,
    now: datetime,
    header_key: str | None,
) -> PendingEvent:
    """A valid item as an event: judged by its meter, its developer resolved, its time checked,
    its payload hashed, its key the client's or, if it sent none, one made here."""
    aggregation, adds, value = judge_by_meter(event, meters(event.metric))
    dimensions = event_values(meters(event.metric), event.metadata)
    developer_id = resolve(event.developer_id)
    key = event.idempotency_key or header_key
    return PendingEvent(
        index=index,
        developer_id=developer_id,
        metric=event.metric,
        quantity=adds,
        event_time=check_time(event, now),
        idempotency_key=key or made_key(),
        key_made=key is None,
        payload_hash=payload_hash(developer_id, event),
        metadata=event.metadata,
        aggregation=aggregation,
        unique_value=value,
        dimensions=dimensions,
    )


@dataclass
class Intake:
    """Checks and claims a request's items one by one; refusals go to `outcomes`.

    A single event raises its refusal (the caller answers it with its status); a batch records
    it per item and goes on.
    """

    resolve: DeveloperResolver
    now: datetime
    single: bool
    header_key: str | None
    outcomes: Outcomes
    to_commit: list[PendingEvent] = field(default_factory=list)
    leaders: dict[tuple[str, str], PendingEvent] = field(default_factory=dict)
    meters: MeterBook = field(default_factory=MeterBook)
    refused_late: list[tuple[PendingEvent, ErrorDetail]] = field(default_factory=list)
    # (developer asked for, key) of items that failed transiently: a later item with the same key
    # must not take their place, since the earlier one may be the event the client meant
    blocked: dict[tuple[str | None, str], ErrorDetail] = field(default_factory=dict)

    def take(self, index: int, item: Any) -> None:
        """Check one item and, if it is a new event, queue it to commit."""
        event = self._event(index, item)
        if event is None or not self._claim(event):
            return
        # the plan is read after the key is claimed: if the read fails, a later item with the
        # same key still compares against this one instead of taking its place
        try:
            self._judge_by_plan(event)
        except UsageMeterError as exc:
            if self.single:
                raise
            self.refused_late.append((event, error_detail(exc)))
            return
        self.to_commit.append(event)

    def _judge_by_plan(self, event: PendingEvent) -> None:
        """What the event is judged by: the allowance of the plan of its period, the rate of
        the current plan, and (for a metric no plan declares) the developer's catalog, read
        here once so that a failure to read it is this item's."""
        plan = self.resolve.plan(event.developer_id, month_period(event.event_time).end)
        event.allowance = metric_limit(plan, event.metric)
        meter = self.meters(event.metric)
        event.undeclared = event.allowance is None and meter is None
        if meter is not None and event.hard_limit is None:
            event.shards = meter.shards  # the shard is its transaction's (packing.spread)
        current = self.resolve.plan(event.developer_id)
        event.rate_ceiling = current.rate_ceiling if current else None
        event.rate_stated = current is not None and current.requests_per_minute is not None
        if event.undeclared:
            catalog.catalogued(event.developer_id, event.metric)

    def finish(self) -> list[PendingEvent]:
        """The events to commit; events whose plan could not be read are refused (with their
        in-batch followers, known only now)."""
        for event, error in self.refused_late:
            self.outcomes.set(event, "rejected", None, error)
        return self.to_commit

    def _event(self, index: int, item: Any) -> PendingEvent | None:
        event_in: UsageEventIn | None = None
        try:
            event_in = item if isinstance(item, UsageEventIn) else UsageEventIn.model_validate(item)
            claim = (event_in.developer_id, event_in.idempotency_key or self.header_key or "")
            if claim[1] and claim in self.blocked:
                self.outcomes.refuse(index, self.blocked[claim], idempotency_key=claim[1])
                return None
            header_key = self.header_key if self.single else None
            return prepare(index, event_in, self.resolve, self.meters, self.now, header_key)
        except ValidationError as exc:
            if self.single:
                raise
            self.outcomes.refuse(index, error_detail(validation_failed(exc)))
        except UsageMeterError as exc:
            if self.single:
                raise
            detail = error_detail(exc)
            if isinstance(exc, Busy) and event_in is not None and event_in.idempotency_key:
                self.blocked[(event_in.developer_id, event_in.idempotency_key)] = detail
            self.outcomes.refuse(index, detail)
        return None

    def _claim(self, event: PendingEvent) -> bool:
        """Claim the event's key in this request: False for an in-batch duplicate (it follows
        its leader) or a key the request already used for another payload (refused)."""
        if event.key_made:  # unique by construction
            return True
        slot = (event.developer_id, event.idempotency_key)
        leader = self.leaders.get(slot)
        if leader is None:
            self.leaders[slot] = event
            return True
        if leader.payload_hash == event.payload_hash:
            leader.followers.append(event.index)
        else:
            reused = IdempotencyKeyReused(
                "this idempotency key was used for a different event in the same batch"
            )
            self.outcomes.refuse(event.index, error_detail(reused), idempotency_key=event.idempotency_key)
        return False
