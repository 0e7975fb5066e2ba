"""Input that once answered 500: timestamps past datetime's range once converted to UTC, integers
longer than int() converts, exponents past what Decimal holds or past what pydantic counts, and
read ranges ending in year 9999. Each is now a 4xx with a code, from a single event, and a
per-item refusal in a batch whose other items are still recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from helpers import SERVICE, counters, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "dev_alice"
HEAD = '"metric": "emails", "developerId": "dev_alice"'
LONG_INTEGER = "7" * 4301  # one digit past int()'s default limit (sys.get_int_max_str_digits)

# a single event (the JSON text as sent), the field the message names
BAD_EVENTS: dict[str, tuple[str, str]] = {
    "timestamp-after-year-9999-in-utc": (
        "{" + HEAD + ', "quantity": 1, "timestamp": "9999-12-31T23:59:59-23:59"}',
        "timestamp",
    ),
    "timestamp-before-year-1-in-utc": (
        "{" + HEAD + ', "quantity": 1, "timestamp": "0001-01-01T00:00:00+23:59"}',
        "timestamp",
    ),
    "quantity-of-4301-digits": ("{" + HEAD + ', "quantity": ' + LONG_INTEGER + "}", "quantity"),
    "negative-quantity-of-4301-digits": ("{" + HEAD + ', "quantity": -' + LONG_INTEGER + "}", "quantity"),
    "metadata-integer-of-4301-digits": (
        "{" + HEAD + ', "quantity": 1, "metadata": {"n": ' + LONG_INTEGER + "}}",
        "metadata",
    ),
    "metadata-nested-integer-of-4301-digits": (
        "{" + HEAD + ', "quantity": 1, "metadata": {"a": [{"b": ' + LONG_INTEGER + "}]}}",
        "metadata",
    ),
    "quantity-exponent-past-decimal": ("{" + HEAD + ', "quantity": 1e99999999999999999999}', "quantity"),
    "quantity-tiny-exponent-past-decimal": (
        "{" + HEAD + ', "quantity": 1e-99999999999999999999}',
        "quantity",
    ),
    "quantity-exponent-pydantic-flushes-to-0": ("{" + HEAD + ', "quantity": 1e-999999999}', "quantity"),
    "quantity-of-61-places-pydantic-rounds-to-0": (
        "{" + HEAD + ', "quantity": 1.' + "0" * 59 + "1}",
        "quantity",
    ),
    "metadata-exponent-past-decimal": (
        "{" + HEAD + ', "quantity": 1, "metadata": {"x": 1.5e99999999999999999999}}',
        "metadata",
    ),
}


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    return stack


def _nothing_written(api: Stack) -> bool:
    return (
        table_items(api.dynamodb, api.usage_table) == [] == table_items(api.dynamodb, api.idempotency_table)
    )


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS.values(), ids=BAD_EVENTS)
def test_a_single_bad_event_is_422_and_writes_nothing(api: Stack, body: str, field: str) -> None:
    answer = api.track(body, auth=SERVICE)
    assert answer.status == 422, answer.body
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert _nothing_written(api)


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS.values(), ids=BAD_EVENTS)
def test_a_bad_item_is_rejected_and_the_rest_of_its_batch_recorded(api: Stack, body: str, field: str) -> None:
    good = "{" + HEAD + ', "quantity": 2, "idempotencyKey": "good-%d"}'
    answer = api.track('{"events": [' + ",".join([good % 0, body, good % 2]) + "]}", auth=SERVICE)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert [(r["index"], r["status"]) for r in result["results"]] == [
        (0, "recorded"),
        (1, "rejected"),
        (2, "recorded"),
    ]
    refused = result["results"][1]["error"]
    assert refused["code"] == "validation_error"
    assert field in refused["message"]
    assert (result["recorded"], result["rejected"]) == (2, 1)
    assert counters(api.dynamodb, api.usage_table) == {
        (f"DEV#{ALICE}", "D#2026-11-25#emails"): (Decimal(4), 2),
        (f"DEV#{ALICE}", "M#2026-11#emails"): (Decimal(4), 2),
    }


def test_a_metadata_number_longer_than_the_context_precision_is_kept_exactly(api: Stack) -> None:
    """71 significant digits fit in 2 KB; they were rounded to 60 when written back (and two
    payloads differing past the 60th digit were taken for duplicates of each other)."""
    digits = "1." + "1" * 70
    body = "{" + HEAD + ', "quantity": 1, "idempotencyKey": "k", "metadata": {"x": ' + digits + "}}"
    assert api.track(body, auth=SERVICE).status == 200
    (record,) = table_items(api.dynamodb, api.idempotency_table)
    assert record["metadata"]["S"] == '{"x":' + digits + "}"
    other = api.track(body.replace(digits, digits[:-1] + "2"), auth=SERVICE)
    assert other.status == 409, other.body
    assert other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    "query",
    [
        {"startDate": "9999-12-01", "endDate": "9999-12-31"},
        {"startDate": "0001-01-01", "endDate": "0001-01-05"},
        {"startDate": "9998-12-31", "endDate": "9999-01-01"},
    ],
    ids=["ends-on-the-last-day-of-9999", "year-1", "crosses-into-9999"],
)
@pytest.mark.parametrize("read", ["/v1/usage", "/v1/usage/history"])
def test_a_read_range_outside_1970_to_9998_is_422(api: Stack, read: str, query: dict[str, str]) -> None:
    answer = api.call("GET", read, query={**query, "developerId": ALICE}, auth=SERVICE)
    assert answer.status == 422, answer.body
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == "invalid_range"
    assert "1970-01-01" in error["message"]


def test_a_read_range_at_the_bounds_is_answered(api: Stack) -> None:
    for query in (
        {"startDate": "1970-01-01", "endDate": "1970-01-31"},
        {"startDate": "9998-12-01", "endDate": "9998-12-31"},
    ):
        answer = api.call("GET", "/v1/usage", query={**query, "developerId": ALICE}, auth=SERVICE)
        assert answer.status == 200, answer.body
        assert answer.json()["period"]["start"] == f"{query['startDate']}T00:00:00Z"
