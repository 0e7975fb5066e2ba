"""The partition simulator's arithmetic: what a write costs each item, and when an item throttles."""

from __future__ import annotations

import time
from typing import Any

from usage_meter_local.partitions import Ledger, priced_items


def update(table: str, sk: str) -> dict[str, Any]:
    return {"Update": {"TableName": table, "Key": {"pk": {"S": "DEV#d"}, "sk": {"S": sk}}}}


def test_a_transaction_costs_each_item_2_wcu_per_started_kb() -> None:
    big = {"pk": {"S": "IDEM#d#k"}, "metadata": {"S": "x" * 1500}}
    items = priced_items(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "idem", "Item": big}},
                update("usage", "M#2026-11#api_calls"),
                {
                    "ConditionCheck": {
                        "TableName": "accounts",
                        "Key": {"pk": {"S": "PLAN#pro"}, "sk": {"S": "PLAN"}},
                    }
                },
            ]
        },
    )
    assert items == [
        (("idem", "IDEM#d#k", ""), 4.0),
        (("usage", "DEV#d", "M#2026-11#api_calls"), 2.0),
        (("accounts", "PLAN#pro", "PLAN"), 2.0),
    ]
    assert priced_items("GetItem", {"TableName": "usage"}) == []


def test_an_item_past_its_ceiling_in_a_rolling_second_is_refused_and_takes_nothing() -> None:
    ledger = Ledger(ceiling=10, window_s=0.2)
    hot = ("usage", "DEV#d", "M#2026-11#api_calls")
    cool = ("usage", "DEV#d", "M#2026-11#tokens")
    assert [ledger.admit("TransactWriteItems", [(hot, 2.0), (cool, 2.0)]) for _ in range(5)] == [[]] * 5
    fresh = ("usage", "DEV#d", "D#2026-11-25#api_calls")
    assert ledger.admit("TransactWriteItems", [(fresh, 2.0), (hot, 2.0)]) == [1]  # 12 > 10 on hot only
    assert ledger.admit("TransactWriteItems", [(fresh, 10.0)]) == []  # the refusal took nothing of fresh
    assert ledger.stats() == {"admitted:TransactWriteItems": 6, "throttled:TransactWriteItems": 1, "wcu": 30}
    time.sleep(0.25)  # the second rolls on
    assert ledger.admit("TransactWriteItems", [(hot, 2.0)]) == []
    assert ledger.hottest(1) == [(hot, 10.0)]
    assert ledger.heaviest(1) == [(hot, 12.0)]
