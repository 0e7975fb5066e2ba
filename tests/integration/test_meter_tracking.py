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


def test_a_unique_count_meter_counts_each_value_once_per_day_and_month(api: Stack) -> None:
    assert (
        cli.main(["meters", "create", "visitors", "--aggregation", "unique_count", "--unique-by", "user"])
        == 0
    )
    assert cli.main(["plans", "put", "few", "--metric", "visitors=3:hard"]) == 0
    assert cli.main(["plans", "set", ALICE, "few"]) == 0

    def visit(user: str, when: str = "2026-11-25T10:00:00Z") -> dict[str, Any]:
        return {"metric": "visitors", "metadata": {"user": user}, "timestamp": when}

    sent = results(
        api,
        visit("ann", "2026-11-24T10:00:00Z"),
        visit("ann"),  # seen this month already, new today
        visit("bob"),
        visit("ann"),
        visit("cy"),
        visit("dee"),  # a 4th distinct visitor in November: past the limit of 3
        visit("bob"),  # not new: takes no room
        {"metric": "visitors", "metadata": {"name": "eve"}},  # no uniqueBy property
    )
    assert [(r["status"], (r.get("error") or {}).get("code")) for r in sent] == [
        ("recorded", None),
        ("recorded", None),
        ("recorded", None),
        ("recorded", None),
        ("recorded", None),
        ("limit_exceeded", "limit_exceeded"),
        ("recorded", None),
        ("rejected", "unique_by_missing"),
    ]
    stored = counters(api.dynamodb, api.usage_table)
    assert stored[(f"DEV#{ALICE}", "D#2026-11-24#visitors")] == (Decimal(1), 1)
    assert stored[(f"DEV#{ALICE}", "D#2026-11-25#visitors")] == (Decimal(3), 5)  # ann, bob, cy
    assert month(api, "visitors") == (Decimal(3), 6)
    markers = sorted(
        i["sk"]["S"][:19] for i in table_items(api.dynamodb, api.usage_table) if i["sk"]["S"].startswith("U#")
    )
    assert markers == ["U#D#2026-11-24#visi"] + ["U#D#2026-11-25#visi"] * 3 + ["U#M#2026-11#visitor"] * 3
    again = api.track(visit("dee"))
    assert (again.status, again.json()["error"]["code"]) == (429, "limit_exceeded")
    assert api.track(visit("cy")).status == 200  # a known visitor still fits
    usage = api.current().json()["metrics"]["visitors"]
    assert (usage["consumed"], usage["limit"], usage["aggregation"], usage["events"]) == (
        3,
        3,
        "unique_count",
        7,
    )
    for ranged in ({"period": "week"}, {"startDate": "2026-11-24", "endDate": "2026-11-25"}):
        week = api.current(metric="visitors", **ranged).json()["metrics"]["visitors"]
        assert (week["consumed"], week["events"]) == (3, 7)  # ann, bob, cy: not 1 + 3
    assert api.current(metric="visitors", period="day").json()["metrics"]["visitors"]["consumed"] == 3
    monthly = api.history(days="2", metric="visitors", granularity="month").json()["entries"]
    assert monthly[0]["metrics"] == {"visitors": 3}  # the month's distinct visitors, not 1 + 3
    assert [e["metrics"]["visitors"] for e in api.history(days="2", metric="visitors").json()["entries"]] == [
        1,
        3,
    ]


def test_a_max_meter_keeps_the_largest_value_of_each_window(api: Stack) -> None:
    sent = results(
        api,
        {"metric": "peak_rps", "quantity": 7, "timestamp": "2026-11-24T10:00:00Z"},
        {"metric": "peak_rps", "quantity": 3},
        {"metric": "peak_rps", "quantity": Decimal("9.5")},
        {"metric": "peak_rps", "quantity": 2},
    )
    assert [r["status"] for r in sent] == ["recorded"] * 4
    later = results(api, {"metric": "peak_rps", "quantity": 4}, {"metric": "peak_rps", "quantity": 8})
    assert [r["status"] for r in later] == ["recorded"] * 2
    stored = counters(api.dynamodb, api.usage_table)
    assert stored[(f"DEV#{ALICE}", "D#2026-11-24#peak_rps")] == (Decimal(7), 1)
    assert stored[(f"DEV#{ALICE}", "D#2026-11-25#peak_rps")] == (Decimal("9.5"), 5)
    assert month(api, "peak_rps") == (Decimal("9.5"), 6)
    usage = api.current().json()["metrics"]["peak_rps"]
    assert (usage["consumed"], usage["aggregation"], usage["events"], usage["average"]) == (
        Decimal("9.5"),
        "max",
        6,
        None,
    )
    assert api.current(period="day").json()["metrics"]["peak_rps"]["consumed"] == Decimal("9.5")
    history = api.history(days="2", metric="peak_rps").json()["entries"]
    assert [e["metrics"]["peak_rps"] for e in history] == [7, Decimal("9.5")]
    assert api.history(days="2", metric="peak_rps", granularity="month").json()["entries"][0]["metrics"] == {
        "peak_rps": Decimal("9.5")
    }


def test_a_latest_meter_keeps_the_value_of_the_latest_event(api: Stack) -> None:
    assert cli.main(["meters", "create", "storage_gb", "--aggregation", "latest"]) == 0
    sent = results(
        api,
        {"metric": "storage_gb", "quantity": 40, "timestamp": "2026-11-25T11:00:00Z"},
        {"metric": "storage_gb", "quantity": 12, "timestamp": "2026-11-25T11:30:00Z"},
        {"metric": "storage_gb", "quantity": 30, "timestamp": "2026-11-25T09:00:00Z"},  # late, older
        {"metric": "storage_gb", "quantity": 55, "timestamp": "2026-11-24T23:00:00Z"},  # yesterday's
    )
    assert [r["status"] for r in sent] == ["recorded"] * 4
    older = results(api, {"metric": "storage_gb", "quantity": 99, "timestamp": "2026-11-25T10:00:00Z"})
    assert older[0]["status"] == "recorded"
    assert month(api, "storage_gb") == (Decimal(12), 5)
    days = counters(api.dynamodb, api.usage_table)
    assert days[(f"DEV#{ALICE}", "D#2026-11-24#storage_gb")] == (Decimal(55), 1)
    assert days[(f"DEV#{ALICE}", "D#2026-11-25#storage_gb")] == (Decimal(12), 4)
    usage = api.current().json()["metrics"]["storage_gb"]
    assert (usage["consumed"], usage["aggregation"], usage["events"]) == (12, "latest", 5)
    newer = results(api, {"metric": "storage_gb", "quantity": 13, "timestamp": "2026-11-25T11:59:00Z"})
    assert newer[0]["status"] == "recorded"
    assert month(api, "storage_gb") == (Decimal(13), 6)


def test_a_level_goes_up_and_down_within_its_ceiling_and_never_below_zero(api: Stack) -> None:
    """Grantex's agents: a level with a ceiling of 5 on the plan, changes in either direction."""
    assert cli.main(["meters", "create", "agents", "--aggregation", "level", "--unit", "agents"]) == 0
    assert cli.main(["plans", "put", "agents5", "--metric", "agents=5:hard"]) == 0
    assert cli.main(["plans", "set", ALICE, "agents5"]) == 0

    sent = results(
        api,
        {"metric": "agents", "quantity": 3},
        {"metric": "agents", "quantity": -1},
        {"metric": "agents", "quantity": 4},  # 2 + 4 = 6 > 5
        {"metric": "agents", "quantity": 3},
        {"metric": "agents", "quantity": -6},  # 5 - 6 < 0
        {"metric": "agents", "quantity": -2},
    )
    assert [(r["status"], (r.get("error") or {}).get("code")) for r in sent] == [
        ("recorded", None),
        ("recorded", None),
        ("limit_exceeded", "limit_exceeded"),
        ("recorded", None),
        ("rejected", "level_below_zero"),
        ("recorded", None),
    ]
    level = counters(api.dynamodb, api.usage_table)[(f"DEV#{ALICE}", "L#current#agents")]
    assert level == (Decimal(3), 4)
    single = api.track({"metric": "agents", "quantity": -4})
    assert (single.status, single.json()["error"]["code"]) == (422, "level_below_zero")
    over = api.track({"metric": "agents", "quantity": 3})
    assert (over.status, over.json()["error"]["code"]) == (429, "limit_exceeded")
    assert over.json()["error"]["message"] == "agents would pass its ceiling of 5"
    assert "retry-after" not in over.headers  # a ceiling does not reset with the period
    fits = api.track({"metric": "agents", "quantity": 2})
    assert fits.status == 200
    assert fits.json()["usage"] == {
        "metric": "agents",
        "consumed": 5,
        "limit": 5,
        "remaining": 0,
        "periodStart": "2026-11-01T00:00:00Z",
        "periodEnd": "2026-12-01T00:00:00Z",
    }
    usage = api.current().json()["metrics"]["agents"]
    assert (usage["consumed"], usage["limit"], usage["remaining"], usage["aggregation"], usage["events"]) == (
        5,
        5,
        0,
        "level",
        5,
    )
    access = api.call("GET", "/v1/entitlements/agents").json()
    assert (access["hasAccess"], access["consumed"]) == (False, 5)


def test_a_levels_history_gives_each_days_closing_level(
    api: Stack, freeze: Callable[[datetime], None]
) -> None:
    assert cli.main(["meters", "create", "seats", "--aggregation", "level"]) == 0
    results(api, {"metric": "seats", "quantity": 4, "timestamp": "2026-11-23T09:00:00Z"})
    results(api, {"metric": "seats", "quantity": -1, "timestamp": "2026-11-24T09:00:00Z"})
    results(api, {"metric": "seats", "quantity": 2}, {"metric": "seats", "quantity": -3})
    freeze(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    results(api, {"metric": "seats", "quantity": 5})
    entries = api.history(startDate="2026-11-22", endDate="2026-11-25", metric="seats").json()["entries"]
    assert [(e["date"], e["metrics"]["seats"]) for e in entries] == [
        ("2026-11-22", 0),
        ("2026-11-23", 4),
        ("2026-11-24", 3),
        ("2026-11-25", 2),
    ]
    assert api.current(metric="seats").json()["metrics"]["seats"]["consumed"] == 7


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
