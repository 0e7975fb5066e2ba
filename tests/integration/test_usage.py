"""GET /v1/usage and GET /v1/usage/history against moto: periods, ranges, zero-fill, isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from helpers import DEV_A, DEV_B, SERVICE, summed
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday


def seed(stack: Stack, events: list[tuple[str, str, Any]], developer: str = "dev_alice") -> None:
    """(day, metric, quantity) events of a developer at noon of each day."""
    answer = stack.track(
        {"events": [{"metric": m, "quantity": q, "timestamp": f"{d}T12:00:00Z"} for d, m, q in events]},
        developer=developer,
    )
    assert answer.status == 200
    assert answer.json()["recorded"] == len(events)


@pytest.fixture
def seeded(stack: Stack, freeze: Freeze) -> Stack:
    freeze(NOW)
    seed(
        stack,
        [
            ("2026-10-31", "api_calls", 1000),  # last billing period
            ("2026-11-02", "api_calls", 10),
            ("2026-11-23", "api_calls", 20),  # Monday of this ISO week
            ("2026-11-25", "api_calls", 5),
            ("2026-11-25", "tokens", 1.25),
            ("2026-11-25", "tokens", 2.5),
        ],
    )
    seed(stack, [("2026-11-25", "api_calls", 999)], developer="dev_bob")
    return stack


NOVEMBER_TOKENS = summed(
    {"consumed": Decimal("3.75"), "limit": 10000000, "remaining": Decimal("9999996.25"), "percentageUsed": 0},
    2,
    Decimal("1.875"),  # 1.25 and 2.5
)


def test_current_billing_period(seeded: Stack) -> None:
    answer = seeded.current()
    assert answer.status == 200
    assert answer.json() == {
        "developerId": "dev_alice",
        "plan": "pro",
        "period": {"key": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
        "metrics": {
            "api_calls": summed(
                {"consumed": 35, "limit": 100000, "remaining": 99965, "percentageUsed": Decimal("0.04")},
                3,
                Decimal("11.666666667"),  # 35 / 3, to 9 places, half up
            ),
            "tokens": NOVEMBER_TOKENS,
        },
        "totalRequests": 5,
        "resetsInDays": 6,
        "rateLimit": {"requestsPerMinute": 1000, "currentMinuteUsage": 6},
    }


@pytest.mark.parametrize(
    ("query", "key", "api_calls", "total"),
    [
        ({"period": "day"}, "2026-11-25", 5, 3),
        ({"period": "week"}, "2026-W48", 25, 4),
        ({"period": "month"}, "2026-11", 35, 5),
        ({"startDate": "2026-10-31", "endDate": "2026-11-02"}, "2026-10-31..2026-11-02", 1010, 2),
        ({"startDate": "2026-11-20"}, "2026-11-20..2026-11-25", 25, 4),
    ],
)
def test_current_other_periods(
    seeded: Stack, query: dict[str, str], key: str, api_calls: int, total: int
) -> None:
    body = seeded.current(**query).json()
    assert body["period"]["key"] == key
    assert body["metrics"]["api_calls"]["consumed"] == api_calls
    assert body["totalRequests"] == total


def test_week_period_bounds(seeded: Stack) -> None:
    period = seeded.current(period="week").json()["period"]
    assert period == {"key": "2026-W48", "start": "2026-11-23T00:00:00Z", "end": "2026-11-30T00:00:00Z"}


def test_metric_filter_and_unknown_metric_reads_zero(seeded: Stack) -> None:
    assert seeded.current(metric="tokens").json()["metrics"] == {"tokens": NOVEMBER_TOKENS}
    assert seeded.current(metric="never_used").json()["metrics"]["never_used"]["consumed"] == 0
    assert seeded.current(metric="never_used").json()["totalRequests"] == 0


def test_read_your_write(stack: Stack) -> None:
    for n in range(1, 4):
        stack.track({"metric": "api_calls", "quantity": 1})
        assert stack.current().json()["metrics"]["api_calls"]["consumed"] == n


def test_service_key_reads_any_developer_and_developer_keys_read_only_their_own(seeded: Stack) -> None:
    assert (
        seeded.current(auth=SERVICE, developerId="dev_bob").json()["metrics"]["api_calls"]["consumed"] == 999
    )
    assert seeded.current(auth=DEV_A, developerId="dev_alice").status == 200
    denied = seeded.current(auth=DEV_A, developerId="dev_bob")
    assert denied.status == 403
    assert denied.json()["error"]["code"] == "forbidden"
    assert seeded.current(auth=SERVICE).json()["error"]["code"] == "developer_id_required"


def test_history_zero_filled_oldest_first(seeded: Stack) -> None:
    answer = seeded.history(days="7")
    assert answer.status == 200
    body = answer.json()
    assert body["developerId"] == "dev_alice"
    assert body["granularity"] == "day"
    assert [e["date"] for e in body["entries"]] == [f"2026-11-{d}" for d in range(19, 26)]
    by_day = {e["date"]: e for e in body["entries"]}
    assert by_day["2026-11-23"] == {
        "date": "2026-11-23",
        "metrics": {"api_calls": 20, "tokens": 0},
        "totalRequests": 1,
    }
    assert by_day["2026-11-25"] == {
        "date": "2026-11-25",
        "metrics": {"api_calls": 5, "tokens": 3.75},
        "totalRequests": 3,
    }
    assert by_day["2026-11-20"] == {
        "date": "2026-11-20",
        "metrics": {"api_calls": 0, "tokens": 0},
        "totalRequests": 0,
    }


def test_history_default_is_30_days_and_366_is_the_maximum(seeded: Stack) -> None:
    assert len(seeded.history().json()["entries"]) == 30
    year = seeded.history(days="366").json()["entries"]
    assert len(year) == 366
    assert year[0]["date"] == "2025-11-25"
    assert seeded.history(days="367").status == 422


def test_history_by_date_range_and_metric(seeded: Stack) -> None:
    body = seeded.history(startDate="2026-10-30", endDate="2026-11-02", metric="api_calls").json()
    assert [(e["date"], e["metrics"], e["totalRequests"]) for e in body["entries"]] == [
        ("2026-10-30", {"api_calls": 0}, 0),
        ("2026-10-31", {"api_calls": 1000}, 1),
        ("2026-11-01", {"api_calls": 0}, 0),
        ("2026-11-02", {"api_calls": 10}, 1),
    ]


def test_history_by_month(seeded: Stack) -> None:
    body = seeded.history(startDate="2026-10-01", endDate="2026-11-30", granularity="month").json()
    assert body["granularity"] == "month"
    assert body["entries"] == [
        {"date": "2026-10", "metrics": {"api_calls": 1000, "tokens": 0}, "totalRequests": 1},
        {"date": "2026-11", "metrics": {"api_calls": 35, "tokens": 3.75}, "totalRequests": 5},
    ]


def test_history_is_isolated_per_developer(seeded: Stack) -> None:
    bob = seeded.history(auth=DEV_B, days="1").json()
    assert bob["entries"] == [{"date": "2026-11-25", "metrics": {"api_calls": 999}, "totalRequests": 1}]
    assert seeded.history(auth=DEV_A, developerId="dev_bob").status == 403


def test_history_of_90_days_is_one_query(seeded: Stack) -> None:
    """A long history is one Query per counter shard (here: one), never one call per day; the
    rate headers add the same three calls to any history (profile, plan, minute counter)."""
    from usage_meter.store import dynamodb as store_db

    calls: list[tuple[str, str]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "Query":  # which counters: the sk prefix of the range's low end
            calls.append((model.name, params["ExpressionAttributeValues"][":lo"]["S"][:2]))
        else:
            calls.append((model.name, params["Key"]["pk"]["S"]))

    store_db.client().meta.events.register("before-parameter-build.dynamodb.*", record)
    assert seeded.history(days="90").status == 200
    assert sorted(calls) == [
        ("GetItem", "DEV#dev_alice"),  # the developer's profile: its plan
        ("GetItem", "PLAN#pro"),
        ("Query", "D#"),  # the day counters of all 90 days
        ("Query", "R#"),  # the minute counter
    ]
    ninety = list(calls)
    calls.clear()
    assert seeded.history(days="1").status == 200
    assert calls == ninety
