"""Packing events into transactions: what each event changes, combined per counter item.

A transaction may touch an item once and hold at most 100 items, so the events of a batch
are packed, in order, into parts whose idempotency records (one per event: an event sent
without a key has one made by the service), combined counter changes and metric catalog
claims fit; no event is ever split across two transactions. Admission decides which events
fit what their transaction may use: a hard limit, an enforced rate, the catalog's bound.
Pure functions over `PendingEvent`s (the catalog as a predicate): the tests use them as
they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from usage_meter.domain import dimensions as dims
from usage_meter.domain.periods import RETENTION, day_key, day_period, month_key, month_period
from usage_meter.models.accounts import MetricLimit
from usage_meter.models.records import (
    LEVEL_KEY,
    CombinationClaim,
    CounterIncrement,
    CounterScope,
    GroupIncrement,
    MetricClaim,
    UniqueMarker,
)
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import Aggregation
from usage_meter.store import keys
from usage_meter.store.keys import minute_key

MAX_TRANSACTION_ITEMS = 100
MINUTE_COUNTER_TTL = timedelta(hours=1)
MAX_UNDECLARED_METRICS = 100
"""Metrics a developer may use that its plans do not declare: what bounds its read answers."""

LimitGroup = tuple[str, str, str]
"""(developer, key, metric) of a capped counter: (developer, billing period, metric) under a
hard limit, (developer, minute, "*") under an enforced rate."""

MarkerId = tuple[str, CounterScope, str, str, str]
"""(developer, day or month, window, metric, digest of the value) of a unique_count marker."""

GroupId = tuple[str, str, str, str]
"""(developer, metric, day, digest of the values) of a combination's day counter."""

DaySpace = tuple[str, str, str]
"""(developer, metric, day): where the cardinality bound counts combinations."""

Catalogued = Callable[[str, str], bool]
"""Whether (developer, metric) is in the developer's metric catalog already."""

RefusalReason = Literal["limit", "rate", "metrics", "floor"]
Refusal = tuple["PendingEvent", RefusalReason]


@dataclass(eq=False)  # identity, not field equality: two unkeyed events may be alike
class PendingEvent:
    """A validated event, ready to commit."""

    index: int
    developer_id: str
    metric: str
    quantity: Decimal  # what it adds to its meter (see meters.contribution)
    event_time: datetime
    idempotency_key: str  # the client's, or one the service made (`key_made`)
    payload_hash: str
    metadata: dict[str, Any] | None
    key_made: bool = False  # the key is the service's: the client sent none
    aggregation: Aggregation = "sum"  # its meter's; a metric without a meter is summed
    unique_value: str | None = None  # metadata[uniqueBy], for a unique_count meter
    unique_new: set[CounterScope] = field(default_factory=set)  # windows where its value is new
    allowance: MetricLimit | None = None  # the plan's limit for this metric, if any
    undeclared: bool = False  # the plan does not list the metric: it takes a place in the catalog
    rate_ceiling: int | None = None  # events per minute the developer's plan enforces, if any
    dimensions: dict[str, str] | None = None  # its meter's dimensions' values (see dimensions)
    counted_as: dict[str, str] | None = None  # the combination it counts under: its values, or
    # "(other)" past the day's cardinality bound (set as it is admitted)
    followers: list[int] = field(default_factory=list)  # in-batch duplicates of this event
    shards: int = 1  # its meter's (1 under a hard limit: a limit holds on one counter)
    shard: int = 0  # the day and month counter items it adds to (picked by its transaction)
    rate_stated: bool = False  # the developer's plan states a per-minute rate (read on one item)
    minute_shard: int = 0  # the minute counter item it adds to (picked by its transaction)

    def spread(self, spread: int) -> None:
        """Put it on the counter shards its transaction's `spread` picks: the events of one
        transaction share one shard of each counter, so a batch writes one item per counter
        and its transactions spread over the shards."""
        self.shard = spread % self.shards
        self.minute_shard = 0 if self.rate_stated else spread % keys.MINUTE_SHARDS

    @property
    def hard_limit(self) -> Decimal | None:
        a = self.allowance
        return a.limit if a is not None and a.enforcement == "hard" and a.limit is not None else None

    @property
    def limit_group(self) -> LimitGroup:
        return (self.developer_id, self.period, self.metric)

    @property
    def markers(self) -> list[MarkerId]:
        """The (developer, scope, window, metric, digest) its unique value is counted by."""
        digest = hashlib.sha256((self.unique_value or "").encode()).hexdigest()[:32]
        d, m = self.developer_id, self.metric
        return [(d, "day", self.day, m, digest), (d, "month", self.period, m, digest)]

    @property
    def level_group(self) -> LimitGroup:
        return (self.developer_id, LEVEL_KEY, self.metric)

    @property
    def order_key(self) -> str:
        """What orders events for a latest meter: their time, then their key (fixed-width)."""
        return f"{format_timestamp(self.event_time)}#{self.idempotency_key}"

    @property
    def day(self) -> str:
        return day_key(self.event_time)

    @property
    def period(self) -> str:
        return month_key(self.event_time)

    @property
    def day_space(self) -> DaySpace:
        return (self.developer_id, self.metric, self.day)

    def group_of(self, values: dict[str, str]) -> GroupId:
        """The day counter of one combination of its meter's dimensions."""
        return (self.developer_id, self.metric, self.day, dims.digest(values))

    def claims_metric(self, catalogued: Catalogued) -> bool:
        """Whether its transaction must put its metric in the developer's catalog."""
        return self.undeclared and not catalogued(self.developer_id, self.metric)


def transaction_cost(events: Sequence[PendingEvent], catalogued: Catalogued) -> int:
    """Items of one transaction: one record per event, combined day and month counters, one
    minute counter per developer, and per developer with new metrics an entry for each and
    the catalog's size."""
    claimed = {(e.developer_id, e.metric) for e in events if e.claims_metric(catalogued)}
    counters = (
        {("D", e.developer_id, e.day, e.metric, e.shard) for e in events}
        | {("M", e.developer_id, e.period, e.metric, e.shard) for e in events}
        | {("R", e.developer_id, "", "", 0) for e in events}
        | {("L", e.developer_id, "", e.metric, 0) for e in events if e.aggregation == "level"}
    )
    markers = {m for e in events if e.aggregation == "unique_count" for m in e.markers}  # at most
    catalog = len(claimed) + len({developer for developer, _ in claimed})
    dimensioned = [e for e in events if e.dimensions is not None]
    # a combination each, and per day space its count of combinations and "(other)" (at most)
    groups = len({e.group_of(e.dimensions or {}) for e in dimensioned}) + 2 * len(
        {e.day_space for e in dimensioned}
    )
    return len(events) + len(counters) + catalog + len(markers) + groups


def chunks(events: Sequence[PendingEvent], catalogued: Catalogued) -> list[list[PendingEvent]]:
    """Pack events, in order, into transactions of at most 100 items (records, combined
    counters, catalog claims)."""
    parts: list[list[PendingEvent]] = []
    current: list[PendingEvent] = []
    for event in events:
        if current and transaction_cost([*current, event], catalogued) > MAX_TRANSACTION_ITEMS:
            parts.append(current)
            current = []
        current.append(event)
    if current:
        parts.append(current)
    return parts


CounterSlot = tuple[str, CounterScope, str, str, int]
"""(developer, scope, key, metric, shard) of one counter item."""


@dataclass
class _Slot:
    """What the events of one transaction do to one counter item, gathered in order."""

    aggregation: Aggregation
    quantity: Decimal = Decimal(0)  # their sum (a level's: the net change)
    events: int = 0
    ceiling: Decimal | None = None
    peak: Decimal | None = None  # max: the largest quantity
    latest: tuple[str, Decimal] | None = None  # latest: (order key, value) of the latest event
    low: Decimal = Decimal(0)  # level: the lowest and highest running change, in order
    high: Decimal = Decimal(0)

    def take(self, event: PendingEvent, quantity: Decimal) -> None:
        self.quantity += quantity
        self.events += 1
        self.low, self.high = min(self.low, self.quantity), max(self.high, self.quantity)
        if self.peak is None or quantity > self.peak:
            self.peak = quantity
        order = event.order_key
        if self.latest is None or order > self.latest[0]:
            self.latest = (order, quantity)


def contribution_slots(event: PendingEvent, minute: str) -> list[tuple[CounterSlot, Decimal, Decimal | None]]:
    """The counter items an event changes: (slot, what it adds, the slot's ceiling). A correction
    takes an event out (and an amended one in) through the same list."""
    d, m = event.developer_id, event.metric
    level = event.aggregation == "level"
    rate = Decimal(event.rate_ceiling) if event.rate_ceiling is not None else None
    day, month = event.quantity, event.quantity
    if event.aggregation == "unique_count":  # 1 in a window only where its value is new
        day, month = (Decimal(1 if scope in event.unique_new else 0) for scope in ("day", "month"))
    s = event.shard
    slots: list[tuple[CounterSlot, Decimal, Decimal | None]] = [
        ((d, "day", event.day, m, s), day, None),
        ((d, "month", event.period, m, s), month, None if level else event.hard_limit),
        ((d, "minute", minute, "*", event.minute_shard), Decimal(1), rate),
    ]
    if level:
        slots.append(((d, "level", LEVEL_KEY, m, 0), event.quantity, event.hard_limit))
    return slots


def group_slot(event: PendingEvent) -> tuple[GroupId, dict[str, str]] | None:
    """The combination counter an admitted event of a dimensioned meter changes, with its
    values (None: its meter has no dimensions). With `contribution_slots`, every counter an event moves:
    the combination is also kept on its idempotency record (`dimensions`), since "(other)"
    depends on the day's other events."""
    if event.counted_as is None:
        return None
    return event.group_of(event.counted_as), event.counted_as


def group_increments(events: Sequence[PendingEvent], known: Known) -> list[GroupIncrement]:
    """The combination counters of admitted events, each combined once, asserted to exist
    unless `known` says it is new (then its first writer)."""
    gathered: dict[GroupId, GroupIncrement] = {}
    for e in events:
        slot = group_slot(e)
        if slot is None:
            continue
        group, values = slot
        change = gathered.get(group)
        if change is None:
            change = gathered[group] = GroupIncrement(
                developer_id=e.developer_id,
                metric=e.metric,
                day=e.day,
                values=values,
                digest=group[3],
                quantity=Decimal(0),
                events=0,
                aggregation=e.aggregation,
                new=group in known.absent,
            )
        change.quantity += e.quantity
        change.events += 1
    return list(gathered.values())


def combination_claims(groups: Sequence[GroupIncrement], ceiling: int) -> list[CombinationClaim]:
    """Per day space, the places its new combinations take under the bound ("(other)" takes none)."""
    new: dict[DaySpace, int] = {}
    for g in groups:
        if g.new and dims.digest(dims.overflow(g.values)) != g.digest:
            space = (g.developer_id, g.metric, g.day)
            new[space] = new.get(space, 0) + 1
    return [
        CombinationClaim(developer_id=d, metric=m, day=day, combinations=n, ceiling=ceiling)
        for (d, m, day), n in new.items()
    ]


def increments(
    events: Sequence[PendingEvent],
    now: datetime,
    known: Known | None = None,
    exact: Iterable[LimitGroup] = (),
) -> list[CounterIncrement]:
    """Combine the counter changes of events that hit the same counter item (a transaction may
    touch an item once), each with the condition that keeps it exact:

    - a month counter under a hard limit carries the limit as its ceiling; each developer's
      minute counter counts the events recorded in this minute, with the enforced rate as its
      ceiling;
    - a max or latest counter is set only if the transaction's value beats the stored one
      (unless `known` shows it does not: then only its events are added);
    - a level keeps in [0, ceiling] at every event, in order; for the levels in `exact` (a
      refusal in this transaction was judged by the level read) the known level is asserted.
    """
    known = known or Known()
    minute = minute_key(now)
    slots: dict[CounterSlot, _Slot] = {}
    for e in events:
        for slot, quantity, ceiling in contribution_slots(e, minute):
            gathered = slots.setdefault(
                slot, _Slot(aggregation=e.aggregation if slot[1] != "minute" else "sum")
            )
            gathered.take(e, quantity)
            gathered.ceiling = ceiling if ceiling is not None else gathered.ceiling
    expiry = int((now + MINUTE_COUNTER_TTL).timestamp())
    exact_levels = set(exact)
    return [_increment(slot, gathered, known, exact_levels, expiry) for slot, gathered in slots.items()]


def _increment(
    slot: CounterSlot, gathered: _Slot, known: Known, exact: set[LimitGroup], expiry: int
) -> CounterIncrement:
    """One counter's change (see increments)."""
    d, scope, key, metric, shard = slot
    group = (d, key, metric)
    change = CounterIncrement(
        developer_id=d,
        scope=scope,
        key=key,
        metric=metric,
        shard=shard,
        quantity=gathered.quantity,
        events=gathered.events,
        aggregation=gathered.aggregation,
        expires_at=expiry if scope == "minute" else None,
    )
    stored = known.counters.get(group)
    if scope == "level":
        if group in exact and stored is not None:
            change.level_was = stored
        else:
            high = None if gathered.ceiling is None else gathered.ceiling - gathered.high
            change.level_range = (-gathered.low, high)
    elif gathered.aggregation == "max":
        if stored is None or (gathered.peak is not None and gathered.peak > stored):
            change.peak = gathered.peak
        change.quantity = Decimal(0)
    elif gathered.aggregation == "latest":
        if gathered.latest is not None and known.latest.get(group, "") < gathered.latest[0]:
            change.latest = gathered.latest
        change.quantity = Decimal(0)
    else:
        change.ceiling = gathered.ceiling
    return change


def unique_markers(events: Sequence[PendingEvent]) -> list[UniqueMarker]:
    """The markers of the values admitted events count as new, each kept while its window can
    still take backdated events (its end, plus the retention window)."""
    markers: list[UniqueMarker] = []
    for e in events:
        for developer_id, scope, window, metric, digest in e.markers:
            if scope in e.unique_new:
                end = month_period(e.event_time).end if scope == "month" else day_period(e.event_time).end
                markers.append(
                    UniqueMarker(
                        developer_id=developer_id,
                        scope=scope,
                        window=window,
                        metric=metric,
                        digest=digest,
                        expires_at=int((end + RETENTION + timedelta(days=1)).timestamp()),
                    )
                )
    return markers


def metric_claims(events: Sequence[PendingEvent], catalogued: Catalogued) -> list[MetricClaim]:
    """The catalog claims of a transaction's events: per developer, its metrics not yet in its
    catalog, each once."""
    new: dict[str, list[str]] = {}
    for e in events:
        metrics = new.setdefault(e.developer_id, [])
        if e.claims_metric(catalogued) and e.metric not in metrics:
            metrics.append(e.metric)
    return [
        MetricClaim(developer_id=d, metrics=m, ceiling=MAX_UNDECLARED_METRICS) for d, m in new.items() if m
    ]


@dataclass
class Known:
    """What cancelled transactions showed of the stored state: the value of each capped counter
    that refused (by LimitGroup), and the size of each developer's full catalog. Empty at first
    (optimistic: DynamoDB's conditions are the judge)."""

    counters: dict[LimitGroup, Decimal] = field(default_factory=dict)
    latest: dict[LimitGroup, str] = field(default_factory=dict)  # a latest counter's order key
    seen: set[MarkerId] = field(default_factory=set)  # unique_count values their window has seen
    catalog_sizes: dict[str, int] = field(default_factory=dict)
    absent: set[GroupId] = field(default_factory=set)  # combinations not stored yet
    combinations: dict[DaySpace, int] = field(default_factory=dict)  # a day's stored combinations
    cardinality: int = 1000  # the bound (settings().dimension_cardinality)


@dataclass
class _Room:
    """What the events admitted so far into one transaction take, on top of what is known."""

    known: Known
    minute: str
    catalogued: Catalogued
    used: dict[LimitGroup, Decimal] = field(default_factory=dict)
    claimed: dict[str, set[str]] = field(default_factory=dict)
    values: set[MarkerId] = field(default_factory=set)  # unique values counted by earlier events
    creating: dict[DaySpace, set[GroupId]] = field(default_factory=dict)  # new combinations taken

    def _place(self, event: PendingEvent) -> None:
        """The combination a dimensioned event counts under: its own, if stored or created by
        an earlier event of the transaction, or new while the day's bound leaves room (as far
        as is known); else "(other)"."""
        if event.dimensions is None:
            return
        group = event.group_of(event.dimensions)
        creating = self.creating.setdefault(event.day_space, set())
        if group not in self.known.absent or group in creating:
            event.counted_as = event.dimensions
        elif self.known.combinations.get(event.day_space, 0) + len(creating) < self.known.cardinality:
            creating.add(group)
            event.counted_as = event.dimensions
        else:
            event.counted_as = dims.overflow(event.dimensions)

    def _new_in(self, event: PendingEvent) -> set[CounterScope]:
        """The windows where a unique_count event's value is new (as far as is known)."""
        if event.aggregation != "unique_count":
            return set()
        return {m[1] for m in event.markers if m not in self.known.seen and m not in self.values}

    def _adds(self, event: PendingEvent) -> Decimal:
        """What the event adds to its billing period's counter (what its limit judges)."""
        if event.aggregation == "unique_count":
            return Decimal(1 if "month" in self._new_in(event) else 0)
        return event.quantity

    def _counter(self, group: LimitGroup) -> Decimal:
        return self.known.counters.get(group, Decimal(0)) + self.used.get(group, Decimal(0))

    def _claims(self, event: PendingEvent) -> bool:
        return event.claims_metric(self.catalogued) and event.metric not in self.claimed.get(
            event.developer_id, set()
        )

    def _level(self, event: PendingEvent) -> RefusalReason | None:
        """A level's change must keep it in [0, ceiling]; judged only once the level is known
        (until then DynamoDB's condition judges the whole transaction)."""
        group = event.level_group
        if group not in self.known.counters:
            return None
        after = self._counter(group) + event.quantity
        if after < 0:
            return "floor"
        limit = event.hard_limit
        return "limit" if limit is not None and after > limit else None

    def refusal(self, event: PendingEvent) -> RefusalReason | None:
        """Why the event does not fit (its limit first: it will not fit later either), or None."""
        limit = event.hard_limit
        if event.aggregation == "level":
            reason = self._level(event)
            if reason is not None:
                return reason
        elif limit is not None and self._counter(event.limit_group) + self._adds(event) > limit:
            return "limit"
        if self._claims(event):
            size = self.known.catalog_sizes.get(event.developer_id, 0)
            if size + len(self.claimed.get(event.developer_id, ())) + 1 > MAX_UNDECLARED_METRICS:
                return "metrics"
        rate = (event.developer_id, self.minute, "*")
        if event.rate_ceiling is not None and self._counter(rate) + 1 > event.rate_ceiling:
            return "rate"
        return None

    def take(self, event: PendingEvent) -> None:
        if event.aggregation == "level":
            self.used[event.level_group] = self.used.get(event.level_group, Decimal(0)) + event.quantity
        elif event.hard_limit is not None:
            self.used[event.limit_group] = self.used.get(event.limit_group, Decimal(0)) + self._adds(event)
        event.unique_new = self._new_in(event)
        self._place(event)
        self.values.update(m for m in event.markers if m[1] in event.unique_new)
        if self._claims(event):
            self.claimed.setdefault(event.developer_id, set()).add(event.metric)
        rate = (event.developer_id, self.minute, "*")
        self.used[rate] = self.used.get(rate, Decimal(0)) + 1


def admit(
    pending: list[PendingEvent], known: Known, minute: str, catalogued: Catalogued
) -> tuple[list[PendingEvent], list[Refusal]]:
    """(admitted, refused): the events, taken in order, that fit their hard limit, the rate
    their plan enforces in `minute` and the bound of their developer's catalog, given what is
    known of the stored state and the room the earlier admitted events take; and those that
    do not, each with its reason.

    An event that does not fit is refused whole; a later, smaller one may still fit. The
    refusal is only a proposal: it is final once the events admitted before it are committed
    (see commit.commit_part).
    """
    room = _Room(known, minute, catalogued)
    admitted: list[PendingEvent] = []
    refused: list[Refusal] = []
    for event in pending:
        reason = room.refusal(event)
        if reason is not None:
            refused.append((event, reason))
            continue
        room.take(event)
        admitted.append(event)
    return admitted, refused
