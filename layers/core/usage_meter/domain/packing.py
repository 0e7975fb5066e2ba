"""Packing events into transactions: what each event changes, combined per counter item.

A transaction may touch an item once and hold at most 100 items, so the events of a batch
are packed, in order, into parts whose idempotency records (one per event: an event sent
without a key has one made by the service) plus combined counter changes fit;
no event is ever split across two transactions. Pure functions over `PendingEvent`s: the
tests use them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from usage_meter.domain.periods import day_key, month_key
from usage_meter.models.accounts import MetricLimit
from usage_meter.models.records import CounterIncrement, CounterScope
from usage_meter.store.keys import minute_key

MAX_TRANSACTION_ITEMS = 100
MINUTE_COUNTER_TTL = timedelta(hours=1)

LimitGroup = tuple[str, str, str]
"""(developer, billing period, metric): the counter a hard limit caps."""


@dataclass(eq=False)  # identity, not field equality: two unkeyed events may be alike
class PendingEvent:
    """A validated event, ready to commit."""

    index: int
    developer_id: str
    metric: str
    quantity: Decimal
    event_time: datetime
    idempotency_key: str  # the client's, or one the service made (`key_made`)
    payload_hash: str
    metadata: dict[str, Any] | None
    key_made: bool = False  # the key is the service's: the client sent none
    allowance: MetricLimit | None = None  # the plan's limit for this metric, if any
    followers: list[int] = field(default_factory=list)  # in-batch duplicates of this event

    @property
    def hard_limit(self) -> Decimal | None:
        a = self.allowance
        return a.limit if a is not None and a.enforcement == "hard" and a.limit is not None else None

    @property
    def limit_group(self) -> LimitGroup:
        return (self.developer_id, self.period, self.metric)

    @property
    def day(self) -> str:
        return day_key(self.event_time)

    @property
    def period(self) -> str:
        return month_key(self.event_time)


def transaction_cost(events: Sequence[PendingEvent]) -> int:
    """Items of one transaction: one record per event, combined day and month counters, one
    minute counter per developer."""
    counters = (
        {("D", e.developer_id, e.day, e.metric) for e in events}
        | {("M", e.developer_id, e.period, e.metric) for e in events}
        | {("R", e.developer_id, "", "") for e in events}
    )
    return len(events) + len(counters)


def chunks(events: Sequence[PendingEvent]) -> list[list[PendingEvent]]:
    """Pack events, in order, into transactions of at most 100 items (records + combined counters)."""
    parts: list[list[PendingEvent]] = []
    current: list[PendingEvent] = []
    for event in events:
        if current and transaction_cost([*current, event]) > MAX_TRANSACTION_ITEMS:
            parts.append(current)
            current = []
        current.append(event)
    if current:
        parts.append(current)
    return parts


CounterSlot = tuple[str, CounterScope, str, str]


def increments(events: Sequence[PendingEvent], now: datetime) -> list[CounterIncrement]:
    """Combine the counter changes of events that hit the same counter item (a transaction may
    touch an item once). A month counter under a hard limit carries the limit as its ceiling;
    each developer's minute counter counts the events recorded in this minute."""
    totals: dict[CounterSlot, tuple[Decimal, int]] = {}
    ceilings: dict[CounterSlot, Decimal] = {}
    minute = minute_key(now)
    for e in events:
        slots: list[tuple[CounterSlot, Decimal]] = [
            ((e.developer_id, "day", e.day, e.metric), e.quantity),
            ((e.developer_id, "month", e.period, e.metric), e.quantity),
            ((e.developer_id, "minute", minute, "*"), Decimal(1)),
        ]
        for slot, quantity in slots:
            total, count = totals.get(slot, (Decimal(0), 0))
            totals[slot] = (total + quantity, count + 1)
            if slot[1] == "month" and e.hard_limit is not None:
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


def admit(
    pending: list[PendingEvent], known: dict[LimitGroup, Decimal]
) -> tuple[list[PendingEvent], list[PendingEvent]]:
    """(admitted, refused): the events, taken in order, that fit their hard limit given what the
    counters are known to hold and the room the earlier admitted events take, and those that do
    not.

    `known` starts empty (optimistic: DynamoDB's condition is the judge) and learns the real
    value from each transaction refused at a ceiling. An event that does not fit is refused
    whole; a later, smaller one may still fit. The refusal is only a proposal: it is final once
    the events admitted before it are committed (see commit.commit_part).
    """
    room_used: dict[LimitGroup, Decimal] = {}
    admitted: list[PendingEvent] = []
    refused: list[PendingEvent] = []
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
