"""Dimensions: events of a dimensioned meter counted per combination of values in their own
transaction, read grouped and filtered (JSON and CSV), bad input refused with nothing counted
or read, and the cardinality bound with "(other)"."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.domain import dimensions
from usage_meter.settings import settings
from usage_meter_admin import cli

from helpers import counters, groups_in, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "dev_alice"


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    assert (
        cli.main(["meters", "create", "calls", "--aggregation", "count", "--dimensions", "endpoint,model"])
        == 0
    )
    assert cli.main(["meters", "create", "tokens_in", "--dimensions", "model"]) == 0
    return stack


def track(api: Stack, *events: dict[str, Any]) -> list[dict[str, Any]]:
    answer = api.track(jsonutil.dumps({"events": [{**e, "developerId": ALICE} for e in events]}))
    assert answer.status == 200, answer.body
    found: list[dict[str, Any]] = answer.json()["results"]
    return found


def call(endpoint: str, model: str | None = None, **extra: Any) -> dict[str, Any]:
    metadata = {"endpoint": endpoint} if model is None else {"endpoint": endpoint, "model": model}
    return {"metric": "calls", "metadata": metadata, **extra}


def test_each_event_is_counted_under_its_combination_in_its_transaction(api: Stack) -> None:
    statuses = track(
        api,
        call("/v1/verify", "small", idempotencyKey="a"),
        call("/v1/verify", "small", idempotencyKey="a"),  # in-batch duplicate: once
        call("/v1/verify", "large"),
        call("/v1/sign"),  # no model: counted as ""
        {"metric": "tokens_in", "quantity": 120, "metadata": {"model": "large"}},
        {"metric": "tokens_in", "quantity": 30, "metadata": {"model": "large"}},
        {"metric": "tokens_in", "quantity": 5},
    )
    assert [r["status"] for r in statuses] == ["recorded", "duplicate", *["recorded"] * 5]
    track(api, call("/v1/verify", "small", idempotencyKey="a"))  # a duplicate later: once

    items = table_items(api.dynamodb, api.usage_table)
    pk, day = f"DEV#{ALICE}", "2026-11-25"
    assert groups_in(items) == {
        (pk, "calls", day, (("endpoint", "/v1/verify"), ("model", "small"))): Decimal(1),
        (pk, "calls", day, (("endpoint", "/v1/verify"), ("model", "large"))): Decimal(1),
        (pk, "calls", day, (("endpoint", "/v1/sign"), ("model", ""))): Decimal(1),
        (pk, "tokens_in", day, (("model", "large"),)): Decimal(150),
        (pk, "tokens_in", day, (("model", ""),)): Decimal(5),
    }
    combinations = {i["sk"]["S"]: int(i["combinations"]["N"]) for i in items if i["sk"]["S"].startswith("C#")}
    assert combinations == {f"C#calls#{day}": 3, f"C#tokens_in#{day}": 2}
    assert counters(api.dynamodb, api.usage_table)[(pk, f"D#{day}#calls")] == (Decimal(3), 3)
    records = {i["idempotencyKey"]["S"]: i for i in table_items(api.dynamodb, api.idempotency_table)}
    assert records["a"]["dimensions"]["M"] == {"endpoint": {"S": "/v1/verify"}, "model": {"S": "small"}}


def test_current_usage_grouped_largest_first_and_filtered(api: Stack) -> None:
    track(
        api,
        *[call("/v1/verify", "small")] * 3,
        *[call("/v1/sign", "small")] * 5,
        call("/v1/verify", "large"),
        {"metric": "tokens_in", "quantity": 7, "metadata": {"model": "small"}},
    )
    answer = api.current(metric="calls", groupBy="endpoint")
    assert answer.status == 200, answer.body
    entry = answer.json()["metrics"]["calls"]
    assert (entry["consumed"], entry["events"]) == (9, 9)
    assert entry["groups"] == [
        {"dimensions": {"endpoint": "/v1/sign"}, "consumed": 5, "events": 5},
        {"dimensions": {"endpoint": "/v1/verify"}, "consumed": 4, "events": 4},
    ]

    both = api.current(metric="calls", groupBy="model,endpoint").json()["metrics"]["calls"]["groups"]
    assert [g["dimensions"] for g in both] == [
        {"model": "small", "endpoint": "/v1/sign"},
        {"model": "small", "endpoint": "/v1/verify"},
        {"model": "large", "endpoint": "/v1/verify"},
    ]

    # a filter keeps the matching events (of every meter that declares the dimension)
    filtered = api.current(filter="model:small", groupBy="model").json()
    assert sorted(filtered["metrics"]) == ["calls", "tokens_in"]
    assert filtered["metrics"]["calls"]["consumed"] == 8
    assert filtered["metrics"]["tokens_in"]["groups"] == [
        {"dimensions": {"model": "small"}, "consumed": 7, "events": 1}
    ]
    assert filtered["totalRequests"] == 9

    plain = api.current().json()
    assert "groups" not in plain["metrics"]["calls"]  # asked for nothing, nothing added


def test_history_grouped_per_day_and_month(api: Stack, freeze: Callable[[datetime], None]) -> None:
    track(api, call("/v1/verify", "small", timestamp="2026-11-24T10:00:00Z"), call("/v1/sign", "small"))
    track(api, call("/v1/sign", "large"))
    days = api.history(metric="calls", groupBy="endpoint", days="2").json()["entries"]
    assert [(e["date"], e["metrics"], e["events"], e["groups"]["calls"]) for e in days] == [
        (
            "2026-11-24",
            {"calls": 1},
            {"calls": 1},
            [{"dimensions": {"endpoint": "/v1/verify"}, "consumed": 1, "events": 1}],
        ),
        (
            "2026-11-25",
            {"calls": 2},
            {"calls": 2},
            [{"dimensions": {"endpoint": "/v1/sign"}, "consumed": 2, "events": 2}],
        ),
    ]
    month = api.history(metric="calls", groupBy="endpoint", granularity="month", days="30").json()["entries"]
    assert month[-1]["groups"]["calls"] == [
        {"dimensions": {"endpoint": "/v1/sign"}, "consumed": 2, "events": 2},
        {"dimensions": {"endpoint": "/v1/verify"}, "consumed": 1, "events": 1},
    ]
    filtered = api.history(metric="calls", filter="endpoint:/v1/sign,model:large", days="1").json()["entries"]
    assert [(e["metrics"], e["totalRequests"]) for e in filtered] == [({"calls": 1}, 1)]


HOSTILE = [
    "=cmd|' /C calc'!A0",
    "a,b",
    'say "hi"',
    "two\nlines",
    "+1",
    "-2",
    "@SUM(A1)",
    "\tx",
    "'quoted",
    "plain",
]


def unquote(cell: str) -> str:
    """What the CSV's rule undoes: the ' put before a text cell that starts with = + - @ tab CR or '."""
    return cell[1:] if cell.startswith("'") else cell


def test_csv_history_survives_a_round_trip_and_is_not_executable(api: Stack) -> None:
    track(api, *[call(value, "m") for value in HOSTILE], call("plain", "m"))
    answer = api.call(
        "GET",
        "/v1/usage/history",
        query={"metric": "calls", "groupBy": "endpoint", "days": "1"},
        headers={"Accept": "text/csv"},
    )
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.body.startswith("date,metric,endpoint,consumed,events\r\n")
    assert answer.body.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(answer.body, newline="")))
    assert rows[0] == ["date", "metric", "endpoint", "consumed", "events"]
    assert {unquote(r[2]): (r[3], r[4]) for r in rows[1:]} == {
        value: ("2", "2") if value == "plain" else ("1", "1") for value in HOSTILE
    }
    assert all(r[1] == "calls" and r[0] == "2026-11-25" for r in rows[1:])
    # no text cell a spreadsheet would take for a formula
    assert not [r for r in rows[1:] if r[2][:1] in ("=", "+", "-", "@", "\t", "\r")]

    ungrouped = api.call("GET", "/v1/usage/history", query={"days": "2"}, headers={"Accept": "text/csv"})
    assert list(csv.reader(io.StringIO(ungrouped.body, newline=""))) == [
        ["date", "metric", "consumed", "events"],
        ["2026-11-24", "calls", "0", "0"],
        ["2026-11-25", "calls", "11", "11"],
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"groupBy": "region"}, "unknown_dimension"),
        ({"metric": "tokens_in", "groupBy": "endpoint"}, "unknown_dimension"),
        ({"groupBy": "a,b,c,d"}, "too_many_dimensions"),
        ({"groupBy": "endpoint,endpoint"}, "invalid_group_by"),
        ({"groupBy": "end point"}, "invalid_group_by"),
        ({"filter": "endpoint"}, "invalid_filter"),
        ({"filter": "endpoint:/a,endpoint:/b"}, "invalid_filter"),
        ({"filter": "model:" + "x" * 65}, "invalid_filter"),
    ],
)
def test_bad_group_queries_are_refused(api: Stack, params: dict[str, str], code: str) -> None:
    for path in ("/v1/usage", "/v1/usage/history"):
        answer = api.call("GET", path, query=params)
        assert answer.status == 422, answer.body
        assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "metadata",
    [{"endpoint": 7}, {"endpoint": "x" * 65}, {"endpoint": ["/a"]}, {"endpoint": "(other)"}, {"model": None}],
)
def test_bad_dimension_values_are_refused_and_nothing_counted(api: Stack, metadata: dict[str, Any]) -> None:
    before = table_items(api.dynamodb, api.usage_table)
    single = api.track({"metric": "calls", "metadata": metadata})
    assert single.status == 422, single.body
    assert single.json()["error"]["code"] == "invalid_dimension_value"
    [result] = track(api, {"metric": "calls", "metadata": metadata})
    assert (result["status"], result["error"]["code"]) == ("rejected", "invalid_dimension_value")
    assert table_items(api.dynamodb, api.usage_table) == before


def test_past_the_bound_events_count_under_other(
    api: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DIMENSION_CARDINALITY", "5")
    settings.cache_clear()
    sent = [call(f"/e{i % 8}", "m") for i in range(30)]  # 8 endpoints, 4 events each at most
    capsys.readouterr()
    caplog.clear()
    for start in range(0, len(sent), 10):
        assert {r["status"] for r in track(api, *sent[start : start + 10])} == {"recorded"}
    settings.cache_clear()
    # The metrics are printed to the current stdout; the logger's handler keeps the stream
    # it was made with (another test's, on a shared worker), so its records are read from
    # the logging tree instead.
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    overflowed = sum(sum(line.get("DimensionOverflow", [])) for line in printed)
    warned = [r for r in caplog.records if r.getMessage().startswith("dimension combinations past")]
    assert warned
    assert {(r.__dict__["developer_id"], r.__dict__["metric"]) for r in warned} == {(ALICE, "calls")}
    assert sum(r.__dict__["events"] for r in warned) == overflowed

    groups = api.current(metric="calls", groupBy="endpoint,model").json()["metrics"]["calls"]
    counts = Counter(e["metadata"]["endpoint"] for e in sent)
    kept = [g for g in groups["groups"] if g["dimensions"]["endpoint"] != "(other)"]
    assert len(kept) == 5
    for g in kept:
        assert g["events"] == counts[g["dimensions"]["endpoint"]]
    [other] = [g for g in groups["groups"] if g["dimensions"] == {"endpoint": "(other)", "model": "(other)"}]
    assert other["events"] == 30 - sum(g["events"] for g in kept) == overflowed
    assert sum(g["consumed"] for g in groups["groups"]) == groups["consumed"] == 30
    items = table_items(api.dynamodb, api.usage_table)
    assert {int(i["combinations"]["N"]) for i in items if i["sk"]["S"].startswith("C#calls")} == {5}


def test_a_filter_value_may_hold_a_comma(api: Stack) -> None:
    track(api, call("/v1/a,b", "m"), call("/v1/a", "m"), call("/v1/a", "m,n"))
    one = api.current(metric="calls", filter="endpoint:/v1/a,b").json()["metrics"]["calls"]
    assert (one["consumed"], one["events"]) == (1, 1)
    # two filters, as API Gateway joins a repeated parameter
    both = api.current(metric="calls", filter="endpoint:/v1/a,model:m,n").json()["metrics"]["calls"]
    assert (both["consumed"], both["events"]) == (1, 1)


def test_breakdown_is_the_grouped_read_for_other_presenters(api: Stack) -> None:
    track(api, *[call("/v1/verify", "small")] * 2, call("/v1/sign", "large"), call("/v1/sign", "small"))
    day = NOW.date()
    by_endpoint = dimensions.breakdown(ALICE, "calls", day, day, ["endpoint"])
    assert [(g.dimensions, g.consumed, g.events) for g in by_endpoint] == [
        ({"endpoint": "/v1/sign"}, 2, 2),
        ({"endpoint": "/v1/verify"}, 2, 2),
    ]
    small = dimensions.breakdown(ALICE, "calls", day, day, ["endpoint"], {"model": "small"})
    assert [(g.dimensions["endpoint"], g.events) for g in small] == [("/v1/verify", 2), ("/v1/sign", 1)]
    assert dimensions.breakdown("dev_bob", "calls", day, day, ["endpoint"]) == []
