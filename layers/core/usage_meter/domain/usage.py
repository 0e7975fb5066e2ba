"""Reading usage: the current billing period (or a range) and zero-filled history."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from usage_meter.domain import clock
from usage_meter.domain.dimensions import GroupQuery, Groups, grouped_meters, read_groups
from usage_meter.domain.identity import DeveloperResolver
from usage_meter.domain.meters import MeterBook, combine
from usage_meter.domain.periods import (
    RETENTION,
    Period,
    day_key,
    day_period,
    days_between,
    month_period,
    months_between,
    range_period,
    week_period,
)
from usage_meter.domain.plans import metric_limit, percentage_used, remaining
from usage_meter.domain.ratelimit import rate_report
from usage_meter.errors import ValidationFailed
from usage_meter.models.accounts import Identity, Plan
from usage_meter.models.records import Counter
from usage_meter.models.timestamps import format_instant
from usage_meter.models.wire import (
    Aggregation,
    CurrentUsageResponse,
    EntitlementResponse,
    HistoryEntry,
    HistoryResponse,
    MetricUsage,
    PeriodOut,
)
from usage_meter.store import counters as counter_store

MAX_RANGE_DAYS = 366
DEFAULT_HISTORY_DAYS = 30
FIRST_DATE = date(1970, 1, 1)
LAST_DATE = date(9998, 12, 31)
"""The dates a range may name: any usage there is, with room to spare, and far enough from
datetime's year 9999 that no period arithmetic (the day after endDate) can overflow."""

PeriodName = Literal["day", "week", "month"]
Granularity = Literal["day", "month"]


def _date_range(start_date: date | None, end_date: date | None, today: date) -> tuple[date, date]:
    """An inclusive, validated range; a missing end means today."""
    if start_date is None:
        raise ValidationFailed("endDate needs a startDate", code="invalid_range")
    last = end_date or today
    if not FIRST_DATE <= start_date <= LAST_DATE or not FIRST_DATE <= last <= LAST_DATE:
        raise ValidationFailed(
            f"dates must be from {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}", code="invalid_range"
        )
    if last < start_date:
        raise ValidationFailed("endDate is before startDate", code="invalid_range")
    if (last - start_date).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed(f"a range covers at most {MAX_RANGE_DAYS} days", code="invalid_range")
    return start_date, last


def resolver(caller: Identity | DeveloperResolver) -> DeveloperResolver:
    """The request's resolver: a router keeps one to reuse what a read already resolved (the
    developer, the plan) for the answer's rate headers; other callers pass the identity."""
    return caller if isinstance(caller, DeveloperResolver) else DeveloperResolver(caller)


def current_usage(
    caller: Identity | DeveloperResolver,
    *,
    developer_id: str | None = None,
    metric: str | None = None,
    period: PeriodName | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    query: GroupQuery | None = None,
) -> CurrentUsageResponse:
    """Usage of the billing period (default), today, this ISO week or a date range.

    The billing period reads the month counters (one Query); other ranges sum day counters
    (one Query). Both strongly consistent, so a track followed by a read sees the event.
    A grouped or filtered read (`query`) also reads the combination counters of each meter
    that declares its dimensions (one paginated Query each; see dimensions).
    """
    resolve = resolver(caller)
    target = resolve(developer_id)
    now = clock.now()
    asked = _asked_period(now, period, start_date, end_date)
    grouped = _grouped_meters(query, metric)
    billing = month_period(now)
    billing_counters = counter_store.month_counters(target, billing.key)
    selected = asked or billing
    plan = resolve.plan(target)
    expected = [metric] if metric else (plan.metrics if plan else [])
    tallies, total = _window_tallies(target, asked, billing_counters, metric, expected, now.date())
    groups: dict[str, Groups] = {}
    if query is not None and grouped:
        window = asked or billing
        read = read_groups(target, query, grouped, window.first_day, window.last_day, lambda _: "")
        groups = {name: steps.get("", Groups()) for name, steps in read.items()}
        if query.filters:  # only the matching events count
            tallies = {n: Tally(g.consumed, g.events, grouped[n]) for n, g in groups.items()}
            total = sum(g.events for g in groups.values())
    in_billing = {c.metric: c.consumed for c in billing_counters}
    for name, level in _levels(target, tallies).items():  # a level's usage is where it stands now
        tallies[name].consumed = in_billing[name] = level
    developer = resolve.developer(target)
    entries = {
        name: _metric_usage(plan, name, tallies[name], in_billing.get(name, Decimal(0)))
        for name in sorted(tallies)
    }
    if query is not None and query.group_by:
        for name, found in groups.items():
            if name in entries:
                entries[name].groups = found.ranked(query.group_by)
    return CurrentUsageResponse(
        developer_id=target,
        plan=developer.plan if developer else None,
        period=PeriodOut(
            key=selected.key, start=format_instant(selected.start), end=format_instant(selected.end)
        ),
        metrics=entries,
        total_requests=total,
        resets_in_days=math.ceil((billing.end - now).total_seconds() / 86400),
        rate_limit=rate_report(plan, target, now),
    )


def _window_tallies(
    developer_id: str,
    asked: Period | None,
    billing_counters: list[Counter],
    metric: str | None,
    expected: Iterable[str],
    today: date,
) -> tuple[dict[str, Tally], int]:
    """Each metric's figure in the window asked for (None: the billing period, whose counters
    are read already), and the events behind them."""
    counters = (
        billing_counters
        if asked is None
        else counter_store.day_counters(developer_id, day_key(asked.first_day), day_key(asked.last_day))
    )
    tallies, total = _sum_counters(counters, metric, expected, MeterBook())
    if asked is not None:
        _range_distincts(developer_id, asked, tallies, today)
    return tallies, total


def _grouped_meters(query: GroupQuery | None, metric: str | None) -> dict[str, Aggregation]:
    """The meters a grouped read groups, with their aggregations (none for a plain read)."""
    if query is None or not query.active:
        return {}
    return {name: meter.aggregation for name, meter in grouped_meters(query, metric).items()}


def _asked_period(
    now: datetime, period: PeriodName | None, start_date: date | None, end_date: date | None
) -> Period | None:
    """The range a reader asked for: a date range, today or this week; None for the billing period."""
    if period and (start_date or end_date):
        raise ValidationFailed("use either period or startDate/endDate", code="invalid_range")
    if start_date or end_date:
        return range_period(*_date_range(start_date, end_date, now.date()))
    if period == "day":
        return day_period(now)
    if period == "week":
        return week_period(now)
    return None


@dataclass
class Tally:
    """One metric's counters combined over a window, as its aggregation says: added (sum,
    count, a level's net change), the largest (max), the latest (latest)."""

    consumed: Decimal = Decimal(0)
    events: int = 0
    aggregation: Aggregation = "sum"
    latest_key: str = ""

    def add(self, counter: Counter) -> None:
        so_far = (self.consumed, self.latest_key) if self.events else None
        self.consumed, self.latest_key = combine(self.aggregation, so_far, counter)
        self.events += counter.events


AVERAGE_PLACES = Decimal("0.000000001")


def _sum_counters(
    counters: list[Counter], metric: str | None, expected: Iterable[str], meters: MeterBook
) -> tuple[dict[str, Tally], int]:
    """Consumption per metric (only `metric` when given) and the events behind it; every
    expected metric is present, zero when unused (its aggregation then read from its meter)."""
    tallies: dict[str, Tally] = {}
    total = 0
    for counter in counters:
        if metric and counter.metric != metric:
            continue
        tallies.setdefault(counter.metric, Tally(aggregation=counter.aggregation)).add(counter)
        total += counter.events
    for name in expected:
        if name not in tallies:
            meter = meters(name)
            tallies[name] = Tally(aggregation=meter.aggregation if meter else "sum")
    return tallies, total


def _range_distincts(developer_id: str, asked: Period, tallies: dict[str, Tally], today: date) -> None:
    """A unique_count over several days is the number of distinct values in them, not the sum
    of each day's: counted from the day markers (one Query), exact while they are all kept
    (the days of the retention window; packing keeps a day's markers past it). An older range
    keeps the sum of its days' distinct counts (README: Meters)."""
    unique = [name for name, tally in tallies.items() if tally.aggregation == "unique_count"]
    if not unique or asked.first_day == asked.last_day or asked.first_day < today - RETENTION:
        return
    distinct = counter_store.distinct_values(developer_id, day_key(asked.first_day), day_key(asked.last_day))
    for name in unique:
        tallies[name].consumed = Decimal(distinct.get(name, 0))


def _levels(developer_id: str, tallies: dict[str, Tally]) -> dict[str, Decimal]:
    """The current level of each level meter among `tallies` (one Query, only if there is one)."""
    wanted = {name for name, tally in tallies.items() if tally.aggregation == "level"}
    if not wanted:
        return {}
    stored = {c.metric: c.consumed for c in counter_store.levels(developer_id) if c.metric in wanted}
    return {name: stored.get(name, Decimal(0)) for name in wanted}


def _metric_usage(plan: Plan | None, name: str, tally: Tally, used_in_billing: Decimal) -> MetricUsage:
    """One metric's usage; limits are per billing period, so remaining and percentage always
    describe it, whatever range `consumed` covers."""
    allowance = metric_limit(plan, name)
    limit = allowance.limit if allowance else None
    average = (
        (tally.consumed / tally.events).quantize(AVERAGE_PLACES, rounding=ROUND_HALF_UP)
        if tally.aggregation == "sum" and tally.events
        else None
    )
    return MetricUsage(
        consumed=tally.consumed,
        limit=limit,
        remaining=remaining(limit, used_in_billing),
        percentage_used=percentage_used(limit, used_in_billing),
        aggregation=tally.aggregation,
        events=tally.events,
        average=average.normalize() if average is not None else None,
    )


def entitlement(
    caller: Identity | DeveloperResolver, metric: str, *, developer_id: str | None = None
) -> EntitlementResponse:
    """May the developer use `metric` now? False outside the plan or when a hard limit is used up."""
    resolve = resolver(caller)
    target = resolve(developer_id)
    now = clock.now()
    billing = month_period(now)
    allowance = metric_limit(resolve.plan(target), metric)
    meter = MeterBook()(metric)
    counter = (
        counter_store.level(target, metric)  # a level's use is where it stands, against its ceiling
        if meter is not None and meter.aggregation == "level"
        else counter_store.month_counter(target, billing.key, metric)
    )
    used = counter.consumed if counter else Decimal(0)
    limit = allowance.limit if allowance else None
    used_up = (
        allowance is not None and allowance.enforcement == "hard" and limit is not None and used >= limit
    )
    return EntitlementResponse(
        metric=metric,
        has_access=allowance is not None and not used_up,
        consumed=used,
        limit=limit,
        remaining=remaining(limit, used),
        enforcement=allowance.enforcement if allowance else None,
        resets_at=format_instant(billing.end),
    )


def usage_history(
    caller: Identity | DeveloperResolver,
    *,
    developer_id: str | None = None,
    metric: str | None = None,
    days: int | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
    granularity: Granularity = "day",
    query: GroupQuery | None = None,
    per_metric_events: bool = False,
) -> HistoryResponse:
    """Day (or month) entries over a range, oldest first, every step present (zero-filled).

    One paginated Query over the developer's day counters covers the whole range; a grouped or
    filtered read (`query`) adds one paginated Query per meter it groups. Grouped entries (and
    `per_metric_events`) also carry each metric's events.
    """
    target = resolver(caller)(developer_id)
    today = clock.now().date()
    first, last = _history_range(days, start_date, end_date, today)
    grouped = _grouped_meters(query, metric)
    steps = (
        [day_key(d) for d in days_between(first, last)]
        if granularity == "day"
        else months_between(first, last)
    )
    step_of = (lambda day: day) if granularity == "day" else (lambda day: day[:7])
    detailed = per_metric_events or (query is not None and query.active)
    tallies, seen = _history_tallies(target, metric, first, last, step_of)
    by_metric: dict[str, dict[str, Groups]] = {}
    if query is not None and grouped:
        by_metric = read_groups(target, query, grouped, first, last, step_of)
        if query.filters:  # only the matching events count
            seen, tallies = dict(grouped), _filtered(by_metric, grouped)
    return _history_answer(target, granularity, steps, seen, tallies, last, today, query, by_metric, detailed)


def _history_answer(
    target: str,
    granularity: Granularity,
    steps: list[str],
    seen: dict[str, Aggregation],
    tallies: StepTallies,
    last: date,
    today: date,
    query: GroupQuery | None,
    by_metric: dict[str, dict[str, Groups]],
    detailed: bool,
) -> HistoryResponse:
    """The entries of a history from its tallies: unique_count months and levels as stored,
    grouped metrics with their groups."""
    values = {
        name: {step: tallies[step][name].consumed for step in steps if name in tallies[step]} for name in seen
    }
    if granularity == "month" and "unique_count" in seen.values():
        _month_distincts(target, steps, seen, values)
    levels = [name for name, aggregation in seen.items() if aggregation == "level"]
    if levels:
        values.update(_closing_levels(target, levels, steps, values, last, today))
    entries = [_history_entry(step, sorted(seen), values, tallies[step], detailed) for step in steps]
    if query is not None and query.group_by:
        for entry in entries:
            entry.groups = {
                name: found[entry.date].ranked(query.group_by) if entry.date in found else []
                for name, found in sorted(by_metric.items())
            }
    return HistoryResponse(developer_id=target, granularity=granularity, entries=entries)


def _filtered(by_metric: dict[str, dict[str, Groups]], grouped: dict[str, Aggregation]) -> StepTallies:
    """step -> metric -> Tally of the events a filter keeps."""
    tallies: StepTallies = defaultdict(dict)
    for name, found in by_metric.items():
        for step, g in found.items():
            tallies[step][name] = Tally(g.consumed, g.events, grouped[name])
    return tallies


def _history_entry(
    step: str,
    names: list[str],
    values: dict[str, dict[str, Decimal]],
    tallies: dict[str, Tally],
    detailed: bool,
) -> HistoryEntry:
    """One step's entry: each metric's value, the events of all (and of each, `detailed`)."""
    return HistoryEntry(
        date=step,
        metrics={name: values[name].get(step, Decimal(0)) for name in names},
        total_requests=sum(t.events for t in tallies.values()),
        events={name: tallies[name].events if name in tallies else 0 for name in names} if detailed else None,
    )


StepTallies = dict[str, dict[str, Tally]]


def _history_tallies(
    developer_id: str, metric: str | None, first: date, last: date, step_of: Callable[[str], str]
) -> tuple[StepTallies, dict[str, Aggregation]]:
    """step -> metric -> Tally of the day counters from `first` to `last` (one paginated
    Query), and the aggregation of each metric seen (`metric` always)."""
    per_step: StepTallies = defaultdict(dict)
    seen: dict[str, Aggregation] = {}
    for counter in counter_store.day_counters(developer_id, day_key(first), day_key(last)):
        if metric and counter.metric != metric:
            continue
        per_step[step_of(counter.key)].setdefault(counter.metric, Tally(aggregation=counter.aggregation)).add(
            counter
        )
        seen[counter.metric] = counter.aggregation
    if metric and metric not in seen:
        seen[metric] = _aggregation_of(metric)
    return per_step, seen


def _aggregation_of(metric: str) -> Aggregation:
    """A metric's aggregation from its meter (a metric without one is summed)."""
    meter = MeterBook()(metric)
    return meter.aggregation if meter else "sum"


def _month_distincts(
    developer_id: str, months: list[str], seen: dict[str, Aggregation], values: dict[str, dict[str, Decimal]]
) -> None:
    """A unique_count month is its month counter, not the sum of its days (one Query)."""
    for counter in counter_store.month_range(developer_id, months[0], months[-1]):
        if seen.get(counter.metric) == "unique_count":
            values[counter.metric][counter.key] = counter.consumed


def _closing_levels(
    developer_id: str,
    names: list[str],
    steps: list[str],
    changes: dict[str, dict[str, Decimal]],
    last: date,
    today: date,
) -> dict[str, dict[str, Decimal]]:
    """Each level's closing value per step: where it stands now, less the changes made after
    the step (the range's own, and those after it up to today: one more Query then)."""
    now = {c.metric: c.consumed for c in counter_store.levels(developer_id)}
    later: dict[str, Decimal] = defaultdict(Decimal)
    if last < today:
        after = counter_store.day_counters(developer_id, day_key(last + timedelta(days=1)), day_key(today))
        for counter in after:
            later[counter.metric] += counter.consumed
    closing: dict[str, dict[str, Decimal]] = {}
    for name in names:
        running = now.get(name, Decimal(0)) - later[name]
        closing[name] = {}
        for step in reversed(steps):
            closing[name][step] = running
            running -= changes[name].get(step, Decimal(0))
    return closing


def _history_range(
    days: int | None, start_date: date | None, end_date: date | None, today: date
) -> tuple[date, date]:
    """The inclusive range of a history: the dates given, or the last `days` (default 30)."""
    if days is not None and (start_date or end_date):
        raise ValidationFailed("use either days or startDate/endDate", code="invalid_range")
    if start_date or end_date:
        return _date_range(start_date, end_date, today)
    span = DEFAULT_HISTORY_DAYS if days is None else days
    return today - timedelta(days=span - 1), today
