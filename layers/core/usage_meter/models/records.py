"""What is stored about usage: idempotency records, counters, month summaries, rollup reports."""

from __future__ import annotations

from datetime import date as date_type
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from usage_meter.models.wire import Aggregation, ApiModel, EventLogStatus


class Revision(BaseModel):
    """One correction of an event, as its record keeps it."""

    revision: int
    action: Literal["cancel", "amend"]
    at: str
    reason: str
    quantity: Decimal | None = None  # the quantity before an amendment
    metadata: dict[str, Any] | None = None  # the metadata before an amendment


class IdempotencyRecord(BaseModel):
    """The stored outcome of a keyed event; a duplicate answers from it."""

    developer_id: str
    idempotency_key: str
    payload_hash: str
    metric: str
    quantity: Decimal
    event_time: str
    day: str
    period: str
    recorded_at: str
    expires_at: int
    metadata: dict[str, Any] | None = None
    commit_token: str | None = None  # the ClientRequestToken of the transaction that wrote it
    dimensions: dict[str, str] | None = None  # the combination its day was counted under (its
    # meter's dimensions: the event's values, or "(other)" past the cardinality bound)
    status: EventLogStatus = "recorded"
    revision: int = 0  # corrections applied; each one is conditioned on the revision it read
    revisions: list[Revision] = []  # what each correction changed, oldest first
    correction_token: str | None = None  # the token of the correction that wrote this revision
    counter_shard: int | None = None  # a sharded meter's day and month counter shard it added to
    # (None: not sharded, or recorded before shards were picked per transaction: by its key)
    minute_shard: int = 0  # the minute counter shard it added to


AccountKind = Literal["developer", "plan", "meter"]


class AccountCheck(BaseModel):
    """What a request took from the container's cache of the accounts table, asserted by a
    ConditionCheck in its transaction: the item still has `revision` (None: it has none), or,
    when `exists` is false, there is still no such item. `stamp`: the plan's or meter's stamp
    copy that is checked instead of the item (None: the item itself)."""

    model_config = ConfigDict(frozen=True)

    kind: AccountKind
    name: str
    revision: str | None = None
    exists: bool = True
    stamp: int | None = None


CounterScope = Literal["day", "month", "minute", "level"]
LEVEL_KEY = "current"
"""The key of a level meter's running level (scope "level"): one item per developer and meter."""


class CounterIncrement(BaseModel):
    """One change of one counter item: a (day, billing period, minute or running level;
    metric) of one developer. `events` is always added; what happens to `consumed` depends on
    the aggregation:

    - ADD `quantity` (sum, count, a level's change). `ceiling` makes it conditional: applied
      only if the counter stays <= ceiling afterwards (hard limits, enforced rates).
    - a level also keeps within its bounds: with `level_range` (low, high) the level before
      the change must be in [low, high] (high None: no ceiling), so that every event of the
      transaction, taken in order, keeps it in [0, ceiling]; with `level_was`, it must be
      exactly that (a transaction that refused one of the level's events asserts what it read).
    - `peak` (max): SET consumed to it, only if larger than what is stored.
    - `latest` (latest): (order key, value) SET, only if the key is later than the stored one.

    `expires_at` marks short-lived counters (minutes) for TTL deletion.
    """

    developer_id: str
    scope: CounterScope
    key: str
    metric: str
    quantity: Decimal
    events: int
    shard: int = 0  # which of a sharded meter's items (0: the counter's own item)
    aggregation: Aggregation = "sum"  # the metric's meter's, kept on the counter for its readers
    ceiling: Decimal | None = None
    level_range: tuple[Decimal, Decimal | None] | None = None
    level_was: Decimal | None = None
    peak: Decimal | None = None
    latest: tuple[str, Decimal] | None = None
    expires_at: int | None = None


class CounterCorrection(BaseModel):
    """What a correction does to one counter item: `events` and `quantity` added (negative to
    take an event out), or `consumed` SET (a max or latest recomputed) and `latest_key` SET
    ("" removes it). Conditioned on the item existing and on what the correction read
    (`expect_*`: the window it recomputed has not changed since) or on bounds of `consumed`
    before the change (`low`/`high`: a level's floor and ceiling, a hard limit's room)."""

    developer_id: str
    scope: CounterScope
    key: str
    metric: str
    quantity: Decimal = Decimal(0)
    events: int = 0
    shard: int = 0  # a sharded meter's counter item the event added to (see CounterIncrement)
    consumed: Decimal | None = None
    latest_key: str | None = None
    expect_events: int | None = None
    expect_consumed: Decimal | None = None
    expect_latest_key: str | None = None
    expect_corrections: int | None = None
    low: Decimal | None = None
    high: Decimal | None = None


class MetricClaim(BaseModel):
    """Metrics entering one developer's metric catalog in one transaction: an item for each
    (put only if it is not there yet) and the catalog's size raised by as many, only while it
    stays at most `ceiling`. Both commit with the events that use the metrics, or neither."""

    developer_id: str
    metrics: list[str]
    ceiling: int


class UniqueMarker(BaseModel):
    """A value a unique_count meter sees for the first time in a day or month: put only if
    absent, in the transaction that counts it, so each value is counted once per window."""

    developer_id: str
    scope: CounterScope  # day or month
    window: str
    metric: str
    digest: str  # sha256 of the value, 32 hex characters
    expires_at: int  # kept while the window can still take (backdated) events


class GroupIncrement(BaseModel):
    """One change of one day's counter of one combination of dimension values (a dimensioned
    sum or count meter): `quantity` and `events` added. The combination's item is asserted to
    exist (`new` False) or to be absent (`new` True: its first writer, which also takes a place
    under the day's cardinality bound unless it is the overflow combination)."""

    developer_id: str
    metric: str
    day: str
    values: dict[str, str]  # dimension -> value (every dimension of the meter)
    digest: str  # of the values: the item's key
    quantity: Decimal
    events: int
    aggregation: Aggregation = "sum"
    new: bool = False


class CombinationClaim(BaseModel):
    """New combinations of one (developer, meter, day): the day's count of combinations raised
    by `combinations`, only while it stays at most `ceiling` (the cardinality bound)."""

    developer_id: str
    metric: str
    day: str
    combinations: int
    ceiling: int


class GroupCounter(BaseModel):
    """A day's counter of one combination, as read back."""

    metric: str
    day: str
    values: dict[str, str]
    consumed: Decimal
    events: int


class Counter(BaseModel):
    """A counter item as read back."""

    developer_id: str
    scope: CounterScope
    key: str
    metric: str
    consumed: Decimal
    events: int
    aggregation: Aggregation = "sum"  # counters written before meters were summed
    latest_key: str | None = None  # a latest meter's: "<event time>#<idempotency key>" of its value
    corrections: int = 0  # corrections that moved it (day and month counters)


# ---- rollup: month summaries and the run's report -------------------------------------------


class MonthSummary(BaseModel):
    """A developer's usage of one metric in one billing period, summed from its day counters.

    Stored as an absolute value (SET, never ADD): writing it again changes nothing. `closed`
    is true once the month has ended; a closed month can still receive backdated events for
    35 days after its end, and the next rollup then writes the new sum.
    """

    developer_id: str
    month: str
    metric: str
    consumed: Decimal
    events: int
    days: int  # days of the month with usage of this metric
    closed: bool
    rolled_up_at: str  # when this content was written (an unchanged summary is not rewritten)
    corrections: int = 0  # corrections its month counter had taken when it was read
    adjusted: bool = False  # a correction landed after the month closed

    def same_content(self, other: MonthSummary) -> bool:
        """Equal sums, days, closed flag and corrections: rewriting would change nothing but rolledUpAt."""
        return (self.consumed, self.events, self.days, self.closed, self.corrections) == (
            other.consumed,
            other.events,
            other.days,
            other.closed,
            other.corrections,
        )

    def newer_than(self, other: MonthSummary) -> bool:
        """Read later than `other`: more corrections, or as many and more events (events only
        grow between corrections)."""
        return (self.corrections, self.events) > (other.corrections, other.events)


class RollupRequest(BaseModel):
    """What a rollup is asked to cover: the scheduled window (no date) or one day's month."""

    model_config = ConfigDict(extra="ignore")  # a scheduled event carries EventBridge's fields

    date: date_type | None = None


class DriftOut(ApiModel):
    """A real-time month counter that disagrees with the sum of its day counters."""

    developer_id: str
    month: str
    metric: str
    month_counter: Decimal
    day_sum: Decimal
    difference: Decimal  # month counter minus day sum
    events_difference: int


class RollupReport(ApiModel):
    """What one rollup run did."""

    first_day: str
    last_day: str
    days: int  # days covered (each read from every ActivityIndex shard)
    months: list[str]
    developers: int  # distinct developers found active in the covered days
    developer_months: int
    summaries: int  # month summaries computed (one per developer, month and metric)
    summaries_written: int
    summaries_unchanged: int
    drift: int  # month counters that disagree with their day sums
    drifts: list[DriftOut]  # the first MAX_REPORTED_DRIFTS of them
    failed: int  # developer-months that could not be rolled up (the run then fails and retries)
    duration_ms: int


MAX_REPORTED_DRIFTS = 100
