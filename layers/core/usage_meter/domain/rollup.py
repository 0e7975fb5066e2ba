"""The rollup: month summaries from the day counters, drift between counters, re-runnable.

What a run covers
    By default (the scheduled run) the days from `LOOKBACK_DAYS` (36) days before today up
    to tomorrow: an event is accepted up to 35 days back, so a run started less than a day
    after the previous one still sees every day a backdated event may have landed on since
    then, and tomorrow catches events stamped up to 5 minutes ahead near midnight. A run
    given a date covers that date's whole month (e.g. to roll up a month the schedule never
    saw whole).

How it finds developers
    Day counters carry `activeDay = "<day>#<shard>"`; ActivityIndex lists them by that key.
    A run queries each covered day's 8 shards (paginated) and keeps the distinct
    (developer, month) pairs: no scan, and no single index key is hot. The index is
    eventually consistent: a counter written a moment ago may be missing from this run and is
    found by the next one, as long as its day is still covered.

What it writes
    For each (developer, month) it reads the month's day counters (one Query) and SETs one
    summary per metric (sk "S#<YYYY-MM>#<metric>": consumed, events, days, closed,
    rolledUpAt) to their absolute sums. Never ADD: any number of runs, repeated or
    concurrent, leave the same summaries. A summary whose content has not changed is not
    rewritten (so rolledUpAt says when it last changed), and a write never replaces a summary
    holding more events (one a concurrent run read later). `closed` is true once the month
    has ended; until then the summary is provisional. A closed month still changes when a
    backdated event lands in it (up to 35 days after its end); the next run writes the new sum.

Drift
    Tracking changes a day counter and its month counter in one transaction, so the month
    counter must equal the sum of its day counters. The run reads the month counters before
    and after the day counters: events committed in between put the day sum between the two
    readings, which is not drift. Anything else is checked once more, then reported: a
    `RollupDrift` metric (count) and a warning log line per counter, with the difference.
    The month counter is not repaired (tracking's ADDs and hard limits run on it).

Corrections
    A correction (cancel, amend) moves a day and its month together too, and counts itself on
    both (`corrections`): a month whose count changed between the two readings is not drift.
    Summaries are ordered by (corrections, events) rather than events alone, since a
    cancellation takes events out; a correction landing in a closed month marks its summary
    `adjusted`, and the next run writes the corrected sums (keeping the mark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Context, Decimal, Inexact
from functools import partial
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter.domain import clock
from usage_meter.domain.meters import combine
from usage_meter.domain.periods import RETENTION, day_key, days_between, month_key, month_period
from usage_meter.models.records import (
    MAX_REPORTED_DRIFTS,
    Counter,
    DriftOut,
    MonthSummary,
    RollupReport,
    RollupRequest,
)
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import Aggregation
from usage_meter.settings import settings
from usage_meter.store import counters as counter_store
from usage_meter.store import keys as store_keys
from usage_meter.store import summaries as summary_store

T = TypeVar("T")

logger = Logger(child=True)
metrics = Metrics()

LOOKBACK_DAYS = RETENTION.days  # the backdating window plus one day: see the module docstring
DEFAULT_WORKERS = 8
MAX_WORKERS = 10  # botocore's connection pool holds 10 connections per client


class RollupFailed(Exception):
    """Some developer-months could not be rolled up; what was written is correct, a retry
    finishes the rest."""


@dataclass(frozen=True)
class _Sum:
    """A month of one metric from its day counters, combined as its aggregation says."""

    consumed: Decimal = Decimal(0)
    events: int = 0
    days: int = 0
    aggregation: Aggregation = "sum"
    latest_key: str = ""
    corrections: int = 0  # a month counter's: the corrections that moved it

    def with_day(self, day: Counter, exact: Context) -> _Sum:
        so_far = (self.consumed, self.latest_key) if self.days else None
        consumed, latest_key = combine(day.aggregation, so_far, day, exact.add)
        return _Sum(consumed, self.events + day.events, self.days + 1, day.aggregation, latest_key)

    @property
    def grows(self) -> bool:
        """Whether its consumption only grows (a latest value or a level may go down)."""
        return self.aggregation not in ("latest", "level")


_ZERO = _Sum()


@dataclass
class _Outcome:
    """What rolling up one (developer, month) did."""

    summaries: int = 0
    written: int = 0
    unchanged: int = 0
    drifts: list[DriftOut] = field(default_factory=list)


def window(now: datetime, on: date | None = None, lookback_days: int | None = None) -> tuple[date, date]:
    """The days a run covers: `on`'s whole month, or LOOKBACK_DAYS back from today to tomorrow."""
    if on is not None:
        month = month_period(on)
        return month.first_day, month.last_day
    today = now.date()
    back = lookback_days if lookback_days is not None else LOOKBACK_DAYS
    return today - timedelta(days=max(back, 0)), today + timedelta(days=1)


def _exact() -> Context:
    """Decimal arithmetic at DynamoDB's 38 digits that raises rather than round."""
    return Context(prec=38, traps=[Inexact])


def _sum_days(counters: Iterable[Counter]) -> dict[str, _Sum]:
    """Per metric: exact sum (38 digits, DynamoDB's precision; anything inexact raises), events, days."""
    exact = _exact()
    sums: dict[str, _Sum] = {}
    for counter in counters:
        sums[counter.metric] = sums.get(counter.metric, _ZERO).with_day(counter, exact)
    return sums


def _as_sums(counters: Iterable[Counter]) -> dict[str, _Sum]:
    return {
        c.metric: _Sum(
            consumed=c.consumed, events=c.events, aggregation=c.aggregation, corrections=c.corrections
        )
        for c in counters
    }


def _month_distincts(sums: dict[str, _Sum], months: dict[str, _Sum]) -> dict[str, _Sum]:
    """A unique_count month is not the sum of its days (a value seen on two days counts once):
    its consumption is the month counter's own; its events still add up."""
    return {
        metric: replace(total, consumed=months[metric].consumed)
        if total.aggregation == "unique_count" and metric in months
        else total
        for metric, total in sums.items()
    }


def _same(a: _Sum, b: _Sum) -> bool:
    return (a.consumed, a.events) == (b.consumed, b.events)


def _between(low: _Sum, value: _Sum, high: _Sum) -> bool:
    """Whether a day sum read between two readings of its month counter can be true: events
    only grow, and so does consumption, but for a latest value or a level."""
    events = low.events <= value.events <= high.events
    return events and (not value.grows or low.consumed <= value.consumed <= high.consumed)


def _corrected(before: _Sum, after: _Sum) -> bool:
    """Whether a correction moved the month between the two readings: it moves its day and its
    month together, but takes events out (and a figure down), so the day sum read in between
    need not lie between the readings. Not drift; the next run reads the month again."""
    return before.corrections != after.corrections


def _read(
    developer_id: str, month: str, first_day: str, last_day: str
) -> tuple[dict[str, _Sum], list[DriftOut]]:
    """The day sums of a month, and the month counters that disagree with them.

    Counters only grow and a transaction changes a day and its month together, so with the
    month counters read before and after the day counters, a true month counter makes the
    day sum fall between the two readings. A disagreement is read again once before it is
    reported, so a burst of traffic is not mistaken for drift.
    """
    sums: dict[str, _Sum] = {}
    drifted: list[str] = []
    after: dict[str, _Sum] = {}
    for _attempt in range(2):
        before = _as_sums(counter_store.month_counters(developer_id, month))
        sums = _month_distincts(
            _sum_days(counter_store.day_counters(developer_id, first_day, last_day)), before
        )
        suspects = sorted(
            m for m in before.keys() | sums.keys() if not _same(before.get(m, _ZERO), sums.get(m, _ZERO))
        )
        sums = {m: replace(total, corrections=before.get(m, _ZERO).corrections) for m, total in sums.items()}
        if not suspects:
            return sums, []
        after = _as_sums(counter_store.month_counters(developer_id, month))
        drifted = [
            m
            for m in suspects
            if not _between(before.get(m, _ZERO), sums.get(m, _ZERO), after.get(m, _ZERO))
            and not _corrected(before.get(m, _ZERO), after.get(m, _ZERO))
        ]
        if not drifted:
            return sums, []
    drifts = []
    for metric in drifted:
        counted, summed = after.get(metric, _ZERO), sums.get(metric, _ZERO)
        drifts.append(
            DriftOut(
                developer_id=developer_id,
                month=month,
                metric=metric,
                month_counter=counted.consumed,
                day_sum=summed.consumed,
                difference=_exact().subtract(counted.consumed, summed.consumed),
                events_difference=counted.events - summed.events,
            )
        )
    return sums, drifts


def roll_up(developer_id: str, month: str, now: datetime) -> _Outcome:
    """Summaries of one developer's month from its day counters (3 Queries, plus one write per
    summary that changed)."""
    period = month_period(date.fromisoformat(f"{month}-01"))
    sums, drifts = _read(developer_id, month, day_key(period.first_day), day_key(period.last_day))
    stored = {s.metric: s for s in summary_store.month_summaries(developer_id, month)}
    outcome = _Outcome(drifts=drifts)
    rolled_up_at = format_timestamp(now)
    for metric, total in sorted(sums.items()):
        summary = MonthSummary(
            developer_id=developer_id,
            month=month,
            metric=metric,
            consumed=total.consumed,
            events=total.events,
            days=total.days,
            closed=period.end <= now,
            rolled_up_at=rolled_up_at,
            corrections=total.corrections,
        )
        outcome.summaries += 1
        old = stored.get(metric)
        if old is not None and (old.same_content(summary) or old.newer_than(summary)):
            outcome.unchanged += 1  # as it is, or newer (a concurrent run read later)
        elif summary_store.put_summary(summary):
            outcome.written += 1
        else:
            outcome.unchanged += 1  # a concurrent run stored the same or a newer one first
    return outcome


Task = Callable[[str, str, datetime], _Outcome]
Pair = tuple[str, str]  # (developer, month)


class InlineExecutor(Executor):
    """Runs each task at once in the calling thread: the one-worker run (and moto, which is
    not thread-safe) goes through the same code as the thread pool."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _listing(day: str, shard: int) -> list[str]:
    """Every developer of one day's shard of the index (all pages)."""
    return [developer_id for page in summary_store.active_developers(day, shard) for developer_id in page]


@dataclass
class _Run:
    """The state of one run: the pairs seen, the totals, the failures."""

    now: datetime
    days: list[date]
    executor: Executor
    task: Task
    seen: set[Pair] = field(default_factory=set)
    developers: set[str] = field(default_factory=set)
    total: _Outcome = field(default_factory=_Outcome)
    failed: int = 0

    def pairs(self) -> Iterator[Pair]:
        """New (developer, month) pairs, day by day; each day's index shards are read at once."""
        for day in self.days:
            month = month_key(day)
            shards = range(store_keys.ACTIVITY_SHARDS)
            for listing in self.executor.map(partial(_listing, day_key(day)), shards):
                for developer_id in listing:
                    if (developer_id, month) not in self.seen:
                        self.seen.add((developer_id, month))
                        self.developers.add(developer_id)
                        yield developer_id, month

    def execute(self, window: int) -> None:
        """Roll up every pair, at most `window` at a time in flight (the index may list any number)."""
        pending: dict[Future[_Outcome], Pair] = {}
        for pair in self.pairs():
            pending[self.executor.submit(self.task, *pair, self.now)] = pair
            if len(pending) >= window:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                self.harvest(done, pending)
        self.harvest(list(pending), pending)

    def harvest(self, futures: Iterable[Future[_Outcome]], pending: dict[Future[_Outcome], Pair]) -> None:
        for future in futures:
            pair = pending.pop(future)
            error = future.exception()
            if error is not None:
                self.failed += 1
                logger.error(
                    "rollup of a developer-month failed",
                    extra={"developerId": pair[0], "month": pair[1], "error": repr(error)},
                )
                continue
            outcome = future.result()
            self.total.summaries += outcome.summaries
            self.total.written += outcome.written
            self.total.unchanged += outcome.unchanged
            self.total.drifts.extend(outcome.drifts)

    def report(self, first: date, last: date, started: float) -> RollupReport:
        drifts = self.total.drifts
        for drift in drifts:
            logger.warning("month counter drifts from the sum of its days", extra=drift.wire())
        metrics.add_metric(name="RollupDrift", unit=MetricUnit.Count, value=len(drifts))
        metrics.add_metric(name="RollupSummariesWritten", unit=MetricUnit.Count, value=self.total.written)
        metrics.add_metric(name="RollupDevelopers", unit=MetricUnit.Count, value=len(self.developers))
        metrics.add_metric(name="RollupFailures", unit=MetricUnit.Count, value=self.failed)
        return RollupReport(
            first_day=day_key(first),
            last_day=day_key(last),
            days=len(self.days),
            months=sorted({month_key(day) for day in self.days}),
            developers=len(self.developers),
            developer_months=len(self.seen),
            summaries=self.total.summaries,
            summaries_written=self.total.written,
            summaries_unchanged=self.total.unchanged,
            drift=len(drifts),
            drifts=sorted(drifts, key=lambda d: (d.developer_id, d.month, d.metric))[:MAX_REPORTED_DRIFTS],
            failed=self.failed,
            duration_ms=int((time.monotonic() - started) * 1000),
        )


def worker_count(asked: int | None = None) -> int:
    """Threads of a run: as asked, else ROLLUP_WORKERS (default 8); at most botocore's pool."""
    configured = asked if asked is not None else settings().rollup_workers
    return min(max(configured if configured is not None else DEFAULT_WORKERS, 1), MAX_WORKERS)


def run(
    request: RollupRequest | None = None,
    *,
    lookback_days: int | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    task: Task = roll_up,
) -> RollupReport:
    """One rollup run over the window of `request` (see the module docstring).

    Developer-months are rolled up on `executor` (default: a pool of `worker_count(workers)`
    threads, or the calling thread for one) while the index is still being read. A developer-month that
    fails is logged and counted in `failed`; the caller fails the run then, so that it is
    retried (what was written is correct either way). Failing to read the index raises at once.
    """
    started = time.monotonic()
    now = clock.now()
    if lookback_days is None:
        lookback_days = settings().rollup_lookback_days
    first, last = window(now, request.date if request else None, lookback_days)
    count = worker_count(workers)
    own = executor is None
    pool = executor or (
        InlineExecutor() if count == 1 else ThreadPoolExecutor(count, thread_name_prefix="rollup")
    )
    state = _Run(now=now, days=days_between(first, last), executor=pool, task=task)
    try:
        state.execute(window=count * 4)
    finally:
        if own:
            pool.shutdown()
    report = state.report(first, last, started)
    logger.info("rollup finished", extra=report.model_dump(mode="json", by_alias=True, exclude={"drifts"}))
    return report
