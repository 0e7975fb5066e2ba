"""Tracking through meters: an event is judged by its metric's meter (made as an operator makes
it, `usage-meter meters create`), counted by its aggregation, and read back with the
aggregation, the events and (sum meters) the average. Asserts the answers and the counters
that landed in DynamoDB.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.store import dynamodb as store_db
from usage_meter_admin import cli

from helpers import catalogs_in, counters, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "dev_alice"  # on pro: api_calls and tokens declared by the plan


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    assert cli.main(["meters", "create", "logins", "--aggregation", "count"]) == 0
    assert cli.main(["meters", "create", "gpu_seconds", "--aggregation", "sum", "--unit", "s"]) == 0
    assert cli.main(["meters", "create", "peak_rps", "--aggregation", "max"]) == 0
    return stack


def results(api: Stack, *events: dict[str, Any]) -> list[dict[str, Any]]:
    answer = api.track(jsonutil.dumps({"events": [{**e, "developerId": ALICE} for e in events]}))
    assert answer.status == 200, answer.body
    found: list[dict[str, Any]] = answer.json()["results"]
    return found


def month(api: Stack, metric: str) -> tuple[Decimal, int]:
    return counters(api.dynamodb, api.usage_table)[(f"DEV#{ALICE}", f"M#2026-11#{metric}")]


def stored_aggregation(api: Stack, metric: str) -> set[str]:
    return {
        i["aggregation"]["S"]
        for i in table_items(api.dynamodb, api.usage_table)
        if i["sk"]["S"].endswith(f"#{metric}") and i["sk"]["S"][:2] in ("D#", "M#")
    }


def test_a_count_meter_counts_events_whatever_their_quantity(api: Stack) -> None:
    statuses = results(api, {"metric": "logins"}, {"metric": "logins", "quantity": 40}, {"metric": "logins"})
    assert [r["status"] for r in statuses] == ["recorded"] * 3
    single = api.track({"metric": "logins"})
    assert single.status == 200
    assert single.json()["usage"]["consumed"] == 4

    assert month(api, "logins") == (Decimal(4), 4)
    assert stored_aggregation(api, "logins") == {"count"}
    usage = api.current(metric="logins").json()["metrics"]["logins"]
    assert usage == {
        "consumed": 4,
        "limit": None,
        "remaining": None,
        "percentageUsed": None,
        "aggregation": "count",
        "events": 4,
        "average": None,
    }
    records = sorted(r["quantity"]["N"] for r in table_items(api.dynamodb, api.idempotency_table))
    assert records == ["1"] * 4  # what each event added


def test_a_sum_meter_reports_its_average(api: Stack) -> None:
    sent = results(
        api,
        {"metric": "gpu_seconds", "quantity": Decimal("0.5")},
        {"metric": "gpu_seconds", "quantity": Decimal("1.25")},
        {"metric": "gpu_seconds", "quantity": 1},
    )
    assert [r["status"] for r in sent] == ["recorded"] * 3
    usage = api.current().json()["metrics"]
    assert usage["gpu_seconds"]["consumed"] == Decimal("2.75")
    assert (usage["gpu_seconds"]["aggregation"], usage["gpu_seconds"]["events"]) == ("sum", 3)
    assert usage["gpu_seconds"]["average"] == Decimal("0.916666667")  # 2.75 / 3, 9 places, half up
    # the plan's metrics, unused, and their aggregation
    assert usage["api_calls"] == {
        "consumed": 0,
        "limit": 100000,
        "remaining": 100000,
        "percentageUsed": 0,
        "aggregation": "sum",
        "events": 0,
        "average": None,
    }


def test_quantities_that_do_not_fit_their_meter_are_refused_and_count_nothing(api: Stack) -> None:
    refused = api.track({"metric": "gpu_seconds"})
    assert refused.status == 422
    assert refused.json()["error"]["code"] == "quantity_required"
    negative = api.track({"metric": "emails", "quantity": -2})  # no meter: a sum
    assert (negative.status, negative.json()["error"]["code"]) == (422, "quantity_not_positive")
    assert negative.json()["error"]["message"] == "quantity: Input should be greater than 0"

    batch = results(
        api,
        {"metric": "gpu_seconds", "quantity": 2},
        {"metric": "gpu_seconds", "quantity": -1},
        {"metric": "gpu_seconds"},
        {"metric": "logins", "quantity": -1},
        {"metric": "gpu_seconds", "quantity": 3},
    )
    assert [(r["status"], (r.get("error") or {}).get("code")) for r in batch] == [
        ("recorded", None),
        ("rejected", "quantity_not_positive"),
        ("rejected", "quantity_required"),
        ("rejected", "quantity_not_positive"),
        ("recorded", None),
    ]
    assert month(api, "gpu_seconds") == (Decimal(5), 2)
    assert len(table_items(api.dynamodb, api.idempotency_table)) == 2


def test_an_archived_meter_takes_no_events_but_stays_readable(api: Stack) -> None:
    results(api, {"metric": "logins"})
    assert cli.main(["meters", "archive", "logins"]) == 0
    refused = api.track({"metric": "logins", "idempotencyKey": "late"})
    assert (refused.status, refused.json()["error"]["code"]) == (422, "meter_archived")
    assert [r["status"] for r in results(api, {"metric": "logins"}, {"metric": "tokens", "quantity": 1})] == [
        "rejected",
        "recorded",
    ]
    assert month(api, "logins") == (Decimal(1), 1)
    assert api.current().json()["metrics"]["logins"]["consumed"] == 1


def test_declared_meters_take_no_place_in_the_catalog(api: Stack) -> None:
    results(
        api,
        {"metric": "logins"},
        {"metric": "gpu_seconds", "quantity": 1},
        {"metric": "emails", "quantity": 1},
    )
    assert catalogs_in(table_items(api.dynamodb, api.usage_table)) == {ALICE: ({"emails"}, 1)}


def test_a_meter_not_counted_yet_refuses_its_events(api: Stack) -> None:
    refused = api.track({"metric": "peak_rps", "quantity": 7})
    assert (refused.status, refused.json()["error"]["code"]) == (422, "aggregation_not_supported")
    assert ("DEV#dev_alice", "M#2026-11#peak_rps") not in counters(api.dynamodb, api.usage_table)


def test_undeclared_metrics_rejected_when_the_stack_says_so(
    api: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNDECLARED_METRICS", "reject")
    store_db.reset()  # the settings are read once per container
    refused = api.track({"metric": "emails", "quantity": 1})
    assert (refused.status, refused.json()["error"]["code"]) == (422, "unknown_metric")
    assert [r["status"] for r in results(api, {"metric": "logins"}, {"metric": "emails", "quantity": 1})] == [
        "recorded",
        "rejected",
    ]
    assert ("DEV#dev_alice", "M#2026-11#emails") not in counters(api.dynamodb, api.usage_table)
