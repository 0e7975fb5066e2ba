"""The rollup against moto: month summaries equal the day sums exactly, re-runs change nothing,
late events converge, every active developer is found, drift is reported; the handler, the
CLI and the template's wiring and least-privilege policy."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.domain import periods, rollup
from usage_meter.errors import Busy
from usage_meter.models.records import MonthSummary, RollupReport, RollupRequest
from usage_meter.store import counters as counter_store
from usage_meter.store import dynamodb as store_db
from usage_meter.store import keys as store_keys
from usage_meter.store import summaries as summary_store
from usage_meter_admin import cli
from usage_meter_local.events import LambdaContext
from usage_meter_local.handlers import load_handler
from usage_meter_local.template import ROOT, function_code, load

from helpers import DEV_A, DEV_B, SERVICE, counters, iso, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
# early December: November is a closed billing period, December still open
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
ALICE, BOB = DEV_A["developerId"], DEV_B["developerId"]


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics of runs outside a handler stay in the process until flushed: each test starts
    without them. (The stack fixture runs the rollup single-threaded: moto is not thread-safe;
    the engine tier runs it with its thread pool against DynamoDB Local.)"""
    rollup.metrics.clear_metrics()
    yield
    rollup.metrics.clear_metrics()


@pytest.fixture
def handler() -> Callable[[dict[str, Any]], dict[str, Any]]:
    function = load_handler(*function_code("RollupFunction"))
    return lambda event: function(event, LambdaContext("RollupFunction"))


def at(day: str, hour: int = 12) -> str:
    return iso(datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC))


def track(stack: Stack, events: list[tuple[str, str, str, Any]]) -> None:
    """(developer, day, metric, quantity) events through the API, as the provider's backend sends them."""
    for start in range(0, len(events), 100):
        body = {
            "events": [
                {"developerId": d, "timestamp": at(day), "metric": m, "quantity": q}
                for d, day, m, q in events[start : start + 100]
            ]
        }
        answer = stack.track(jsonutil.dumps(body), auth=SERVICE)  # exact decimals
        assert answer.status == 200, answer.body
        assert answer.json()["recorded"] == len(body["events"]), answer.body


def summary_items(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    """The raw summary items, as stored."""
    return {
        (i["pk"]["S"], i["sk"]["S"]): i
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith("S#")
    }


def summaries(stack: Stack) -> dict[tuple[str, str], tuple[Decimal, int, int, bool]]:
    return {
        key: (Decimal(i["consumed"]["N"]), int(i["events"]["N"]), int(i["days"]["N"]), i["closed"]["BOOL"])
        for key, i in summary_items(stack).items()
    }


def day_sums(stack: Stack) -> dict[tuple[str, str], tuple[Decimal, int, int]]:
    """What the summaries must say, computed here from the day counters themselves."""
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
    for (pk, sk), (consumed, events) in counters(stack.dynamodb, stack.usage_table).items():
        if sk.startswith("D#"):
            _, day, metric = sk.split("#", 2)
            slot = sums[(pk, f"S#{day[:7]}#{metric}")]
            slot[0] += consumed
            slot[1] += events
            slot[2] += 1
    return {key: (consumed, events, days) for key, (consumed, events, days) in sums.items()}


def without_closed(found: dict[tuple[str, str], tuple[Decimal, int, int, bool]]) -> dict[Any, Any]:
    return {key: value[:3] for key, value in found.items()}


def counter_items(stack: Stack) -> list[dict[str, Any]]:
    return [
        i for i in table_items(stack.dynamodb, stack.usage_table) if not i["sk"]["S"].startswith(("S#", "A#"))
    ]


@pytest.fixture
def counted_calls() -> Iterator[Counter[str]]:
    """DynamoDB operations the service makes, by name (and index queries apart)."""
    calls: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name == "Query" and params.get("IndexName"):
            name = f"Query:{params['IndexName']}"
        calls[name] += 1

    client = store_db.client()
    client.meta.events.register("provide-client-params.dynamodb", count)
    yield calls
    client.meta.events.unregister("provide-client-params.dynamodb", count)


# ---- what a run writes ------------------------------------------------------------------------


def test_summaries_are_the_exact_sums_of_the_day_counters(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    track(
        stack,
        [
            (ALICE, "2026-11-03", "api_calls", Decimal("0.1")),
            (ALICE, "2026-11-03", "api_calls", Decimal("0.2")),
            (ALICE, "2026-11-20", "api_calls", Decimal("1.000000001")),
            (ALICE, "2026-11-30", "tokens", Decimal("1250.5")),
            (ALICE, "2026-12-02", "api_calls", 7),
            (BOB, "2026-12-01", "bytes", Decimal("999999999999.999999999")),  # no limit on bytes
            (BOB, "2026-12-02", "bytes", Decimal("0.000000001")),
        ],
    )
    counters_before = counter_items(stack)
    records_before = table_items(stack.dynamodb, stack.idempotency_table)

    report = rollup.run()

    assert summaries(stack) == {
        ("DEV#dev_alice", "S#2026-11#api_calls"): (Decimal("1.300000001"), 3, 2, True),
        ("DEV#dev_alice", "S#2026-11#tokens"): (Decimal("1250.5"), 1, 1, True),
        ("DEV#dev_alice", "S#2026-12#api_calls"): (Decimal(7), 1, 1, False),  # provisional
        ("DEV#dev_bob", "S#2026-12#bytes"): (Decimal(10**12), 2, 2, False),
    }
    assert without_closed(summaries(stack)) == day_sums(stack)
    item = summary_items(stack)[("DEV#dev_alice", "S#2026-11#api_calls")]
    assert item["consumed"] == {"N": "1.300000001"}  # plain notation, no float on the way
    assert item["developerId"] == {"S": "dev_alice"}
    assert (item["month"], item["metric"]) == ({"S": "2026-11"}, {"S": "api_calls"})
    assert item["rolledUpAt"] == {"S": "2026-12-03T09:30:00.000Z"}
    assert "activeDay" not in item  # summaries stay out of the activity index
    # the rollup only adds summaries: counters and idempotency records are as they were
    assert counter_items(stack) == counters_before
    assert table_items(stack.dynamodb, stack.idempotency_table) == records_before

    assert report.model_dump(exclude={"duration_ms"}) == {
        "first_day": "2026-10-28",  # 36 days back
        "last_day": "2026-12-04",  # tomorrow
        "days": 38,
        "months": ["2026-10", "2026-11", "2026-12"],
        "developers": 2,
        "developer_months": 3,
        "summaries": 4,
        "summaries_written": 4,
        "summaries_unchanged": 0,
        "drift": 0,
        "drifts": [],
        "failed": 0,
    }


def test_stored_summaries_read_back_as_models(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-05", "api_calls", Decimal("2.5"))])
    rollup.run()
    assert summary_store.month_summaries(ALICE, "2026-11") == [
        MonthSummary(
            developer_id=ALICE,
            month="2026-11",
            metric="api_calls",
            consumed=Decimal("2.5"),
            events=1,
            days=1,
            closed=True,
            rolled_up_at="2026-12-03T09:30:00.000Z",
        )
    ]
    assert summary_store.month_summaries(ALICE, "2026-12") == []


def test_running_three_times_leaves_byte_identical_summaries(
    stack: Stack, freeze: Freeze, counted_calls: Counter[str]
) -> None:
    freeze(NOW)
    track(
        stack,
        [
            (ALICE, "2026-11-03", "api_calls", Decimal("0.1")),
            (ALICE, "2026-11-29", "tokens", 40),
            (ALICE, "2026-12-01", "api_calls", 2),
            (BOB, "2026-11-30", "api_calls", Decimal("3.333")),
        ],
    )
    counted_calls.clear()
    first = rollup.run()
    after_first = summary_items(stack)
    assert first.summaries_written == first.summaries == 4
    days, shards = 38, store_keys.ACTIVITY_SHARDS
    # each developer-month: its month counters, its day counters, its stored summaries
    # (3 Queries), then one UpdateItem per summary that changed; each closed month (November,
    # of both developers) raises usage.period.closed: its claim put and marked published, and
    # the endpoints read once for the run
    assert counted_calls == {
        "Query:ActivityIndex": days * shards,
        "Query": 3 * 3,
        "UpdateItem": 4 + 2,
        "PutItem": 2,
        "Query:KindIndex": 1,
    }

    for hours in (1, 2):  # later runs, by the clock too
        freeze(NOW + timedelta(hours=hours))
        counted_calls.clear()
        again = rollup.run()
        assert summary_items(stack) == after_first  # every attribute, rolledUpAt included
        assert (again.summaries, again.summaries_written, again.summaries_unchanged) == (4, 0, 4)
        assert counted_calls == {"Query:ActivityIndex": days * shards, "Query": 3 * 3}  # no write


def test_a_write_never_puts_an_older_sum_back(stack: Stack, freeze: Freeze) -> None:
    """A slower concurrent run that read fewer events cannot replace a newer summary."""
    freeze(NOW)
    newer = MonthSummary(
        developer_id=ALICE,
        month="2026-11",
        metric="api_calls",
        consumed=Decimal(5),
        events=5,
        days=2,
        closed=False,
        rolled_up_at="2026-11-30T23:00:00.000Z",
    )
    assert summary_store.put_summary(newer) is True
    older = newer.model_copy(update={"consumed": Decimal(4), "events": 4, "rolled_up_at": "x"})
    assert summary_store.put_summary(older) is False
    assert summary_store.month_summaries(ALICE, "2026-11") == [newer]
    assert summary_store.put_summary(newer.model_copy(update={"rolled_up_at": "y"})) is False  # same content
    closed = newer.model_copy(update={"closed": True, "rolled_up_at": "2026-12-01T00:00:00.000Z"})
    assert summary_store.put_summary(closed) is True  # the month ended: closed, same sums
    assert summary_store.put_summary(newer) is False  # a run from before the month ended cannot reopen it
    assert summary_store.month_summaries(ALICE, "2026-11") == [closed]
    grown = closed.model_copy(update={"consumed": Decimal(6), "events": 6, "rolled_up_at": "z"})
    assert summary_store.put_summary(grown) is True  # a late event: more events, a new sum
    assert summary_store.month_summaries(ALICE, "2026-11") == [grown]


# ---- late events --------------------------------------------------------------------------------


def test_a_late_event_into_a_closed_day_is_picked_up_by_the_next_run(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-10", "api_calls", 10), (ALICE, "2026-12-01", "api_calls", 1)])
    rollup.run()
    assert summaries(stack)[("DEV#dev_alice", "S#2026-11#api_calls")] == (Decimal(10), 1, 1, True)

    # an hour later, a backdated event into a closed day of the closed month (23 days back), and
    # one for a developer whose only activity is that backdated day
    freeze(NOW + timedelta(minutes=30))
    track(stack, [(ALICE, "2026-11-10", "api_calls", Decimal("0.5")), (BOB, "2026-11-05", "tokens", 3)])
    assert counters(stack.dynamodb, stack.usage_table)[("DEV#dev_alice", "D#2026-11-10#api_calls")] == (
        Decimal("10.5"),
        2,
    )
    freeze(NOW + timedelta(hours=1))
    report = rollup.run()

    assert summaries(stack)[("DEV#dev_alice", "S#2026-11#api_calls")] == (Decimal("10.5"), 2, 1, True)
    assert summaries(stack)[("DEV#dev_bob", "S#2026-11#tokens")] == (Decimal(3), 1, 1, True)
    assert without_closed(summaries(stack)) == day_sums(stack)
    item = summary_items(stack)[("DEV#dev_alice", "S#2026-11#api_calls")]
    assert item["rolledUpAt"] == {"S": "2026-12-03T10:30:00.000Z"}  # it changed, so it was written
    assert (report.summaries_written, report.summaries_unchanged) == (2, 1)  # Dec unchanged


def test_the_oldest_backdated_event_is_still_covered_by_the_next_run(stack: Stack, freeze: Freeze) -> None:
    """An event 35 days old (the oldest accepted), sent just before midnight; the next run comes
    after midnight, so its day is now 36 days back, and still covered."""
    late_evening = datetime(2026, 12, 3, 23, 50, tzinfo=UTC)
    freeze(late_evening)
    oldest = late_evening - periods.BACKDATE_WINDOW + timedelta(minutes=1)  # 2026-10-29 23:51
    answer = stack.track(
        {"developerId": BOB, "metric": "api_calls", "quantity": 4, "timestamp": iso(oldest)}, auth=SERVICE
    )
    assert answer.status == 200, answer.body

    freeze(late_evening + timedelta(hours=1))  # the next hourly run, on the next day
    report = rollup.run()
    assert report.first_day == "2026-10-29"
    assert summaries(stack) == {("DEV#dev_bob", "S#2026-10#api_calls"): (Decimal(4), 1, 1, True)}


def test_the_window_reaches_back_past_the_backdating_window() -> None:
    for moment in (NOW, datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, tzinfo=UTC)):
        first, last = rollup.window(moment)
        # any event accepted in the day before this run lands on a covered day
        assert first <= (moment - timedelta(days=1) - periods.BACKDATE_WINDOW).date()
        assert last >= (moment + periods.FUTURE_TOLERANCE).date()
    assert rollup.window(NOW, date(2026, 2, 14)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert rollup.window(NOW, lookback_days=1) == (date(2026, 12, 2), date(2026, 12, 4))


def test_a_given_date_rolls_up_its_whole_month(stack: Stack, freeze: Freeze) -> None:
    """Days outside the scheduled window are rolled up on demand (e.g. a month it never saw whole)."""
    freeze(datetime(2026, 11, 2, 8, 0, tzinfo=UTC))
    track(stack, [(ALICE, "2026-10-01", "api_calls", 1), (ALICE, "2026-10-31", "api_calls", 2)])
    freeze(NOW)  # 2026-10-01 is now outside the scheduled window
    scheduled = rollup.run()
    assert summaries(stack)[("DEV#dev_alice", "S#2026-10#api_calls")] == (Decimal(3), 2, 2, True)
    assert scheduled.developer_months == 1  # found through 2026-10-31 only

    stack.dynamodb.delete_item(
        TableName=stack.usage_table, Key={"pk": {"S": "DEV#dev_alice"}, "sk": {"S": "S#2026-10#api_calls"}}
    )
    track(stack, [(ALICE, "2026-12-01", "api_calls", 5)])
    on_demand = rollup.run(RollupRequest(date=date(2026, 10, 1)))
    assert (on_demand.first_day, on_demand.last_day, on_demand.days) == ("2026-10-01", "2026-10-31", 31)
    assert summaries(stack) == {("DEV#dev_alice", "S#2026-10#api_calls"): (Decimal(3), 2, 2, True)}


# ---- finding developers ---------------------------------------------------------------------------


def seed_counters(stack: Stack, events: list[tuple[str, str, str, Any]]) -> None:
    """Day and month counters as tracking leaves them (activeDay included), written directly:
    moto copies the whole table in every transaction, too slow for hundreds of developers."""
    totals: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for developer_id, day, metric, quantity in events:
        for sk in (f"D#{day}#{metric}", f"M#{day[:7]}#{metric}"):
            totals[(developer_id, sk)][0] += Decimal(quantity)
            totals[(developer_id, sk)][1] += 1
    for (developer_id, sk), (consumed, count) in totals.items():
        scope, key, metric = sk.split("#", 2)
        item = {
            "pk": {"S": f"DEV#{developer_id}"},
            "sk": {"S": sk},
            "developerId": {"S": developer_id},
            "metric": {"S": metric},
            "day" if scope == "D" else "month": {"S": key},
            "consumed": {"N": str(consumed)},
            "events": {"N": str(count)},
        }
        if scope == "D":
            item["activeDay"] = {"S": store_keys.activity_key(key, developer_id)}
        stack.dynamodb.put_item(TableName=stack.usage_table, Item=item)


def test_every_active_developer_is_found_across_shards_and_pages(
    stack: Stack, freeze: Freeze, monkeypatch: pytest.MonkeyPatch, counted_calls: Counter[str]
) -> None:
    freeze(NOW)
    developers = [f"dev_{i:04d}" for i in range(250)]
    seed_counters(
        stack,
        [(d, "2026-12-02", "api_calls", i + 1) for i, d in enumerate(developers)]
        + [(d, "2026-12-02", "tokens", 1) for d in developers[:40]]
        + [(d, "2026-12-01", "api_calls", 1) for d in developers[::5]]
        + [(d, "2026-11-30", "api_calls", 1) for d in developers[::10]],
    )
    shards = Counter(store_keys.activity_shard(d) for d in developers)
    assert set(shards) == set(range(store_keys.ACTIVITY_SHARDS))
    assert max(shards.values()) < 2 * len(developers) / store_keys.ACTIVITY_SHARDS  # no hot index key

    # small index pages, so that every shard's listing of a day takes several
    real_call = store_db.usage_call

    def small_pages(operation: str, **kwargs: Any) -> Any:
        if kwargs.get("IndexName"):
            kwargs["Limit"] = 7
        return real_call(operation, **kwargs)

    monkeypatch.setattr(store_db, "usage_call", small_pages)
    counted_calls.clear()
    report = rollup.run(lookback_days=3)  # 2026-11-30 .. 2026-12-04: a short window, moto is slow

    assert report.developers == 250
    assert report.developer_months == 250 + 25
    assert report.summaries == report.summaries_written == 250 + 40 + 25
    assert report.drift == 0
    found = summaries(stack)
    assert without_closed(found) == day_sums(stack)
    assert found[("DEV#dev_0245", "S#2026-12#api_calls")] == (Decimal(247), 2, 2, False)
    assert found[("DEV#dev_0240", "S#2026-11#api_calls")] == (Decimal(1), 1, 1, True)
    # Dec 2 lists 290 index items (one per developer and metric) in pages of at most 7
    assert counted_calls["Query:ActivityIndex"] >= 290 // 7 + 50 // 7 + 25 // 7


# ---- drift ----------------------------------------------------------------------------------------


@pytest.fixture
def drift_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.WARNING)
    target = logging.getLogger(rollup.logger.name)
    target.addHandler(keep)
    yield records
    target.removeHandler(keep)


def test_drift_is_reported_and_the_summary_follows_the_days(
    stack: Stack, freeze: Freeze, drift_log: list[logging.LogRecord]
) -> None:
    freeze(NOW)
    track(
        stack,
        [
            (ALICE, "2026-11-03", "api_calls", Decimal("1.25")),
            (ALICE, "2026-11-04", "api_calls", 2),
            (BOB, "2026-11-04", "api_calls", 1),
        ],
    )
    # the real-time month counter is corrupted behind the service's back
    stack.dynamodb.update_item(
        TableName=stack.usage_table,
        Key={"pk": {"S": "DEV#dev_alice"}, "sk": {"S": "M#2026-11#api_calls"}},
        UpdateExpression="SET #c = :c, #e = :e",
        ExpressionAttributeNames={"#c": "consumed", "#e": "events"},
        ExpressionAttributeValues={":c": {"N": "5.25"}, ":e": {"N": "3"}},
    )
    # and a month counter without any day counter behind it
    stack.dynamodb.put_item(
        TableName=stack.usage_table,
        Item={
            "pk": {"S": "DEV#dev_bob"},
            "sk": {"S": "M#2026-11#tokens"},
            "developerId": {"S": "dev_bob"},
            "month": {"S": "2026-11"},
            "metric": {"S": "tokens"},
            "consumed": {"N": "7"},
            "events": {"N": "1"},
        },
    )

    report = rollup.run()

    assert report.drift == 2
    assert [d.wire() for d in report.drifts] == [
        {
            "developerId": "dev_alice",
            "month": "2026-11",
            "metric": "api_calls",
            "monthCounter": Decimal("5.25"),
            "daySum": Decimal("3.25"),
            "difference": Decimal(2),
            "eventsDifference": 1,
        },
        {
            "developerId": "dev_bob",
            "month": "2026-11",
            "metric": "tokens",
            "monthCounter": Decimal(7),
            "daySum": Decimal(0),
            "difference": Decimal(7),
            "eventsDifference": 1,
        },
    ]
    # the summaries follow the day counters, and the month counter is left as it is
    assert summaries(stack) == {
        ("DEV#dev_alice", "S#2026-11#api_calls"): (Decimal("3.25"), 2, 2, True),
        ("DEV#dev_bob", "S#2026-11#api_calls"): (Decimal(1), 1, 1, True),
    }
    assert counters(stack.dynamodb, stack.usage_table)[("DEV#dev_alice", "M#2026-11#api_calls")] == (
        Decimal("5.25"),
        3,
    )
    # the metric, as CloudWatch receives it (EMF)
    emitted = rollup.metrics.serialize_metric_set()
    assert emitted["RollupDrift"] == [2.0]
    assert {"Name": "RollupDrift", "Unit": "Count"} in emitted["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    # one log line per drifting counter, with who, what and by how much
    lines = [r for r in drift_log if r.getMessage() == "month counter drifts from the sum of its days"]
    assert [(r.developerId, r.metric, r.month, r.difference) for r in lines] == [  # type: ignore[attr-defined]
        ("dev_alice", "api_calls", "2026-11", Decimal(2)),
        ("dev_bob", "tokens", "2026-11", Decimal(7)),
    ]
    assert all(r.levelno == logging.WARNING for r in lines)


def test_no_drift_is_reported_when_the_counters_agree(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-03", "api_calls", 1), (ALICE, "2026-12-01", "tokens", 2)])
    assert rollup.run().drift == 0
    assert rollup.metrics.serialize_metric_set()["RollupDrift"] == [0.0]  # always sent, for alarms


def test_events_committed_while_a_run_reads_are_not_drift(
    stack: Stack, freeze: Freeze, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event recorded between the run's reads of the month and the day counters puts the
    day sum between its two readings of the month counter: traffic, not drift."""
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-03", "api_calls", 1)])
    real_day_counters = counter_store.day_counters
    sent: list[int] = []

    def day_counters_with_traffic(developer_id: str, first: str, last: str) -> Any:
        if not sent:
            sent.append(1)
            track(stack, [(ALICE, "2026-11-04", "api_calls", 2)])  # lands right before the read
        return real_day_counters(developer_id, first, last)

    monkeypatch.setattr(counter_store, "day_counters", day_counters_with_traffic)
    report = rollup.run()
    assert report.drift == 0
    assert summaries(stack)[("DEV#dev_alice", "S#2026-11#api_calls")] == (Decimal(3), 2, 2, True)


# ---- failures -------------------------------------------------------------------------------------


def test_a_failing_developer_fails_the_run_after_the_others_are_written(
    stack: Stack, freeze: Freeze, monkeypatch: pytest.MonkeyPatch, handler: Callable[..., Any]
) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-03", "api_calls", 1), (BOB, "2026-11-03", "api_calls", 2)])
    real_day_counters = counter_store.day_counters

    def throttled_for_bob(developer_id: str, first: str, last: str) -> Any:
        if developer_id == BOB:
            raise Busy("DynamoDB is throttling reads; retry shortly")
        return real_day_counters(developer_id, first, last)

    monkeypatch.setattr(counter_store, "day_counters", throttled_for_bob)
    with pytest.raises(rollup.RollupFailed, match="1 of 2 developer-months failed"):
        handler({"date": "2026-11-03"})  # raised: EventBridge/Lambda retry, then the DLQ
    assert set(summaries(stack)) == {("DEV#dev_alice", "S#2026-11#api_calls")}

    monkeypatch.setattr(counter_store, "day_counters", real_day_counters)  # the retry succeeds
    answer = handler({"date": "2026-11-03"})
    assert (answer["summariesWritten"], answer["summariesUnchanged"], answer["failed"]) == (1, 1, 0)
    assert without_closed(summaries(stack)) == day_sums(stack)


def test_an_unreadable_index_fails_the_run(
    stack: Stack, freeze: Freeze, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(NOW)

    def throttled(day: str, shard: int) -> Any:
        raise Busy("DynamoDB is throttling; retry shortly")

    monkeypatch.setattr(summary_store, "active_developers", throttled)
    with pytest.raises(Busy):
        rollup.run()


# ---- the handler and the CLI ----------------------------------------------------------------------


def test_the_handler_runs_on_the_scheduled_event(
    stack: Stack, freeze: Freeze, handler: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-30", "api_calls", Decimal("0.5")), (BOB, "2026-12-02", "tokens", 8)])
    event = json.loads((ROOT / "events" / "rollup-schedule.json").read_text())
    capsys.readouterr()

    answer = handler(event)

    json.dumps(answer)  # what Lambda sends back must be plain JSON
    report = RollupReport.model_validate(answer)
    assert (report.first_day, report.last_day) == ("2026-10-28", "2026-12-04")
    assert (report.developers, report.summaries_written, report.drift, report.failed) == (2, 2, 0, 0)
    assert without_closed(summaries(stack)) == day_sums(stack)
    # the metrics are flushed as EMF on stdout at the end of the invocation
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "no metrics flushed"
    assert emf[-1]["RollupDrift"] == [0.0]
    assert emf[-1]["RollupSummariesWritten"] == [2.0]


def test_the_handler_refuses_a_bad_date(stack: Stack, handler: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="date"):
        handler({"date": "2026-13-45"})


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What the CLI printed, without the handlers' structured log lines: they reach this stdout
    when a handler module imported earlier in the process set its stdout handler up (the CLI
    alone logs only warnings, to stderr)."""
    return "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith('{"level"'))


def test_cli_rollup_run(
    stack: Stack, freeze: Freeze, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(NOW)
    track(stack, [(ALICE, "2026-11-30", "api_calls", Decimal("0.5")), (ALICE, "2026-12-01", "api_calls", 1)])
    stack.dynamodb.update_item(  # one drifting counter, to see it printed
        TableName=stack.usage_table,
        Key={"pk": {"S": "DEV#dev_alice"}, "sk": {"S": "M#2026-12#api_calls"}},
        UpdateExpression="SET #c = :c",
        ExpressionAttributeNames={"#c": "consumed"},
        ExpressionAttributeValues={":c": {"N": "1.5"}},
    )
    capsys.readouterr()

    assert cli.main(["rollup", "run"]) == 0
    out = printed(capsys)
    assert out.startswith(
        "rolled up 2026-10-28..2026-12-04 (38 days, 2026-10, 2026-11, 2026-12): 1 developer(s)"
    )
    assert "2 summaries (2 written, 0 unchanged), drift 1, failed 0" in out
    assert (
        "drift: dev_alice 2026-12 api_calls: month counter 1.5, day sum 1 (difference 0.5, events +0)" in out
    )

    assert cli.main(["--json", "rollup", "run", "--date", "2026-11-15"]) == 0
    report = json.loads(printed(capsys))
    assert (report["firstDay"], report["lastDay"], report["summaries"], report["summariesWritten"]) == (
        "2026-11-01",
        "2026-11-30",
        1,
        0,
    )
    assert without_closed(summaries(stack)) == day_sums(stack)

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["rollup", "run", "--date", "30/11/2026"])
    assert exit_info.value.code == 2
    assert "is not a date (YYYY-MM-DD)" in capsys.readouterr().err

    def failing(developer_id: str, month: str, now: datetime) -> Any:
        raise Busy("throttled")

    real_run = rollup.run  # any failure: exit code 1 and a message, no traceback
    monkeypatch.setattr(rollup, "run", lambda request=None: real_run(request, task=failing))
    assert cli.main(["rollup", "run"]) == 1
    assert "developer-month(s) failed; run it again" in capsys.readouterr().err


# ---- the template -----------------------------------------------------------------------------------


def _refs(value: Any) -> Iterator[str]:
    """Every logical id or literal a policy resource names."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Fn::GetAtt":
                yield str(item[0])
            elif key == "Fn::Sub":
                yield str(item)
            else:
                yield from _refs(item)


def test_rollup_policy_is_least_privilege() -> None:
    props = load()["Resources"]["RollupFunction"]["Properties"]
    statements = [s for policy in props["Policies"] for s in policy["Statement"]]
    resources = [r for s in statements for r in _refs(s["Resource"])]
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }

    assert all(s["Effect"] == "Allow" for s in statements)
    # no Scan, Delete, Batch*; PutItem and GetItem only for claims under developers (DEV#*)
    assert actions == {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "events:PutEvents",
        "sqs:SendMessage",
    }
    claims = next(s for s in statements if "dynamodb:PutItem" in s["Action"])
    assert claims["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["DEV#*"]}
    assert not any("*" in r for r in resources)
    assert not any("Idempotency" in r for r in resources)
    # the accounts table only through KindIndex (the webhook endpoints), never its items
    assert set(resources) == {
        "UsageTable",
        "${UsageTable.Arn}/index/ActivityIndex",
        "${AccountsTable.Arn}/index/KindIndex",
        "EventBus",
        "WebhookQueue",
    }
    query = next(s for s in statements if s["Action"] == ["dynamodb:Query"])
    assert set(_refs(query["Resource"])) == {"UsageTable", "${UsageTable.Arn}/index/ActivityIndex"}


def test_rollup_schedule_retries_and_dead_letter_queue() -> None:
    document = load()
    resources = document["Resources"]
    props = resources["RollupFunction"]["Properties"]
    ((event_id, event),) = props["Events"].items()
    assert event["Type"] == "Schedule"
    schedule = event["Properties"]
    assert schedule["Enabled"] is True
    assert schedule["Schedule"] == {"Ref": "RollupSchedule"}
    assert document["Parameters"]["RollupSchedule"]["Default"] == "rate(1 hour)"
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert 60 <= schedule["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
    dlq = {"Fn::GetAtt": ["RollupDeadLetterQueue", "Arn"]}
    assert schedule["DeadLetterConfig"] == {"Arn": dlq}
    # EventBridge invokes asynchronously: a run that raises is retried by Lambda, then sent on
    invoke = props["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] > 0
    assert invoke["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": dlq}
    queue = resources["RollupDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    # EventBridge may write to the queue for this rule only
    (statement,) = resources["RollupDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": [f"RollupFunction{event_id}", "Arn"]
    }
    assert {"RollupDlqName", "RollupDlqUrl"} <= set(document["Outputs"])
    # the coverage window of the deployed function is the one this code is tested with
    assert props["Environment"]["Variables"]["ROLLUP_LOOKBACK_DAYS"] == str(rollup.LOOKBACK_DAYS)
