"""No answer grows past a stated bound from anything a client sends (README, "Answer sizes").

The largest read: a 366-day history of a developer with 100 metrics of 64 characters, every
day counter holding the longest number DynamoDB keeps (38 digits, signed), must stay under
Lambda's 6 MB response limit, else that developer's history would fail for a year. Each day's
entry has the same size (dates are fixed-width, every cell holds the same longest number), so
the answer's size is exactly a + b * days: it is measured at 1, 6 and 11 days seeded directly
in the table (1,100 counters: moto takes minutes over 36,600), checked to be linear, and
extrapolated to 366 days (the full 36,600 gave the same 4,062,596 bytes). The track answer, which names fields a client sent, reports at most
10 of them per item, each cut to 64 characters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from usage_meter.store import keys
from usage_meter_local.handlers import Handler

from helpers import SERVICE
from integration.conftest import Stack

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # bytes, the payload of a synchronous invocation
HISTORY_BOUND = 4_100_000  # bytes, stated in the README for days=366 and 100 metrics
SEEDED_DAYS = 11
TODAY = date(2026, 11, 25)
ALICE = "dev_alice"
METRICS = [f"m{i:02d}".ljust(64, "x") for i in range(100)]  # 100 metrics, 64 characters each
LONGEST_AMOUNT = "-" + "9" * 29 + "." + "9" * 9  # 38 significant digits, 9 places, signed
LONGEST_COUNT = "9" * 38


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(datetime(TODAY.year, TODAY.month, TODAY.day, 12, 0, tzinfo=UTC))
    return stack


def day_counter(day: str, metric: str) -> dict[str, Any]:
    return {
        "pk": {"S": keys.developer_pk(ALICE)},
        "sk": {"S": keys.counter_sk("day", day, metric)},
        "developerId": {"S": ALICE},
        "metric": {"S": metric},
        "day": {"S": day},
        "consumed": {"N": LONGEST_AMOUNT},
        "events": {"N": LONGEST_COUNT},
    }


def seed_worst_days(api: Stack, days: int) -> None:
    items = [
        day_counter((TODAY - timedelta(days=offset)).isoformat(), metric)
        for offset in range(days)
        for metric in METRICS
    ]
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        api.dynamodb.batch_write_item(RequestItems={api.usage_table: requests})


@pytest.fixture
def raw_results(api: Stack, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each handler returns to Lambda (the payload the 6 MB limit applies to)."""
    results: list[dict[str, Any]] = []
    load = api.api.handler

    def recording(route: Any) -> Handler:
        handler = load(route)

        def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
            result: dict[str, Any] = handler(event, context)
            results.append(result)
            return result

        return run

    monkeypatch.setattr(api.api, "handler", recording)
    return results


def history_payload(api: Stack, results: list[dict[str, Any]], days: int) -> int:
    """Bytes of the Lambda response to GET /v1/usage/history?days=N, its body checked."""
    answer = api.call(
        "GET", "/v1/usage/history", query={"days": str(days), "developerId": ALICE}, auth=SERVICE
    )
    assert answer.status == 200
    entries = answer.json()["entries"]
    assert len(entries) == days
    for entry in entries:
        assert list(entry["metrics"]) == METRICS
        assert {str(value) for value in entry["metrics"].values()} == {LONGEST_AMOUNT}
        assert entry["totalRequests"] == 100 * int(LONGEST_COUNT)
    return len(json.dumps(results[-1]).encode())


def test_the_largest_history_fits_lambdas_response_limit(
    api: Stack, raw_results: list[dict[str, Any]]
) -> None:
    seed_worst_days(api, SEEDED_DAYS)
    one, half, full = (history_payload(api, raw_results, days) for days in (1, 6, SEEDED_DAYS))
    per_day = (full - one) // (SEEDED_DAYS - 1)
    assert (half - one, full - one) == (5 * per_day, 10 * per_day)  # exactly linear
    worst = one + 365 * per_day
    print(f"\nhistory, 100 metrics of 64 characters: {per_day:,} bytes a day, {worst:,} for 366 days")
    assert worst <= HISTORY_BOUND < LAMBDA_RESPONSE_LIMIT


def test_a_monthly_history_is_far_smaller(api: Stack, raw_results: list[dict[str, Any]]) -> None:
    seed_worst_days(api, 2)
    query = {"days": "366", "developerId": ALICE, "granularity": "month"}
    answer = api.call("GET", "/v1/usage/history", query=query, auth=SERVICE)
    assert answer.status == 200
    assert len(answer.json()["entries"]) == 13  # at most 13 whatever the counters
    assert len(json.dumps(raw_results[-1]).encode()) < 13 * 100 * 200


def unknown_fields(count: int, length: int) -> dict[str, int]:
    """`count` distinct unknown keys of `length` characters, each a 4-byte UTF-8 character
    (12 bytes once escaped in an ASCII answer)."""
    return {f"{i:06d}" + "\U0001f600" * (length - 6): 1 for i in range(count)}


@pytest.mark.parametrize(
    ("count", "length"), [(1, 250_000), (50_000, 8)], ids=["one-key-of-1-mb", "50000-unknown-keys"]
)
def test_a_refused_event_names_few_fields_whatever_it_sent(api: Stack, count: int, length: int) -> None:
    event = {"metric": "m", "quantity": 1, "developerId": ALICE, **unknown_fields(count, length)}
    answer = api.track(json.dumps(event, ensure_ascii=False), auth=SERVICE)
    assert answer.status == 422
    error = answer.json()["error"]
    assert len(error["details"]) == min(count, 10)
    for detail in error["details"]:
        assert all(len(part) <= 64 + len("...") for part in detail["field"].split(".")), detail
    if count > 10:
        assert error["message"].endswith(f"; and {count - 10} more errors")
    assert len(answer.body.encode()) < 10_000


def test_a_batch_of_hostile_items_gets_a_bounded_answer(api: Stack) -> None:
    """100 items each with 10 unknown keys of 1,000 four-byte characters: a 4 MB body, echoed
    twice per name (message and details) and escaped to 12 bytes a character, was a 24 MB
    answer; now each name is cut to 64 characters (at most 100 x 10 x 2 x 64 x 12 bytes)."""
    item = {"metric": "m", "quantity": 1, "developerId": ALICE, **unknown_fields(10, 1_000)}
    body = json.dumps({"events": [item] * 100}, ensure_ascii=False)
    answer = api.track(body, auth=SERVICE)
    assert answer.status == 200
    assert answer.json()["rejected"] == 100
    assert len(answer.body.encode()) < 100 * 10 * 2 * 64 * 12 + 100 * 1_000
