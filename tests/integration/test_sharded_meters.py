"""Sharded meters: a sum or count meter's day and month counters spread over N items, each event
adding to the shard its idempotency key picks; every read adds the shards up.

What lands: several shard items, each event once; what is read: the totals, in the usage
block, GET /v1/usage, history (day and month), entitlements and the rollup's summaries. What
is refused: shards on a meter whose figure is not a sum, with dimensions, or under a hard limit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter_admin import cli

from helpers import DEV_A, SERVICE, counters, table_items
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
    assert resent.json()["duplicates"] == 30  # the same keys: the same shards, counted once

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
        pytest.param(
            ["meters", "create", "calls", "--dimensions", "endpoint", "--shards", "2"], id="dimensions"
        ),
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
