"""Bad input is refused with the right status and error body, and nothing is written.

One test per rule of the design's field table (POST /v1/usage/events) and of the read
endpoints' query parameters, plus the boundary values that must still be accepted. A refused
request leaves both DynamoDB tables exactly as they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter_local.invoke import Answer

from helpers import DEV_A, MADE_KEY, SERVICE, counters, iso, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
METRIC = "emails"  # a metric no plan limits, so boundary quantities are never refused for quota
ALICE = DEV_A["developerId"]
MAX_KEY = "k" * 255


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    return stack


def tables(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        table_items(stack.dynamodb, stack.usage_table),
        table_items(stack.dynamodb, stack.idempotency_table),
    )


def assert_error(answer: Answer, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message"[, "details"]}} with the expected code."""
    assert answer.status == status, answer.body
    assert answer.headers.get("content-type") == "application/json"
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    if field is not None:
        assert field in error["message"], error
    return error


def assert_refused(stack: Stack, answer: Answer, status: int, code: str, field: str | None = None) -> None:
    assert_error(answer, status, code, field)
    assert tables(stack) == ([], []), "a refused request wrote to DynamoDB"


def event(**fields: Any) -> dict[str, Any]:
    return {"metric": METRIC, "quantity": 1, **fields}


def recorded_once(metric: str, quantity: Decimal, day: str = "2026-11-25") -> dict[Any, Any]:
    """The two counters one event of Alice's leaves behind."""
    return {
        (f"DEV#{ALICE}", f"D#{day}#{metric}"): (quantity, 1),
        (f"DEV#{ALICE}", f"M#{day[:7]}#{metric}"): (quantity, 1),
    }


# ---- POST /v1/usage/events: one event ----------------------------------------------------------

# (body as sent: a str is sent verbatim, anything else as JSON), status, code, field in message
REFUSED_EVENTS: dict[str, tuple[Any, int, str, str | None]] = {
    # not JSON, or not a JSON object
    "malformed-json": ('{"metric": "emails", "quantity": 1', 400, "invalid_json", None),
    "trailing-garbage": ('{"metric": "emails", "quantity": 1} x', 400, "invalid_json", None),
    "single-quotes": ("{'metric': 'emails', 'quantity': 1}", 400, "invalid_json", None),
    "empty-body": ("", 422, "validation_error", "body"),
    "json-null": ("null", 422, "validation_error", "body"),
    "json-list": ('[{"metric": "emails", "quantity": 1}]', 422, "validation_error", "body"),
    "json-number": ("5", 422, "validation_error", "body"),
    "json-string": ('"emails"', 422, "validation_error", "body"),
    "json-bool": ("true", 422, "validation_error", "body"),
    # required fields and types
    "metric-missing": ({"quantity": 1}, 422, "validation_error", "metric"),
    # a quantity that does not fit its meter (here none: a sum) names the rule it breaks
    "quantity-missing": ({"metric": METRIC}, 422, "quantity_required", "quantity"),
    "metric-number": ({"metric": 5, "quantity": 1}, 422, "validation_error", "metric"),
    "quantity-string": (event(quantity="5"), 422, "validation_error", "quantity"),
    "quantity-true": (event(quantity=True), 422, "validation_error", "quantity"),
    "quantity-null": (event(quantity=None), 422, "quantity_required", "quantity"),
    "quantity-object": (event(quantity={"value": 1}), 422, "validation_error", "quantity"),
    # unknown fields
    "unknown-field": (event(unit="requests"), 422, "validation_error", "unit"),
    "unknown-field-beside-events": (
        {"events": [event()], "dryRun": True},
        422,
        "validation_error",
        "dryRun",
    ),
    # metric pattern ^[A-Za-z][A-Za-z0-9_.-]{0,63}$
    "metric-empty": (event(metric=""), 422, "validation_error", "metric"),
    "metric-starts-with-digit": (event(metric="1emails"), 422, "validation_error", "metric"),
    "metric-starts-with-underscore": (event(metric="_emails"), 422, "validation_error", "metric"),
    "metric-65-chars": (event(metric="m" * 65), 422, "validation_error", "metric"),
    "metric-space": (event(metric="sent emails"), 422, "validation_error", "metric"),
    "metric-hash": (event(metric="emails#sent"), 422, "validation_error", "metric"),
    "metric-slash": (event(metric="emails/sent"), 422, "validation_error", "metric"),
    "metric-trailing-newline": (event(metric="emails\n"), 422, "validation_error", "metric"),
    "metric-non-ascii": (event(metric="émails"), 422, "validation_error", "metric"),
    # quantity: > 0, <= 1e12, at most 9 decimal places, finite
    "quantity-zero": (event(quantity=0), 422, "validation_error", "quantity"),
    "quantity-zero-decimal": ('{"metric": "emails", "quantity": 0.0}', 422, "validation_error", "quantity"),
    "quantity-negative": (event(quantity=-1), 422, "quantity_not_positive", "quantity"),
    "quantity-negative-fraction": (
        '{"metric": "emails", "quantity": -0.5}',
        422,
        "quantity_not_positive",
        "quantity",
    ),
    "quantity-nan-literal": ('{"metric": "emails", "quantity": NaN}', 400, "invalid_json", None),
    "quantity-infinity-literal": ('{"metric": "emails", "quantity": Infinity}', 400, "invalid_json", None),
    "quantity-minus-infinity": ('{"metric": "emails", "quantity": -Infinity}', 400, "invalid_json", None),
    "quantity-1e309": ('{"metric": "emails", "quantity": 1e309}', 422, "validation_error", "quantity"),
    "quantity-1e12-plus-1": (event(quantity=10**12 + 1), 422, "validation_error", "quantity"),
    "quantity-1e12-plus-a-nano": (
        '{"metric": "emails", "quantity": 1000000000000.000000001}',
        422,
        "validation_error",
        "quantity",
    ),
    "quantity-10-decimal-places": (
        '{"metric": "emails", "quantity": 0.0000000001}',
        422,
        "validation_error",
        "quantity",
    ),
    "quantity-10-decimal-places-large": (
        '{"metric": "emails", "quantity": 12.3456789012}',
        422,
        "validation_error",
        "quantity",
    ),
    # idempotencyKey: 1-255 chars
    "idempotency-key-empty": (event(idempotencyKey=""), 422, "validation_error", "idempotencyKey"),
    "idempotency-key-256": (event(idempotencyKey="k" * 256), 422, "validation_error", "idempotencyKey"),
    "idempotency-key-number": (event(idempotencyKey=5), 422, "validation_error", "idempotencyKey"),
    # timestamp: RFC 3339 with an offset
    "timestamp-date-only": (event(timestamp="2026-11-25"), 422, "validation_error", "timestamp"),
    "timestamp-no-offset": (event(timestamp="2026-11-25T11:00:00"), 422, "validation_error", "timestamp"),
    "timestamp-no-seconds": (event(timestamp="2026-11-25T11:00Z"), 422, "validation_error", "timestamp"),
    "timestamp-offset-without-colon": (
        event(timestamp="2026-11-25T11:00:00+0000"),
        422,
        "validation_error",
        "timestamp",
    ),
    "timestamp-unix-number": (event(timestamp=1795600000), 422, "validation_error", "timestamp"),
    "timestamp-month-13": (event(timestamp="2026-13-01T00:00:00Z"), 422, "validation_error", "timestamp"),
    "timestamp-february-30": (event(timestamp="2026-02-30T00:00:00Z"), 422, "validation_error", "timestamp"),
    "timestamp-hour-24": (event(timestamp="2026-11-25T24:00:00Z"), 422, "validation_error", "timestamp"),
    "timestamp-words": (event(timestamp="yesterday"), 422, "validation_error", "timestamp"),
    "timestamp-trailing-newline": (
        event(timestamp="2026-11-25T11:00:00Z\n"),
        422,
        "validation_error",
        "timestamp",
    ),
    "timestamp-offset-minutes-60": (
        event(timestamp="2026-11-25T11:00:00+00:60"),
        422,
        "validation_error",
        "timestamp",
    ),
    # metadata: an object of at most 2 KB serialized
    "metadata-list": (event(metadata=["a", "b"]), 422, "validation_error", "metadata"),
    "metadata-string": (event(metadata="campaign=42"), 422, "validation_error", "metadata"),
    "metadata-number": (event(metadata=42), 422, "validation_error", "metadata"),
    # {"x":"..."} is 8 bytes plus the string
    "metadata-2049-bytes": (event(metadata={"x": "y" * 2041}), 422, "validation_error", "metadata"),
    "metadata-way-over": (
        event(metadata={f"k{i}": "v" * 100 for i in range(30)}),
        422,
        "validation_error",
        "metadata",
    ),
}


@pytest.mark.parametrize(("body", "status", "code", "field"), REFUSED_EVENTS.values(), ids=REFUSED_EVENTS)
def test_single_event_refused(api: Stack, body: Any, status: int, code: str, field: str | None) -> None:
    assert_refused(api, api.track(body), status, code, field)


@pytest.mark.parametrize("body", [event(), event(developerId=ALICE), event(developerId="dev_bob")])
def test_developer_key_cannot_track(api: Stack, body: dict[str, Any]) -> None:
    assert_refused(api, api.track(body, auth=DEV_A, developer=None), 403, "forbidden")


def test_service_key_without_developer_id(api: Stack) -> None:
    assert_refused(api, api.track(event(), developer=None), 422, "developer_id_required")


@pytest.mark.parametrize("developer_id", ["dev#alice", "", "-dev", "d" * 65])
def test_service_key_with_a_malformed_developer_id(api: Stack, developer_id: str) -> None:
    """Developer ids never contain '#' (it separates the parts of the table keys)."""
    answer = api.track(event(developerId=developer_id), auth=SERVICE)
    assert_refused(api, answer, 422, "validation_error", "developerId")


@pytest.mark.parametrize("days_ago", [timedelta(days=36), timedelta(days=35, seconds=1)])
def test_timestamp_too_old(api: Stack, days_ago: timedelta) -> None:
    answer = api.track(event(timestamp=iso(NOW - days_ago)))
    assert_refused(api, answer, 422, "timestamp_out_of_range")


@pytest.mark.parametrize("ahead", [timedelta(minutes=6), timedelta(minutes=5, seconds=1)])
def test_timestamp_too_far_in_the_future(api: Stack, ahead: timedelta) -> None:
    answer = api.track(event(timestamp=iso(NOW + ahead)))
    assert_refused(api, answer, 422, "timestamp_out_of_range")


@pytest.mark.parametrize("value", ["", "k" * 256])
def test_idempotency_key_header_refused(api: Stack, value: str) -> None:
    answer = api.track(event(), headers={"Idempotency-Key": value})
    assert_refused(api, answer, 422, "validation_error", "idempotency-key")


def test_json_array_body_is_refused_not_truncated(api: Stack) -> None:
    """A JSON array is neither one event nor a batch: refusing it beats recording part of it."""
    body = [event(quantity=1, idempotencyKey="a"), event(quantity=99, idempotencyKey="b")]
    assert_refused(api, api.track(body), 422, "validation_error")


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_body_that_is_not_declared_json(api: Stack, content_type: str) -> None:
    answer = api.track(json.dumps(event()), headers={"content-type": content_type})
    assert_refused(api, answer, 415, "unsupported_media_type")


def test_json_with_a_charset_is_json(api: Stack) -> None:
    answer = api.track(event(), headers={"content-type": "application/json; charset=utf-8"})
    assert answer.status == 200, answer.body
    assert counters(api.dynamodb, api.usage_table) == recorded_once(METRIC, Decimal(1))


def test_body_that_is_not_utf8(api: Stack) -> None:
    assert_refused(api, api.track(b'{"metric": "\xff"}'), 400, "invalid_body")


# ---- the boundaries that are accepted (and written) ----------------------------------------------

ACCEPTED_EVENTS: dict[str, tuple[Any, str, Decimal, str]] = {
    # body, metric, quantity as stored, UTC day
    "quantity-1e12-exactly": (
        '{"metric": "emails", "quantity": 1e12}',
        METRIC,
        Decimal(10**12),
        "2026-11-25",
    ),
    "quantity-1e12-integer": (event(quantity=10**12), METRIC, Decimal(10**12), "2026-11-25"),
    "quantity-9-decimal-places": (
        '{"metric": "emails", "quantity": 0.000000001}',
        METRIC,
        Decimal("0.000000001"),
        "2026-11-25",
    ),
    "quantity-9-decimal-places-large": (
        '{"metric": "emails", "quantity": 123.456789012}',
        METRIC,
        Decimal("123.456789012"),
        "2026-11-25",
    ),
    "quantity-exponent-form": (
        '{"metric": "emails", "quantity": 25e-1}',
        METRIC,
        Decimal("2.5"),
        "2026-11-25",
    ),
    "metric-1-char": (event(metric="e"), "e", Decimal(1), "2026-11-25"),
    "metric-64-chars": (event(metric="m" * 64), "m" * 64, Decimal(1), "2026-11-25"),
    "metric-every-allowed-char": (event(metric="Api.calls_v2-x"), "Api.calls_v2-x", Decimal(1), "2026-11-25"),
    "timestamp-35-days-minus-a-minute": (
        event(timestamp=iso(NOW - timedelta(days=35) + timedelta(minutes=1))),
        METRIC,
        Decimal(1),
        "2026-10-21",
    ),
    "timestamp-4-minutes-ahead": (
        event(timestamp=iso(NOW + timedelta(minutes=4))),
        METRIC,
        Decimal(1),
        "2026-11-25",
    ),
    "timestamp-offset-decides-the-utc-day": (
        event(timestamp="2026-11-25T01:30:00+02:00"),
        METRIC,
        Decimal(1),
        "2026-11-24",
    ),
    "timestamp-lowercase-and-nanoseconds": (
        event(timestamp="2026-11-25t11:59:59.123456789z"),
        METRIC,
        Decimal(1),
        "2026-11-25",
    ),
    "metadata-2048-bytes": (event(metadata={"x": "y" * 2040}), METRIC, Decimal(1), "2026-11-25"),
    "metadata-empty-object": (event(metadata={}), METRIC, Decimal(1), "2026-11-25"),
    "developer-id-own": (event(developerId=ALICE), METRIC, Decimal(1), "2026-11-25"),
}


@pytest.mark.parametrize(("body", "metric", "quantity", "day"), ACCEPTED_EVENTS.values(), ids=ACCEPTED_EVENTS)
def test_single_event_accepted_at_the_boundary(
    api: Stack, body: Any, metric: str, quantity: Decimal, day: str
) -> None:
    answer = api.track(body)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert [r["status"] for r in result["results"]] == ["recorded"]
    assert result["usage"]["consumed"] == quantity
    assert counters(api.dynamodb, api.usage_table) == recorded_once(metric, quantity, day)


def test_metadata_of_exactly_2048_bytes_is_stored_whole(api: Stack) -> None:
    metadata = {"x": "y" * 2040}
    assert len(json.dumps(metadata, separators=(",", ":"))) == 2048
    answer = api.track(event(metadata=metadata, idempotencyKey="meta-2048"))
    assert answer.status == 200, answer.body
    (record,) = table_items(api.dynamodb, api.idempotency_table)
    assert record["metadata"] == {"S": '{"x":"' + "y" * 2040 + '"}'}  # kept as JSON text


@pytest.mark.parametrize(
    ("text", "stored"),
    [("1e12", "1000000000000"), ("0.000000001", "0.000000001"), ("2.50", "2.5"), ("25E-1", "2.5")],
)
def test_quantities_are_stored_in_plain_notation(api: Stack, text: str, stored: str) -> None:
    body = (
        f'{{"metric": "emails", "quantity": {text}, "idempotencyKey": "plain", "metadata": {{"n": {text}}}}}'
    )
    answer = api.track(body)
    assert answer.status == 200, answer.body
    (record,) = table_items(api.dynamodb, api.idempotency_table)
    assert record["quantity"] == {"N": stored}
    assert record["metadata"] == {"S": '{"n":' + stored + "}"}  # kept as JSON text


@pytest.mark.parametrize("where", ["body", "header"])
def test_idempotency_key_of_255_chars_accepted(api: Stack, where: str) -> None:
    if where == "body":
        answer = api.track(event(idempotencyKey=MAX_KEY))
    else:
        answer = api.track(event(), headers={"Idempotency-Key": MAX_KEY})
    assert answer.status == 200, answer.body
    assert answer.json()["results"][0]["idempotencyKey"] == MAX_KEY
    records = table_items(api.dynamodb, api.idempotency_table)
    assert [r["pk"]["S"] for r in records] == [f"{ALICE}#{MAX_KEY}"]
    assert counters(api.dynamodb, api.usage_table) == recorded_once(METRIC, Decimal(1))


def test_service_key_naming_a_developer_accepted(api: Stack) -> None:
    answer = api.track(event(developerId=ALICE), auth=SERVICE)
    assert answer.status == 200, answer.body
    assert counters(api.dynamodb, api.usage_table) == recorded_once(METRIC, Decimal(1))


# ---- POST /v1/usage/events: batches ----------------------------------------------------------------

REFUSED_BATCHES: dict[str, tuple[Any, str]] = {
    "no-events": ({"events": []}, "events"),
    "101-events": ({"events": [event(idempotencyKey=f"k{i}") for i in range(101)]}, "events"),
    "events-not-a-list": ({"events": "emails"}, "events"),
    "events-an-object": ({"events": {"0": event()}}, "events"),
    "events-null": ({"events": None}, "events"),
    "items-not-objects": ({"events": [event(), 5, "emails"]}, "events"),
}


@pytest.mark.parametrize(("body", "field"), REFUSED_BATCHES.values(), ids=REFUSED_BATCHES)
def test_batch_refused_as_a_whole(api: Stack, body: Any, field: str) -> None:
    assert_refused(api, api.track(body), 422, "validation_error", field)


def test_batch_of_100_events_accepted(api: Stack) -> None:
    answer = api.track({"events": [event(idempotencyKey=f"k{i}") for i in range(100)]})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (100, 0, 0)
    assert counters(api.dynamodb, api.usage_table) == {
        (f"DEV#{ALICE}", f"D#2026-11-25#{METRIC}"): (Decimal(100), 100),
        (f"DEV#{ALICE}", f"M#2026-11#{METRIC}"): (Decimal(100), 100),
    }
    assert len(table_items(api.dynamodb, api.idempotency_table)) == 100


def test_batch_with_bad_items_records_only_the_good_ones(api: Stack) -> None:
    body = {
        "events": [
            event(quantity=2, idempotencyKey="good-0"),
            event(quantity=0, idempotencyKey="bad-1"),
            {"metric": "sms", "quantity": 1.25, "idempotencyKey": "good-2"},
            event(unit="requests"),
            event(developerId="dev_nobody"),
            event(timestamp=iso(NOW - timedelta(days=36))),
            event(metric="1bad"),
            event(idempotencyKey="k" * 256),
            {"metric": "sms", "quantity": 0.5},
        ]
    }
    answer = api.track(body)
    assert answer.status == 200, answer.body
    result = answer.json()
    statuses = [(r["index"], r["status"], r.get("error", {}).get("code")) for r in result["results"]]
    assert statuses == [
        (0, "recorded", None),
        (1, "rejected", "validation_error"),
        (2, "recorded", None),
        (3, "rejected", "validation_error"),
        (4, "rejected", "developer_not_found"),
        (5, "rejected", "timestamp_out_of_range"),
        (6, "rejected", "validation_error"),
        (7, "rejected", "validation_error"),
        (8, "recorded", None),
    ]
    assert (result["recorded"], result["duplicates"], result["rejected"]) == (3, 0, 6)
    for rejected in (r for r in result["results"] if r["status"] == "rejected"):
        assert rejected["error"]["message"]
        assert "recordedAt" not in rejected
    assert "quantity" in result["results"][1]["error"]["message"]
    assert "unit" in result["results"][3]["error"]["message"]
    assert counters(api.dynamodb, api.usage_table) == {
        (f"DEV#{ALICE}", f"D#2026-11-25#{METRIC}"): (Decimal(2), 1),
        (f"DEV#{ALICE}", f"M#2026-11#{METRIC}"): (Decimal(2), 1),
        (f"DEV#{ALICE}", "D#2026-11-25#sms"): (Decimal("1.75"), 2),
        (f"DEV#{ALICE}", "M#2026-11#sms"): (Decimal("1.75"), 2),
    }
    made = result["results"][8]["idempotencyKey"]  # sent without a key: the service made one
    assert MADE_KEY.fullmatch(made), made
    records = table_items(api.dynamodb, api.idempotency_table)
    assert sorted(r["pk"]["S"] for r in records) == sorted(
        [f"{ALICE}#good-0", f"{ALICE}#good-2", f"{ALICE}#{made}"]
    )


def test_batch_item_without_developer_id_under_a_service_key(api: Stack) -> None:
    answer = api.track({"events": [event(), event(developerId=ALICE, quantity=3)]}, developer=None)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert [(r["status"], r.get("error", {}).get("code")) for r in result["results"]] == [
        ("rejected", "developer_id_required"),
        ("recorded", None),
    ]
    assert counters(api.dynamodb, api.usage_table) == recorded_once(METRIC, Decimal(3))


def test_batch_of_only_bad_items_writes_nothing(api: Stack) -> None:
    answer = api.track({"events": [event(quantity=0), event(metric=""), event(developerId="dev_nobody")]})
    assert answer.status == 200, answer.body
    result = answer.json()
    assert [r["status"] for r in result["results"]] == ["rejected"] * 3
    assert (result["recorded"], result["duplicates"], result["rejected"]) == (0, 0, 3)
    assert tables(api) == ([], [])


# ---- GET /v1/usage and GET /v1/usage/history: query parameters ----------------------------------

REFUSED_CURRENT: dict[str, tuple[dict[str, str], int, str, str | None]] = {
    "period-year": ({"period": "year"}, 422, "validation_error", "period"),
    "period-empty": ({"period": ""}, 422, "validation_error", "period"),
    "period-uppercase": ({"period": "MONTH"}, 422, "validation_error", "period"),
    "start-after-end": ({"startDate": "2026-11-20", "endDate": "2026-11-10"}, 422, "invalid_range", None),
    "range-367-days": ({"startDate": "2025-11-23", "endDate": "2026-11-24"}, 422, "invalid_range", None),
    "end-without-start": ({"endDate": "2026-11-10"}, 422, "invalid_range", None),
    "start-slashes": ({"startDate": "2026/11/01"}, 422, "validation_error", "startDate"),
    "start-day-31-of-november": ({"startDate": "2026-11-31"}, 422, "validation_error", "startDate"),
    "end-words": ({"startDate": "2026-11-01", "endDate": "today"}, 422, "validation_error", "endDate"),
    "period-and-range": ({"period": "day", "startDate": "2026-11-01"}, 422, "invalid_range", None),
    "metric-pattern": ({"metric": "1emails"}, 422, "validation_error", "metric"),
    "metric-trailing-newline": ({"metric": "emails\n"}, 422, "validation_error", "metric"),
    "developer-id-trailing-newline": ({"developerId": "dev_alice\n"}, 422, "validation_error", "developerId"),
    "developer-id-of-another": ({"developerId": "dev_bob"}, 403, "forbidden", None),
}

REFUSED_HISTORY: dict[str, tuple[dict[str, str], int, str, str | None]] = {
    "days-0": ({"days": "0"}, 422, "validation_error", "days"),
    "days-367": ({"days": "367"}, 422, "validation_error", "days"),
    "days-negative": ({"days": "-1"}, 422, "validation_error", "days"),
    "days-abc": ({"days": "abc"}, 422, "validation_error", "days"),
    "days-fraction": ({"days": "1.5"}, 422, "validation_error", "days"),
    "days-empty": ({"days": ""}, 422, "validation_error", "days"),
    "start-after-end": ({"startDate": "2026-11-20", "endDate": "2026-11-10"}, 422, "invalid_range", None),
    "range-367-days": ({"startDate": "2025-11-23", "endDate": "2026-11-24"}, 422, "invalid_range", None),
    "start-367-days-ago": ({"startDate": "2025-11-24"}, 422, "invalid_range", None),
    "start-slashes": ({"startDate": "2026/11/01"}, 422, "validation_error", "startDate"),
    "start-compact": ({"startDate": "20261101"}, 422, "validation_error", "startDate"),
    "days-and-start": ({"days": "7", "startDate": "2026-11-01"}, 422, "invalid_range", None),
    "granularity-week": ({"granularity": "week"}, 422, "validation_error", "granularity"),
    "metric-trailing-newline": ({"metric": "emails\n"}, 422, "validation_error", "metric"),
    "developer-id-trailing-newline": ({"developerId": "dev_alice\n"}, 422, "validation_error", "developerId"),
    "developer-id-of-another": ({"developerId": "dev_bob"}, 403, "forbidden", None),
}


@pytest.fixture
def seeded(api: Stack) -> tuple[Stack, Any]:
    """One event tracked, so "unchanged" is checked against tables that hold something."""
    assert api.track(event(quantity=3, idempotencyKey="seed")).status == 200
    return api, tables(api)


@pytest.mark.parametrize(("query", "status", "code", "field"), REFUSED_CURRENT.values(), ids=REFUSED_CURRENT)
def test_current_usage_query_refused(
    seeded: tuple[Stack, Any], query: dict[str, str], status: int, code: str, field: str | None
) -> None:
    stack, before = seeded
    assert_error(stack.current(**query), status, code, field)
    assert tables(stack) == before


@pytest.mark.parametrize(("query", "status", "code", "field"), REFUSED_HISTORY.values(), ids=REFUSED_HISTORY)
def test_history_query_refused(
    seeded: tuple[Stack, Any], query: dict[str, str], status: int, code: str, field: str | None
) -> None:
    stack, before = seeded
    assert_error(stack.history(**query), status, code, field)
    assert tables(stack) == before


@pytest.mark.parametrize("read", ["current", "history"])
def test_service_key_read_without_developer_id(seeded: tuple[Stack, Any], read: str) -> None:
    stack, before = seeded
    answer = stack.current(auth=SERVICE) if read == "current" else stack.history(auth=SERVICE)
    assert_error(answer, 422, "developer_id_required")
    assert tables(stack) == before


@pytest.mark.parametrize("metric", ["emails%0A", "emails%0D%0A", "%0Aemails", "1emails"])
def test_entitlement_metric_must_match_whole(seeded: tuple[Stack, Any], metric: str) -> None:
    stack, before = seeded
    assert_error(stack.call("GET", f"/v1/entitlements/{metric}"), 422, "validation_error", "metric")
    assert tables(stack) == before


def test_history_of_366_days_accepted(seeded: tuple[Stack, Any]) -> None:
    stack, _ = seeded
    for query in (
        {"days": "366"},
        {"startDate": "2025-11-25"},
        {"startDate": "2025-11-24", "endDate": "2026-11-24"},
    ):
        answer = stack.history(**query)
        assert answer.status == 200, (query, answer.body)
        entries = answer.json()["entries"]
        assert len(entries) == 366
        assert entries[0]["date"] == query.get("startDate", "2025-11-25")


def test_current_range_of_366_days_accepted(seeded: tuple[Stack, Any]) -> None:
    stack, _ = seeded
    answer = stack.current(startDate="2025-11-25", endDate="2026-11-25")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["period"] == {
        "key": "2025-11-25..2026-11-25",
        "start": "2025-11-25T00:00:00Z",
        "end": "2026-11-26T00:00:00Z",
    }
    assert body["metrics"][METRIC]["consumed"] == 3
