"""A partition simulator: DynamoDB's per-partition write ceiling, applied to DynamoDB Local.

DynamoDB gives a partition 1,000 WCU a second, and every write of one item lands on one
partition: whatever the table's capacity, one item takes at most 1,000 WCU in any second.
DynamoDB Local never throttles, so on its own it cannot show what a hot counter does.

`Partitions` prices the items of each write request as DynamoDB does (a transactional item 2
WCU per started KB, a ConditionCheck too; a plain write 1 per KB), keeps what each item took
over a rolling second, and answers a request that would take an item past the ceiling as
DynamoDB does, without sending it (nothing applied, nothing consumed): 400
ProvisionedThroughputExceededException for a single write, 400 TransactionCanceledException
with a `ThrottlingError` reason at the hot item's position for a transaction. botocore's
retries, the service's own retries and the SDK's backoff then meet real throttling shapes.

The state is shared by every process that installs a hook (the engine tests' containers are
forked processes), through a `multiprocessing` manager started before they fork: one small
IPC call per write request. `ceiling` is a parameter: a machine that cannot write 1,000 WCU a
second to one item shows the same saturation at a lower ceiling (see bench/hot_tenant.py).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.managers import BaseManager
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from usage_meter_local.faults import error_response

PARTITION_WCU_PER_SECOND = 1_000
WINDOW_S = 1.0
KB = 1024

ItemId = tuple[str, str, str]
"""(table, pk, sk) of one item ("" for a table without a sort key)."""


def attribute_size(value: dict[str, Any]) -> int:
    """An attribute value's size by DynamoDB's rules (close enough for pricing whole KBs)."""
    ((kind, inner),) = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        return math.ceil(len(inner.lstrip("-").replace(".", "")) / 2) + 1
    if kind in ("M",):
        return 3 + sum(len(k.encode()) + attribute_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    return 1  # BOOL, NULL


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def _item_id(table: str, key: dict[str, Any]) -> ItemId:
    sk = key.get("sk", {}).get("S", "")
    return (table, str(key.get("pk", {}).get("S", "")), str(sk))


def _transactional(entry: dict[str, Any]) -> tuple[ItemId, float]:
    ((kind, body),) = entry.items()
    if kind == "Put":
        item = body["Item"]
        return _item_id(body["TableName"], item), 2.0 * max(1, math.ceil(item_size(item) / KB))
    # Update, Delete, ConditionCheck: the stored item's size is unknown here; counters,
    # profiles and plans are under 1 KB
    return _item_id(body["TableName"], body["Key"]), 2.0


def priced_items(operation: str, body: dict[str, Any]) -> list[tuple[ItemId, float]]:
    """The items a write request writes and the WCU each costs (empty for a read)."""
    if operation == "TransactWriteItems":
        return [_transactional(entry) for entry in body.get("TransactItems", [])]
    if operation == "PutItem":
        return [
            (_item_id(body["TableName"], body["Item"]), max(1.0, math.ceil(item_size(body["Item"]) / KB)))
        ]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(_item_id(body["TableName"], body["Key"]), 1.0)]
    if operation == "BatchWriteItem":
        found: list[tuple[ItemId, float]] = []
        for table, requests in body.get("RequestItems", {}).items():
            for request in requests:
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    found.append((_item_id(table, item), max(1.0, math.ceil(item_size(item) / KB))))
                else:
                    found.append((_item_id(table, request["DeleteRequest"]["Key"]), 1.0))
        return found
    return []


class Ledger:
    """What each item wrote in the last second; shared by every process through a manager."""

    def __init__(self, ceiling: float = PARTITION_WCU_PER_SECOND, window_s: float = WINDOW_S) -> None:
        self.ceiling = ceiling
        self.window_s = window_s
        self._writes: dict[ItemId, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._peak: dict[ItemId, float] = {}
        self._total: dict[ItemId, float] = {}

    def _load(self, item: ItemId, now: float) -> float:
        writes = self._writes.get(item)
        if not writes:
            return 0.0
        while writes and writes[0][0] <= now - self.window_s:
            writes.popleft()
        if not writes:
            del self._writes[item]
        return sum(w for _, w in writes)

    def admit(self, operation: str, items: list[tuple[ItemId, float]]) -> list[int]:
        """The positions of the items the request would take past the ceiling (none: admitted,
        and its WCU are taken)."""
        now = time.monotonic()
        with self._lock:
            wanted: dict[ItemId, float] = {}
            for item, wcu in items:
                wanted[item] = wanted.get(item, 0.0) + wcu
            loads = {item: self._load(item, now) for item in wanted}
            hot = [i for i, (item, _) in enumerate(items) if loads[item] + wanted[item] > self.ceiling]
            if hot:
                self._stats[f"throttled:{operation}"] += 1
                return hot
            for item, wcu in wanted.items():
                self._writes.setdefault(item, deque()).append((now, wcu))
                self._peak[item] = max(self._peak.get(item, 0.0), loads[item] + wcu)
                self._total[item] = self._total.get(item, 0.0) + wcu
            self._stats[f"admitted:{operation}"] += 1
            self._stats["wcu"] += int(sum(wanted.values()))
            return []

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def hottest(self, count: int = 5) -> list[tuple[ItemId, float]]:
        """The items with the highest WCU taken in any rolling second, highest first."""
        with self._lock:
            return sorted(self._peak.items(), key=lambda p: -p[1])[:count]

    def heaviest(self, count: int = 5) -> list[tuple[ItemId, float]]:
        """The items that took the most WCU in all, most first."""
        with self._lock:
            return sorted(self._total.items(), key=lambda p: -p[1])[:count]

    def reset(self) -> None:
        with self._lock:
            self._writes.clear()
            self._stats.clear()
            self._peak.clear()
            self._total.clear()


class _Manager(BaseManager):
    pass


_Manager.register("Ledger", Ledger)


@contextmanager
def shared_ledger(ceiling: float = PARTITION_WCU_PER_SECOND) -> Iterator[Ledger]:
    """A Ledger served by a manager process, usable from processes forked after this starts."""
    manager = _Manager()
    manager.start()
    try:
        yield manager.Ledger(ceiling)  # type: ignore[attr-defined]  # registered above
    finally:
        manager.shutdown()


def throttled(request: AWSPreparedRequest, operation: str, hot: list[int], items: int) -> AWSResponse:
    """DynamoDB's answer to a write that a hot partition refuses."""
    if operation != "TransactWriteItems":
        return error_response(request, 400, "ProvisionedThroughputExceededException")
    reasons = [
        {
            "Code": "ThrottlingError",
            "Message": "Throughput exceeds the current capacity of your table or index.",
        }
        if i in hot
        else {"Code": "None"}
        for i in range(items)
    ]
    return error_response(request, 400, "TransactionCanceledException", {"CancellationReasons": reasons})


class Partitions:
    """The botocore hook: install it on a DynamoDB client (`install(client)`)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", self._before_send)

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        body = request.body if isinstance(request.body, bytes | str) else b"{}"
        items = priced_items(operation, json.loads(body or b"{}"))
        if not items:
            return None
        hot = self.ledger.admit(operation, items)
        return throttled(request, operation, hot, len(items)) if hot else None
