"""The event log and corrections through the API: listing, cancel and amend for every
aggregation, the refusals, and what landed in DynamoDB (counters, markers, groups, records)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import rollup
from usage_meter_admin import cli
from usage_meter_local.invoke import Answer

from helpers import DEV_A, DEV_B, SERVICE, counters, groups_in, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "dev_alice"
Freeze = Callable[[datetime], None]


@pytest.fixture
def api(stack: Stack, freeze: Freeze) -> Stack:
    freeze(NOW)
    for argv in (
        ["meters", "create", "peak", "--aggregation", "max"],
        ["meters", "create", "temp", "--aggregation", "latest"],
        ["meters", "create", "users", "--aggregation", "unique_count", "--unique-by", "user"],
        ["meters", "create", "seats", "--aggregation", "level"],
        ["meters", "create", "calls", "--aggregation", "count", "--dimensions", "endpoint"],
        ["plans", "put", "capped", "--metric", "api_calls=10:hard", "--metric", "seats=5:hard"],
        ["plans", "set", ALICE, "capped"],
    ):
        assert cli.main(argv) == 0, argv
    return stack


def track(api: Stack, *events: dict[str, Any]) -> None:
    answer = api.track({"events": list(events)})
    assert answer.status == 200, answer.body
    assert answer.json()["recorded"] == len(events), answer.body


def at(minutes: int) -> str:
    return (NOW - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cancel(
    api: Stack, key: str, *, developer: str = ALICE, auth: dict[str, Any] = SERVICE, **more: Any
) -> Answer:
    body = {"developerId": developer, "idempotencyKey": key, "reason": "reported by mistake", **more}
    return api.call("POST", "/v1/usage/events/cancel", body=body, auth=auth)


def amend(
    api: Stack, key: str, *, developer: str = ALICE, auth: dict[str, Any] = SERVICE, **change: Any
) -> Answer:
    body = {"developerId": developer, "idempotencyKey": key, "reason": "fixed", **change}
    return api.call("POST", "/v1/usage/events/amend", body=body, auth=auth)


def log(api: Stack, *, auth: dict[str, Any] = DEV_A, **query: str) -> Answer:
    return api.call("GET", "/v1/usage/events", query=query or None, auth=auth)


def figures(api: Stack, metric: str) -> tuple[tuple[Decimal, int], tuple[Decimal, int]]:
    """(day, month) counters of a metric on NOW's day."""
    found = counters(api.dynamodb, api.usage_table)
    return found[(f"DEV#{ALICE}", f"D#2026-11-25#{metric}")], found[(f"DEV#{ALICE}", f"M#2026-11#{metric}")]


def status_of(answer: Answer) -> tuple[int, str]:
    body = answer.json()
    return answer.status, body["status"] if "status" in body else body["error"]["code"]


def test_a_cancelled_sum_event_moves_its_counters_back_once(api: Stack) -> None:
    track(api, *({"metric": "api_calls", "quantity": q, "idempotencyKey": f"k{q}"} for q in (3, 5)))
    answer = cancel(api, "k3")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["status"], body["revision"]) == ("cancelled", 1)
    assert body["event"]["status"] == "cancelled"
    assert body["event"]["revisions"] == [
        {"revision": 1, "action": "cancel", "at": "2026-11-25T12:00:00.000Z", "reason": "reported by mistake"}
    ]
    assert figures(api, "api_calls") == ((Decimal(5), 1), (Decimal(5), 1))
    assert status_of(cancel(api, "k3")) == (200, "already_cancelled")
    assert figures(api, "api_calls") == ((Decimal(5), 1), (Decimal(5), 1))
    # a resend of the cancelled event is still a duplicate: its key stays taken
    again = api.track({"metric": "api_calls", "quantity": 3, "idempotencyKey": "k3"})
    assert again.json()["results"][0]["status"] == "duplicate"
    assert figures(api, "api_calls") == ((Decimal(5), 1), (Decimal(5), 1))


def test_a_cancellation_gives_room_back_and_an_amendment_past_the_limit_is_refused(api: Stack) -> None:
    track(api, *({"metric": "api_calls", "quantity": 5, "idempotencyKey": f"c{i}"} for i in range(2)))
    assert api.track({"metric": "api_calls", "quantity": 1}).status == 429
    refused = amend(api, "c0", quantity=6)
    assert status_of(refused) == (429, "limit_exceeded")
    assert figures(api, "api_calls")[1] == (Decimal(10), 2)
    assert status_of(amend(api, "c0", quantity=2)) == (200, "amended")
    assert figures(api, "api_calls") == ((Decimal(7), 2), (Decimal(7), 2))
    assert status_of(amend(api, "c0", quantity=2)) == (200, "unchanged")
    assert status_of(cancel(api, "c1")) == (200, "cancelled")
    assert api.track({"metric": "api_calls", "quantity": 8}).status == 200
    assert figures(api, "api_calls")[1] == (Decimal(10), 2)
    record = log(api, metric="api_calls", status="amended").json()["events"]
    assert [(e["idempotencyKey"], e["quantity"], e["revision"]) for e in record] == [("c0", 2, 1)]
    assert record[0]["revisions"][0]["quantity"] == 5  # the value before the amendment


def test_max_and_latest_are_recomputed_from_what_remains(api: Stack) -> None:
    track(
        api,
        *(
            {"metric": "peak", "quantity": q, "idempotencyKey": f"p{q}", "timestamp": at(q)}
            for q in (5, 9, 7)
        ),
        *(
            {"metric": "temp", "quantity": q, "idempotencyKey": f"t{q}", "timestamp": at(10 - q)}
            for q in (1, 2, 3)
        ),
    )
    assert figures(api, "peak") == ((Decimal(9), 3), (Decimal(9), 3))
    assert status_of(cancel(api, "p9")) == (200, "cancelled")
    assert figures(api, "peak") == ((Decimal(7), 2), (Decimal(7), 2))
    assert status_of(amend(api, "p7", quantity=3)) == (200, "amended")
    assert figures(api, "peak") == ((Decimal(5), 2), (Decimal(5), 2))
    assert status_of(amend(api, "p5", quantity=11)) == (200, "amended")
    assert figures(api, "peak") == ((Decimal(11), 2), (Decimal(11), 2))
    # the latest event is t3 (stamped last): cancelled, t2's value is the latest again
    assert figures(api, "temp")[0] == (Decimal(3), 3)
    assert status_of(cancel(api, "t3")) == (200, "cancelled")
    assert figures(api, "temp") == ((Decimal(2), 2), (Decimal(2), 2))
    assert status_of(amend(api, "t2", quantity=20)) == (200, "amended")
    assert figures(api, "temp") == ((Decimal(20), 2), (Decimal(20), 2))
    for key in ("t1", "t2"):
        assert status_of(cancel(api, key)) == (200, "cancelled")
    assert figures(api, "temp") == ((Decimal(0), 0), (Decimal(0), 0))
    current = api.current(metric="temp").json()["metrics"]["temp"]
    assert (current["consumed"], current["events"]) == (0, 0)


def markers(api: Stack) -> set[str]:
    return {
        i["sk"]["S"].split("#")[1]
        for i in table_items(api.dynamodb, api.usage_table)
        if i["sk"]["S"].startswith("U#")
    }


def test_a_distinct_count_loses_a_value_only_when_no_event_has_it(api: Stack) -> None:
    values = {"u1": "ann", "u2": "ann", "u3": "bob"}
    track(
        api, *({"metric": "users", "metadata": {"user": v}, "idempotencyKey": k} for k, v in values.items())
    )
    assert figures(api, "users") == ((Decimal(2), 3), (Decimal(2), 3))
    assert status_of(cancel(api, "u1")) == (200, "cancelled")
    assert figures(api, "users") == ((Decimal(2), 2), (Decimal(2), 2))
    assert status_of(cancel(api, "u2")) == (200, "cancelled")
    assert figures(api, "users") == ((Decimal(1), 1), (Decimal(1), 1))
    assert markers(api) == {"D", "M"}  # bob's day and month markers only
    assert len([i for i in table_items(api.dynamodb, api.usage_table) if i["sk"]["S"].startswith("U#")]) == 2
    assert status_of(amend(api, "u3", metadata={"user": "cyd"})) == (200, "amended")
    assert figures(api, "users") == ((Decimal(1), 1), (Decimal(1), 1))
    refused = amend(api, "u3", metadata={"other": 1})
    assert status_of(refused) == (422, "unique_by_missing")


def test_a_level_is_never_taken_below_zero_nor_past_its_ceiling(api: Stack) -> None:
    track(
        api,
        {"metric": "seats", "quantity": 3, "idempotencyKey": "s1"},
        {"metric": "seats", "quantity": -2, "idempotencyKey": "s2"},
    )
    level = counters(api.dynamodb, api.usage_table)[(f"DEV#{ALICE}", "L#current#seats")]
    assert level == (Decimal(1), 2)
    assert status_of(cancel(api, "s1")) == (422, "level_below_zero")
    assert status_of(amend(api, "s1", quantity=8)) == (429, "limit_exceeded")  # 8 - 2 > 5
    assert status_of(cancel(api, "s2")) == (200, "cancelled")
    assert counters(api.dynamodb, api.usage_table)[(f"DEV#{ALICE}", "L#current#seats")] == (Decimal(3), 1)
    assert figures(api, "seats") == ((Decimal(3), 1), (Decimal(3), 1))


def test_dimension_groups_follow_a_cancel_and_an_amendment(api: Stack) -> None:
    track(
        api,
        *(
            {"metric": "calls", "metadata": {"endpoint": e}, "idempotencyKey": f"d{i}"}
            for i, e in enumerate("aab")
        ),
    )
    assert status_of(cancel(api, "d0")) == (200, "cancelled")
    assert status_of(amend(api, "d2", metadata={"endpoint": "c"})) == (200, "amended")
    groups = groups_in(table_items(api.dynamodb, api.usage_table))
    found = {values[0][1]: consumed for (_, _, _, values), consumed in groups.items()}
    assert found == {"a": Decimal(1), "b": Decimal(0), "c": Decimal(1)}
    grouped = api.current(metric="calls", groupBy="endpoint").json()["metrics"]["calls"]["groups"]
    assert {g["dimensions"]["endpoint"]: g["consumed"] for g in grouped if g["events"]} == {"a": 1, "c": 1}


def test_refusals_change_nothing(api: Stack) -> None:
    track(api, {"metric": "api_calls", "quantity": 1, "idempotencyKey": "r1"})
    before = table_items(api.dynamodb, api.usage_table), table_items(api.dynamodb, api.idempotency_table)
    assert status_of(cancel(api, "r1", auth=DEV_A)) == (403, "forbidden")
    assert status_of(amend(api, "r1", auth=DEV_A, quantity=2)) == (403, "forbidden")
    assert status_of(cancel(api, "nope")) == (404, "event_not_found")
    other = cancel(api, "r1", developer="dev_bob")  # the key exists, for another developer
    assert status_of(other) == (404, "event_not_found")
    assert "dev_alice" not in other.body
    assert status_of(cancel(api, "r1", reason="x" * 501)) == (422, "validation_error")
    assert status_of(amend(api, "r1", quantity=-1)) == (422, "quantity_not_positive")
    assert status_of(log(api, auth=DEV_A, developerId="dev_bob")) == (403, "forbidden")
    assert log(api, auth=DEV_B).json()["events"] == []
    assert status_of(log(api, cursor="not-a-cursor")) == (400, "invalid_cursor")
    assert status_of(log(api, limit="101")) == (422, "validation_error")
    assert (
        table_items(api.dynamodb, api.usage_table),
        table_items(api.dynamodb, api.idempotency_table),
    ) == before
    assert status_of(cancel(api, "r1")) == (200, "cancelled")
    assert status_of(amend(api, "r1", quantity=2)) == (409, "event_cancelled")


def test_the_log_pages_newest_first_and_a_cursor_serves_only_its_listing(api: Stack) -> None:
    sent = [
        {
            "metric": "api_calls" if i % 3 else "tokens",
            "quantity": 1,
            "idempotencyKey": f"e{i:02}",
            "timestamp": at(i),
        }
        for i in range(10)
    ]
    track(api, *sent)
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = log(api, limit="4", **({"cursor": cursor} if cursor else {})).json()
        seen += [e["idempotencyKey"] for e in page["events"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"e{i:02}" for i in range(10)]  # newest first: e00 is stamped last
    first = log(api, limit="2", metric="tokens").json()
    assert [e["idempotencyKey"] for e in first["events"]] == ["e00", "e03"]
    assert status_of(log(api, cursor=first["nextCursor"])) == (400, "invalid_cursor")  # other filters
    bob = log(api, auth=DEV_B, metric="tokens", limit="2", cursor=first["nextCursor"])
    assert status_of(bob) == (400, "invalid_cursor")  # another developer
    rest = log(api, metric="tokens", limit="2", cursor=first["nextCursor"]).json()
    assert [e["idempotencyKey"] for e in rest["events"]] == ["e06", "e09"]
    window = log(api, **{"from": at(4), "to": at(2)}).json()
    assert [e["idempotencyKey"] for e in window["events"]] == ["e02", "e03", "e04"]
    # a year below 1000 and a bound without an offset are still bounds, compared as such
    ancient = log(api, **{"from": "0283-09-12T23:55:55Z", "to": "2000-01-01T00:00:00+00:00"})
    assert (ancient.status, ancient.json()["events"]) == (200, [])
    naive = log(api, **{"from": at(4).removesuffix("Z"), "to": at(2)}).json()
    assert [e["idempotencyKey"] for e in naive["events"]] == ["e02", "e03", "e04"]
    assert status_of(log(api, **{"from": "2000-01-02T00:00:00", "to": "2000-01-01T00:00:00Z"})) == (
        422,
        "invalid_range",
    )


def test_a_correction_in_a_closed_month_marks_its_summary_adjusted(api: Stack, freeze: Freeze) -> None:
    track(api, *({"metric": "api_calls", "quantity": q, "idempotencyKey": f"n{q}"} for q in (2, 3)))
    freeze(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    rollup.run()
    assert status_of(cancel(api, "n3")) == (200, "cancelled")
    key = (f"DEV#{ALICE}", "S#2026-11#api_calls")
    summary = {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(api.dynamodb, api.usage_table)}[key]
    assert summary["adjusted"] == {"BOOL": True}
    report = rollup.run()
    assert report.drift == 0
    summary = {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(api.dynamodb, api.usage_table)}[key]
    assert (summary["consumed"]["N"], summary["events"]["N"], summary["adjusted"]) == (
        "2",
        "1",
        {"BOOL": True},
    )
