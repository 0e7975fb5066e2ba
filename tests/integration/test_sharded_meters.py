"""Sharded meters: a sum or count meter's day and month counters spread over N items, each
transaction adding to the shard its first event's key picks (kept on every record it writes);
every read adds the shards up. Without a stated rate, the minute counter spreads the same way.

What lands: several shard items, each event once, a batch on one shard of each counter; what
is read: the totals, in the usage block, GET /v1/usage, history (day and month), entitlements,
the rate report and the rollup's summaries; corrections move the shard the record names. What
is refused: shards on a meter whose figure is not a sum, or under a hard limit. A sharded meter
with dimensions: its groups add up to the sharded total, through corrections too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter_admin import cli

from helpers import DEV_A, SERVICE, counters, minute_counters, table_items
from integration.conftest import Run, Stack, refused

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    assert cli.main(["plans", "put", "flat", "--metric", "bytes=1000000:soft"]) == 0
    assert cli.main(["plans", "set", "dev_alice", "flat"]) == 0
    assert cli.main(["meters", "create", "bytes", "--shards", "4"]) == 0
    return stack


def event(key: str, quantity: float = 1.5) -> dict[str, Any]:
    return {"metric": "bytes", "quantity": quantity, "idempotencyKey": key}


def shard_items(stack: Stack) -> dict[str, Decimal]:
    return {
        i["sk"]["S"]: Decimal(i["consumed"]["N"])
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith("M#2026-11#bytes")
    }


def test_events_spread_over_shards_and_every_read_adds_them_up(api: Stack) -> None:
    singles = [api.track(event(f"s{i}")) for i in range(6)]
    assert [a.json()["usage"]["consumed"] for a in singles] == [1.5 * (i + 1) for i in range(6)]
    batch = api.track({"events": [event(f"b{i}") for i in range(30)]})
    assert batch.json()["recorded"] == 30
    resent = api.track({"events": [event(f"b{i}") for i in range(30)]})
    assert resent.json()["duplicates"] == 30  # the same keys: counted once
    batch = [r for r in records(api) if r["idempotencyKey"]["S"].startswith("b")]
    assert len({r["counterShard"]["N"] for r in batch}) == 1  # one transaction: one shard of each counter
    assert len({r.get("minuteShard", {"N": "0"})["N"] for r in batch}) == 1

    stored = shard_items(api)
    assert len(stored) > 1
    assert set(stored) <= {"M#2026-11#bytes", *(f"M#2026-11#bytes#{n}" for n in (1, 2, 3))}
    assert sum(stored.values()) == Decimal("54")
    assert counters(api.dynamodb, api.usage_table)[("DEV#dev_alice", "M#2026-11#bytes")] == (Decimal(54), 36)

    usage = api.current(metric="bytes").json()["metrics"]["bytes"]
    assert (usage["consumed"], usage["events"], usage["remaining"]) == (54, 36, 1_000_000 - 54)
    days = api.history(metric="bytes", days="2").json()["entries"]
    assert [e["metrics"].get("bytes", 0) for e in days] == [0, 54]
    months = api.history(metric="bytes", granularity="month", days="30").json()["entries"]
    assert months[-1]["metrics"]["bytes"] == 54
    entitlement = api.call("GET", "/v1/entitlements/bytes", auth=DEV_A).json()
    assert (entitlement["consumed"], entitlement["hasAccess"]) == (54, True)
    listed = api.call("GET", "/v1/meters", auth=DEV_A).json()["meters"]
    assert [(m["name"], m["shards"]) for m in listed] == [("bytes", 4)]


def test_without_a_stated_rate_the_minute_counter_spreads_and_reads_add_it_up(api: Stack) -> None:
    assert (
        cli.main(["plans", "put", "flat", "--metric", "bytes=1000000:soft", "--requests-per-minute", "5000"])
        == 0
    )
    stated = [api.track(event(f"r{i}")) for i in range(3)]  # a stated rate: one item, read back
    assert stated[-1].headers["ratelimit-remaining"] == "4997"
    assert {sk for _, sk in minute_items(api)} == {"R#2026-11-25T12:00#*"}
    assert cli.main(["plans", "put", "flat", "--metric", "bytes=1000000:soft"]) == 0
    for n in range(8):  # eight transactions, each on the minute shard its first key picks
        assert api.track({"events": [event(f"m{n}-{i}") for i in range(5)]}).json()["recorded"] == 5
    spread = minute_items(api)
    assert len(spread) > 1
    assert sum(spread.values()) == 43
    assert minute_counters(api.dynamodb, api.usage_table) == {("DEV#dev_alice", "R#2026-11-25T12:00#*"): 43}
    glyph = api.current().json()["rateLimit"]
    assert glyph == {"requestsPerMinute": None, "currentMinuteUsage": 43}


def records(stack: Stack) -> list[dict[str, Any]]:
    return table_items(stack.dynamodb, stack.idempotency_table)


def minute_items(stack: Stack) -> dict[tuple[str, str], int]:
    return {
        (i["pk"]["S"], i["sk"]["S"]): int(i["events"]["N"])
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith("R#")
    }


def test_the_rollup_sums_the_shards(api: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert api.track({"events": [event(f"r{i}", 2) for i in range(20)]}).json()["recorded"] == 20
    capsys.readouterr()
    assert cli.main(["rollup", "run"]) == 0
    out = capsys.readouterr().out
    assert "drift 0" in out, out
    summaries = [
        i
        for i in table_items(api.dynamodb, api.usage_table)
        if i["sk"]["S"].startswith("S#") and i.get("metric", {}).get("S") == "bytes"
    ]
    assert [(Decimal(s["consumed"]["N"]), int(s["events"]["N"])) for s in summaries] == [(Decimal(40), 20)]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["meters", "create", "peak", "--aggregation", "max", "--shards", "2"], id="max"),
        pytest.param(["meters", "create", "api_calls", "--shards", "2"], id="a-default-plan-limits-it-hard"),
        pytest.param(["meters", "create", "calls", "--shards", "33"], id="too-many"),
        pytest.param(["plans", "put", "tight", "--metric", "bytes=10:hard"], id="hard-limit-on-sharded"),
    ],
)
def test_shards_where_a_figure_is_not_a_sum_or_a_limit_is_hard_are_refused(
    api: Stack, run: Run, argv: list[str]
) -> None:
    assert refused(api, run, *argv)


def test_corrections_move_the_shard_the_event_added_to(api: Stack) -> None:
    assert api.track({"events": [event(f"c{i}", 2) for i in range(8)]}).json()["recorded"] == 8
    cancel = {"developerId": "dev_alice", "idempotencyKey": "c3", "reason": "sent twice"}
    cancelled = api.call("POST", "/v1/usage/events/cancel", body=cancel, auth=SERVICE)
    assert (cancelled.status, cancelled.json()["status"]) == (200, "cancelled")
    amend = {"developerId": "dev_alice", "idempotencyKey": "c5", "quantity": 7, "reason": "measured again"}
    assert api.call("POST", "/v1/usage/events/amend", body=amend, auth=SERVICE).status == 200
    assert counters(api.dynamodb, api.usage_table)[("DEV#dev_alice", "M#2026-11#bytes")] == (Decimal(19), 7)
    assert all(consumed >= 0 for consumed in shard_items(api).values())
    assert api.current(metric="bytes").json()["metrics"]["bytes"]["consumed"] == 19


def test_a_record_written_before_shards_were_kept_is_corrected_on_its_keys_shard(api: Stack) -> None:
    assert api.track(event("old", 3)).status == 200  # a single event: its transaction's shard is its key's
    (record,) = records(api)
    api.dynamodb.update_item(
        TableName=api.idempotency_table,
        Key={"pk": record["pk"]},
        UpdateExpression="REMOVE counterShard",
    )
    cancel = {"developerId": "dev_alice", "idempotencyKey": "old", "reason": "test"}
    assert (
        api.call("POST", "/v1/usage/events/cancel", body=cancel, auth=SERVICE).json()["status"] == "cancelled"
    )
    assert set(shard_items(api).values()) == {Decimal(0)}


def test_a_sharded_meter_with_dimensions_groups_add_up_to_its_total(api: Stack) -> None:
    assert (
        cli.main(
            [
                "meters",
                "create",
                "calls",
                "--aggregation",
                "count",
                "--dimensions",
                "endpoint",
                "--shards",
                "4",
            ]
        )
        == 0
    )

    def call(key: str, endpoint: str) -> dict[str, Any]:
        return {"metric": "calls", "idempotencyKey": key, "metadata": {"endpoint": endpoint}}

    endpoints = ["/v1/a", "/v1/b", "/v1/a", "/v1/c"]
    sent = [call(f"g{n}-{i}", endpoints[(n + i) % 4]) for n in range(4) for i in range(6)]
    for n in range(4):  # four transactions, on the shards their first keys pick
        assert api.track({"events": sent[n * 6 : n * 6 + 6]}).json()["recorded"] == 6
    sent.append(call("single", "/v1/b"))
    assert api.track(sent[-1]).status == 200
    cancel = {"developerId": "dev_alice", "idempotencyKey": "g2-1", "reason": "test"}
    assert (
        api.call("POST", "/v1/usage/events/cancel", body=cancel, auth=SERVICE).json()["status"] == "cancelled"
    )
    counted = Counter(e["metadata"]["endpoint"] for e in sent if e["idempotencyKey"] != "g2-1")

    month_shards = [
        i for i in table_items(api.dynamodb, api.usage_table) if i["sk"]["S"].startswith("M#2026-11#calls")
    ]
    assert len(month_shards) > 1
    entry = api.current(metric="calls", groupBy="endpoint").json()["metrics"]["calls"]
    assert entry["consumed"] == entry["events"] == 24
    groups = {g["dimensions"]["endpoint"]: g["consumed"] for g in entry["groups"]}
    assert groups == counted
    day = api.history(metric="calls", groupBy="endpoint", days="1").json()["entries"][-1]
    assert sum(g["consumed"] for g in day["groups"]["calls"]) == day["metrics"]["calls"] == 24
