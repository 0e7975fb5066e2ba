"""POST /v1/usage/events against moto: exactly-once counting, batches, boundaries, exact decimals."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.store import dynamodb as store_db

from helpers import DEV_A, counters, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def day_counter(stack: Stack, developer: str, day: str, metric: str) -> tuple[Decimal, int] | None:
    return counters(stack.dynamodb, stack.usage_table).get((f"DEV#{developer}", f"D#{day}#{metric}"))


def month_counter(stack: Stack, developer: str, month: str, metric: str) -> tuple[Decimal, int] | None:
    return counters(stack.dynamodb, stack.usage_table).get((f"DEV#{developer}", f"M#{month}#{metric}"))


def test_single_event_is_recorded_with_usage_block(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    answer = stack.track({"metric": "api_calls", "quantity": 3, "idempotencyKey": "evt-1"})

    assert answer.status == 200
    body = answer.json()
    assert body["results"] == [
        {
            "index": 0,
            "status": "recorded",
            "idempotencyKey": "evt-1",
            "recordedAt": "2026-11-10T12:00:00.000Z",
        }
    ]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    assert body["usage"] == {
        "metric": "api_calls",
        "consumed": 3,
        "limit": 100000,  # the pro plan's hard limit
        "remaining": 99997,
        "periodStart": "2026-11-01T00:00:00Z",
        "periodEnd": "2026-12-01T00:00:00Z",
    }
    assert day_counter(stack, "dev_alice", "2026-11-10", "api_calls") == (Decimal(3), 1)
    assert month_counter(stack, "dev_alice", "2026-11", "api_calls") == (Decimal(3), 1)
    (record,) = table_items(stack.dynamodb, stack.idempotency_table)
    assert record["pk"]["S"] == "dev_alice#evt-1"
    assert record["quantity"]["N"] == "3"
    assert record["day"]["S"] == "2026-11-10"
    # kept for the 35-day backdating window plus a day
    assert int(record["expiresAt"]["N"]) == int((NOON + timedelta(days=36)).timestamp())


def test_duplicate_returns_the_original_outcome_and_counts_once(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    first = stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "k"})
    freeze(NOON + timedelta(minutes=3))
    again = stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "k"})

    assert again.status == 200
    result = again.json()["results"][0]
    assert result["status"] == "duplicate"
    assert result["recordedAt"] == first.json()["results"][0]["recordedAt"] == "2026-11-10T12:00:00.000Z"
    assert again.json()["duplicates"] == 1
    assert again.json()["usage"]["consumed"] == 1
    assert month_counter(stack, "dev_alice", "2026-11", "api_calls") == (Decimal(1), 1)
    assert len(table_items(stack.dynamodb, stack.idempotency_table)) == 1


def test_retry_without_timestamp_is_a_duplicate_not_a_conflict(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    stack.track({"metric": "tokens", "quantity": 5, "idempotencyKey": "no-ts"})
    freeze(NOON + timedelta(hours=2))  # a later "now" must not make the payload differ
    again = stack.track({"metric": "tokens", "quantity": 5.0, "idempotencyKey": "no-ts"})
    assert again.status == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    assert month_counter(stack, "dev_alice", "2026-11", "tokens") == (Decimal(5), 1)


def test_same_key_different_payload_is_409_and_changes_nothing(stack: Stack) -> None:
    stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "k"})
    before = counters(stack.dynamodb, stack.usage_table)

    answer = stack.track({"metric": "api_calls", "quantity": 2, "idempotencyKey": "k"})

    assert answer.status == 409
    assert answer.json()["error"]["code"] == "idempotency_key_reused"
    assert counters(stack.dynamodb, stack.usage_table) == before


def test_idempotency_key_header_for_a_single_event(stack: Stack) -> None:
    first = stack.track({"metric": "api_calls", "quantity": 1}, headers={"Idempotency-Key": "hdr-1"})
    again = stack.track({"metric": "api_calls", "quantity": 1}, headers={"Idempotency-Key": "hdr-1"})
    assert first.json()["results"][0] | {"recordedAt": None} == {
        "index": 0,
        "status": "recorded",
        "idempotencyKey": "hdr-1",
        "recordedAt": None,
    }
    assert again.json()["results"][0]["status"] == "duplicate"
    assert table_items(stack.dynamodb, stack.idempotency_table)[0]["pk"]["S"] == "dev_alice#hdr-1"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"metric": "m", "quantity": 1, "idempotencyKey": "body"}, "idempotency_key_mismatch"),
        ({"events": [{"metric": "m", "quantity": 1}]}, "idempotency_header_on_batch"),
    ],
)
def test_idempotency_header_conflicts_are_refused(stack: Stack, body: dict[str, object], code: str) -> None:
    answer = stack.track(body, headers={"Idempotency-Key": "hdr"})
    assert answer.status == 422
    assert answer.json()["error"]["code"] == code
    assert table_items(stack.dynamodb, stack.usage_table) == []


def test_events_without_key_are_counted_each_time_with_a_key_made_for_each(stack: Stack) -> None:
    made = []
    for _ in range(3):
        answer = stack.track({"metric": "api_calls", "quantity": 2})
        assert answer.status == 200
        made.append(answer.json()["results"][0]["idempotencyKey"])
    assert all(re.fullmatch(r"um_evt_[0-9a-f]{32}", key) for key in made), made
    assert len(set(made)) == 3
    # each is stored as its idempotency record, like a client's key
    records = table_items(stack.dynamodb, stack.idempotency_table)
    assert sorted(r["pk"]["S"] for r in records) == sorted(f"dev_alice#{key}" for key in made)
    today = datetime.now(UTC).strftime("%Y-%m")
    assert month_counter(stack, "dev_alice", today, "api_calls") == (Decimal(6), 3)


def test_batch_results_in_order_with_duplicates_inside_and_across(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "old"})
    batch = {
        "events": [
            {"metric": "api_calls", "quantity": 1, "idempotencyKey": "a"},
            {"metric": "tokens", "quantity": 250, "idempotencyKey": "b"},
            {"metric": "api_calls", "quantity": 1, "idempotencyKey": "a"},  # same payload: duplicate
            {"metric": "api_calls", "quantity": 9, "idempotencyKey": "a"},  # other payload: rejected
            {"metric": "api_calls", "quantity": 1, "idempotencyKey": "old"},  # earlier call: duplicate
            {"metric": "api_calls", "quantity": 4},
        ]
    }
    answer = stack.track(batch)

    assert answer.status == 200
    body = answer.json()
    assert "usage" not in body
    assert [r["status"] for r in body["results"]] == [
        "recorded",
        "recorded",
        "duplicate",
        "rejected",
        "duplicate",
        "recorded",
    ]
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert body["results"][3]["error"]["code"] == "idempotency_key_reused"
    assert body["results"][2]["recordedAt"] == body["results"][0]["recordedAt"]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (3, 2, 1)
    assert day_counter(stack, "dev_alice", "2026-11-10", "api_calls") == (Decimal(6), 3)  # old + a + 4
    assert day_counter(stack, "dev_alice", "2026-11-10", "tokens") == (Decimal(250), 1)
    assert body["results"][5]["idempotencyKey"].startswith("um_evt_")
    assert len(table_items(stack.dynamodb, stack.idempotency_table)) == 4  # a, b, old, the made key


def test_full_batch_splits_into_transactions_and_counts_every_event_once(stack: Stack) -> None:
    events = [{"metric": "api_calls", "quantity": 1, "idempotencyKey": f"e{i}"} for i in range(100)]
    first = stack.track({"events": events})
    again = stack.track({"events": events})

    assert first.json()["recorded"] == 100
    assert again.json()["duplicates"] == 100
    assert len(table_items(stack.dynamodb, stack.idempotency_table)) == 100
    month = datetime.now(UTC).strftime("%Y-%m")
    assert month_counter(stack, "dev_alice", month, "api_calls") == (Decimal(100), 100)


def test_batch_over_many_counters_is_exact(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    events = [
        {
            "metric": f"m{i % 7}",
            "quantity": f"{i}.5",
            "idempotencyKey": f"k{i}",
            "timestamp": f"2026-11-{1 + i % 10:02d}T08:00:00Z",
        }
        for i in range(100)
    ]
    body = "{" + '"events": [' + ",".join(_event_json(e) for e in events) + "]}"
    answer = stack.track(body)
    assert answer.json()["recorded"] == 100
    expected_month: dict[str, Decimal] = {}
    for e in events:
        expected_month[str(e["metric"])] = expected_month.get(str(e["metric"]), Decimal(0)) + Decimal(
            str(e["quantity"])
        )
    for metric, total in expected_month.items():
        assert month_counter(stack, "dev_alice", "2026-11", metric) == (
            total,
            sum(1 for e in events if e["metric"] == metric),
        )


def _event_json(event: dict[str, object]) -> str:
    """An event with its quantity written as a raw JSON number."""
    return (
        f'{{"metric": "{event["metric"]}", "quantity": {event["quantity"]}, '
        f'"idempotencyKey": "{event["idempotencyKey"]}", "timestamp": "{event["timestamp"]}"}}'
    )


def test_quantities_are_exact_decimals(stack: Stack) -> None:
    stack.track('{"metric": "gb", "quantity": 0.1}')
    stack.track('{"metric": "gb", "quantity": 0.2}')
    big = stack.track('{"metric": "gb", "quantity": 999999999999.999999999}')
    assert big.status == 200
    assert big.body.count('"consumed":1000000000000.299999999') == 1
    month = datetime.now(UTC).strftime("%Y-%m")
    assert month_counter(stack, "dev_alice", month, "gb") == (Decimal("1000000000000.299999999"), 3)
    current = stack.current()
    assert '"consumed":1000000000000.299999999' in current.body


def test_day_boundary_at_midnight_utc(stack: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 11, 10, 0, 1, tzinfo=UTC))
    stack.track({"metric": "api_calls", "quantity": 1, "timestamp": "2026-11-09T23:59:59.999Z"})
    stack.track({"metric": "api_calls", "quantity": 10, "timestamp": "2026-11-10T00:00:00Z"})
    stack.track(
        {"metric": "api_calls", "quantity": 100, "timestamp": "2026-11-10T01:30:00+02:00"}
    )  # 23:30Z on the 9th

    assert day_counter(stack, "dev_alice", "2026-11-09", "api_calls") == (Decimal(101), 2)
    assert day_counter(stack, "dev_alice", "2026-11-10", "api_calls") == (Decimal(10), 1)
    history = stack.history(startDate="2026-11-09", endDate="2026-11-10").json()
    assert [(e["date"], e["metrics"]["api_calls"]) for e in history["entries"]] == [
        ("2026-11-09", 101),
        ("2026-11-10", 10),
    ]


def test_backdated_event_lands_in_last_months_period(stack: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 12, 1, 0, 10, tzinfo=UTC))
    answer = stack.track(
        {
            "metric": "api_calls",
            "quantity": 7,
            "idempotencyKey": "late",
            "timestamp": "2026-11-30T23:59:59.999Z",
        }
    )

    assert answer.status == 200
    assert answer.json()["usage"]["periodStart"] == "2026-11-01T00:00:00Z"
    assert answer.json()["usage"]["consumed"] == 7
    assert month_counter(stack, "dev_alice", "2026-11", "api_calls") == (Decimal(7), 1)
    assert month_counter(stack, "dev_alice", "2026-12", "api_calls") is None
    december = stack.current().json()
    assert december["period"]["key"] == "2026-12"
    # the plan's metrics are listed with nothing consumed yet
    assert {name: m["consumed"] for name, m in december["metrics"].items()} == {"api_calls": 0, "tokens": 0}
    november = stack.current(startDate="2026-11-01", endDate="2026-11-30").json()
    assert november["metrics"]["api_calls"]["consumed"] == 7


def test_expired_idempotency_record_is_replaced_not_trusted(stack: Stack, freeze: Freeze) -> None:
    """Expiry is checked in the condition: a record past its expiresAt (TTL not yet run) is replaced."""
    freeze(NOON)
    stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "reused-later"})
    freeze(NOON + timedelta(days=37))
    later = stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "reused-later"})
    assert later.json()["results"][0]["status"] == "recorded"
    (record,) = table_items(stack.dynamodb, stack.idempotency_table)
    assert int(record["expiresAt"]["N"]) == int((NOON + timedelta(days=37 + 36)).timestamp())


def test_idempotency_keys_are_scoped_per_developer(stack: Stack) -> None:
    a = stack.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "abc"}, developer="dev_alice")
    b = stack.track({"metric": "api_calls", "quantity": 5, "idempotencyKey": "abc"}, developer="dev_bob")
    assert a.json()["results"][0]["status"] == "recorded"
    assert b.json()["results"][0]["status"] == "recorded"
    month = datetime.now(UTC).strftime("%Y-%m")
    assert month_counter(stack, "dev_alice", month, "api_calls") == (Decimal(1), 1)
    assert month_counter(stack, "dev_bob", month, "api_calls") == (Decimal(5), 1)


def test_service_key_tracks_for_the_named_developer(stack: Stack) -> None:
    answer = stack.track({"metric": "api_calls", "quantity": 2, "developerId": "dev_bob"}, developer=None)
    assert answer.status == 200
    month = datetime.now(UTC).strftime("%Y-%m")
    assert month_counter(stack, "dev_bob", month, "api_calls") == (Decimal(2), 1)
    assert month_counter(stack, "dev_provider", month, "api_calls") is None
    batch = stack.track(
        {
            "events": [
                {"metric": "api_calls", "quantity": 1, "developerId": "dev_alice"},
                {"metric": "api_calls", "quantity": 1},
            ]
        },
        developer=None,
    )
    assert [r["status"] for r in batch.json()["results"]] == ["recorded", "rejected"]
    assert batch.json()["results"][1]["error"]["code"] == "developer_id_required"


def test_missing_authorizer_context_is_401(stack: Stack) -> None:
    answer = stack.track({"metric": "api_calls", "quantity": 1}, auth=None)
    assert answer.status == 401
    assert answer.json() == {"error": {"code": "unauthorized", "message": "missing API key"}}
    assert table_items(stack.dynamodb, stack.usage_table) == []


# ---- only service keys track ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"metric": "api_calls", "quantity": 1},
        {"metric": "api_calls", "quantity": 1, "idempotencyKey": "invoice-42"},
        {"metric": "api_calls", "quantity": 1, "developerId": "dev_alice"},
        {"events": [{"metric": "api_calls", "quantity": 1, "idempotencyKey": "invoice-42"}]},
        {"events": [{"metric": "api_calls", "quantity": 1}, {"metric": "tokens", "quantity": 5}]},
    ],
    ids=["single", "single-keyed", "single-naming-itself", "batch-keyed", "batch"],
)
def test_developer_key_cannot_track_and_nothing_is_read_or_written(
    stack: Stack, body: dict[str, Any]
) -> None:
    """Developer keys only read: tracking is refused before any DynamoDB call, for single events
    and batches alike (a developer could otherwise skip or forge its own usage, or take the
    provider's idempotency keys first)."""
    calls: list[str] = []
    client = store_db.client()
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    answer = stack.track(body, auth=DEV_A, developer=None, headers={"Idempotency-Key": "invoice-43"})

    assert answer.status == 403, answer.body
    assert answer.json() == {"error": {"code": "forbidden", "message": "tracking needs a service key"}}
    assert calls == []
    assert table_items(stack.dynamodb, stack.usage_table) == []
    assert table_items(stack.dynamodb, stack.idempotency_table) == []
