"""One hot developer and one meter under the partition simulator: sustained events/s, throttles,
exactness, and the model that carries the figures to DynamoDB's real ceiling.

Runs the real track handler in worker processes (like warm Lambda containers) against DynamoDB
Local, every worker's DynamoDB client going through one shared partition simulator
(usage_meter_local.partitions) that throttles any item past `--ceiling` WCU in a rolling
second, as a partition does at 1,000. Scenarios, each `--seconds` long, each on its own meter
(no hard limit), developer `dev_hot`:

- single events: `--clients` threads each send single keyed events, resending what comes back
  temporarily_unavailable (or 503) with the same key, as the SDK does;
- SDK batching: as many `UsageMeter(batching=True)` clients, each submitting events as fast as
  its queue takes them (back-pressure: it blocks while 1,000 are unsent);
- batching + shards: the same on a meter whose counters are spread over `--shards` shards.

Each scenario checks exactness: the meter's month counter (its shards summed) equals the events
answered recorded, and the idempotency table holds one record per event.

The model: per scenario the simulator reports the WCU the hottest item took per recorded event
(h). One item takes at most C WCU a second, so the partition-bound rate is C / h events/s. The
run shows whether the measured rate sits at that bound (the simulator binds: the model is
checked) or below it (this machine binds first); the design's figure is then 1,000 / h.
The plan's and the meter's checks are made on one of their 16 revision stamps, picked by the
developer, so they bind the developers of a plan (or a meter) together at 16 x 500 single
events/s, not one developer (whose own items bind it at 500).

    .venv/bin/python bench/hot_tenant.py [--ceiling 4] [--seconds 10] [--clients 4] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from usage_meter.domain import accounts, clock, meters, periods
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter.store import counters
from usage_meter.store import dynamodb as store_db
from usage_meter_client import BatchOptions, UsageMeter
from usage_meter_local.dynamodb_local import DynamoDBLocal
from usage_meter_local.invoke import LocalApi
from usage_meter_local.partitions import PARTITION_WCU_PER_SECOND, Ledger, Partitions, shared_ledger
from usage_meter_local.template import create_tables, function_environment, table_logical_ids

from report import markdown_table, number

TRACK_PATH = "/v1/usage/events"
DEVELOPER = "dev_hot"
SERVICE = {"developerId": "dev_provider", "role": "service"}

# ---- the workers -----------------------------------------------------------------------------

_api: LocalApi | None = None


def _start_worker(environment: dict[str, str], ledger: Ledger) -> None:
    global _api
    os.environ.update(environment)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the handlers' logs, for the life of the process
    store_db.reset()
    Partitions(ledger).install(store_db.client())
    _api = LocalApi(timeout_s=60)


def _serve(body: str) -> tuple[int, str]:
    assert _api is not None
    answer = _api.call("POST", TRACK_PATH, body=body, authorizer=SERVICE)
    return answer.status, answer.body


# ---- scenarios -------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    metric: str
    recorded: int = 0
    seconds: float = 0.0
    throttled: int = 0
    hottest_wcu: float = 0.0
    hottest_item: str = ""
    counted: tuple[Decimal, int] = (Decimal(0), 0)
    records: int = 0
    resends: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rate(self) -> float:
        return self.recorded / self.seconds if self.seconds else 0.0

    @property
    def per_event(self) -> float:
        """WCU the hottest item took per recorded event (h)."""
        return self.hottest_wcu / self.recorded if self.recorded else 0.0

    @property
    def exact(self) -> bool:
        return self.counted == (Decimal(self.recorded), self.recorded) and self.records == self.recorded


def single_client(pool: ProcessPoolExecutor, result: Result, until: float) -> None:
    while time.monotonic() < until:
        body = json.dumps(
            {
                "developerId": DEVELOPER,
                "metric": result.metric,
                "quantity": 1,
                "idempotencyKey": f"s-{uuid.uuid4()}",
            }
        )
        for attempt in range(30):
            status, answer = pool.submit(_serve, body).result()
            if status == 200 and json.loads(answer)["results"][0]["status"] == "recorded":
                with result.lock:
                    result.recorded += 1
                break
            with result.lock:
                result.resends += 1
            time.sleep(min(1.0, 0.02 * 2**attempt))


def batching_client(pool: ProcessPoolExecutor, result: Result, until: float) -> None:
    def forward(request: httpx.Request) -> httpx.Response:
        status, answer = pool.submit(_serve, request.content.decode()).result()
        return httpx.Response(status, content=answer.encode(), headers={"content-type": "application/json"})

    futures = []
    with UsageMeter(
        api_key="um_live_" + "b" * 32,
        base_url="http://bench.test",
        transport=httpx.MockTransport(forward),
        batching=BatchOptions(max_pending=1_000),
        backoff=0.05,
    ) as client:
        while time.monotonic() < until:
            futures.append(client.usage.submit(result.metric, 1, developer_id=DEVELOPER))
    statuses = [f.result().status for f in futures]
    with result.lock:
        result.recorded += statuses.count("recorded")


def run(
    pool: ProcessPoolExecutor,
    ledger: Ledger,
    name: str,
    metric: str,
    client: Callable[[ProcessPoolExecutor, Result, float], None],
    args: argparse.Namespace,
) -> Result:
    ledger.reset()
    result = Result(name, metric)
    started = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(pool, result, started + args.seconds))
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    stats = ledger.stats()
    result.throttled = stats.get("throttled:TransactWriteItems", 0)
    (item, wcu), *_ = ledger.heaviest()
    result.hottest_item, result.hottest_wcu = f"{item[1]} {item[2]}", wcu
    result.counted = month_total(metric)
    result.records = records_of(metric)
    return result


def month_total(metric: str) -> tuple[Decimal, int]:
    """The meter's month counter, its shards summed (read as the service reads it)."""
    month = periods.month_key(clock.now())
    found = [c for c in counters.month_counters(DEVELOPER, month) if c.metric == metric]
    return sum((c.consumed for c in found), Decimal(0)), sum(c.events for c in found)


def records_of(metric: str) -> int:
    client = store_db.client()
    table = store_db.settings().idempotency_table
    count, kwargs = (
        0,
        {
            "TableName": table,
            "FilterExpression": "metric = :m",
            "ExpressionAttributeValues": {":m": {"S": metric}},
            "Select": "COUNT",
        },
    )
    while True:
        page = client.scan(**kwargs)
        count += page["Count"]
        if "LastEvaluatedKey" not in page:
            return count
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# ---- stack -------------------------------------------------------------------------------------


@contextmanager
def stack(endpoint_url: str | None) -> Iterator[dict[str, str]]:
    """DynamoDB Local (or the endpoint), fresh tables, dev_hot on a plan without limits; the
    workers' environment."""
    with contextmanager(_engine)(endpoint_url) as url:
        tables = {
            logical_id: f"hot-{uuid.uuid4().hex[:8]}-{logical_id}" for logical_id in table_logical_ids()
        }
        environment = {
            **function_environment("TrackFunction", tables),
            "DYNAMODB_ENDPOINT_URL": url,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        os.environ.update(environment)
        store_db.reset()
        create_tables(store_db.client(), tables)
        yield environment


def _engine(endpoint_url: str | None) -> Iterator[str]:
    if endpoint_url:
        yield endpoint_url
        return
    engine = DynamoDBLocal(startup_timeout=120)
    engine.start()
    try:
        yield engine.endpoint_url
    finally:
        engine.stop()


def seed(shards: int) -> None:
    metrics = ["calls_single", "calls_batched", "calls_sharded"]
    account_store.put_plan(Plan(name="hot", metrics={m: MetricLimit(limit=None) for m in metrics}))
    accounts.create_developer(DEVELOPER, "hot", DEVELOPER)
    for metric in metrics[:2]:
        meters.create(meters.definition(name=metric, aggregation="count"))
    meters.create(meters.definition(name=metrics[2], aggregation="count", shards=shards))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--ceiling", type=float, default=4.0, help="WCU per item per second (DynamoDB: 1,000)"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--endpoint-url", help="a running DynamoDB Local (default: start one)")
    args = parser.parse_args()
    with stack(args.endpoint_url) as environment, shared_ledger(args.ceiling) as ledger:
        seed(args.shards)
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(args.workers, context, _start_worker, (environment, ledger)) as pool:
            results = [
                run(pool, ledger, "single events", "calls_single", single_client, args),
                run(pool, ledger, "SDK batching", "calls_batched", batching_client, args),
                run(
                    pool,
                    ledger,
                    f"SDK batching + {args.shards} shards",
                    "calls_sharded",
                    batching_client,
                    args,
                ),
            ]
    print_table(results, args)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    ceiling = args.ceiling
    print(
        f"One developer, one meter without a hard limit, {args.seconds:.0f} s per scenario, {args.clients} "
        f"clients, {args.workers} workers, partition simulator at {ceiling:.0f} WCU per item per second"
    )
    rows = [
        [
            r.name,
            number(r.recorded),
            f"{r.rate:.0f}",
            number(r.throttled),
            number(r.resends) if r.name == "single events" else "-",
            "yes" if r.exact else f"NO {r.counted} vs {r.recorded}",
            r.hottest_item,
            f"{r.per_event:.3f}",
            f"{ceiling / r.per_event:.0f}" if r.per_event else "-",
            f"{PARTITION_WCU_PER_SECOND / r.per_event:,.0f}" if r.per_event else "-",
        ]
        for r in results
    ]
    headers = [
        "scenario",
        "events",
        "events/s",
        "throttled tx",
        "resends",
        "exact",
        "hottest item",
        "h: its WCU/event",
        f"bound at {ceiling:.0f} (C/h)",
        "bound at 1,000 WCU/s",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
