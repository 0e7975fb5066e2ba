"""Latency of an alert: from the write that crosses a threshold to the webhook received.

The local pipeline of `make dev`: DynamoDB Local's stream read by the alerts function (its
own process, as a Lambda container), the webhook queue (a folder) drained by the webhooks
function, a receiver on 127.0.0.1 that verifies every signature. `--clients` threads
(default 16) track events of 5 for `--developers` developers (default 20; hard limit 100,
alerts at 80, 90, 100 %) through a pool of handler processes, until every developer is past
its limit (`--interval S`: each client waits S seconds between requests, to measure the
pipeline on an idle machine rather than behind a saturated one). Latency: the receiver's clock minus the crossing counter's `updatedAt` (the
`crossedAt` of the event), so it includes the stream, the alerts function, the queue, the
delivery and the signature check. Also printed: stream batches (alerts invocations) and
queue batches (webhooks invocations) per 1,000 tracked events.

    .venv/bin/python bench/alert_latency.py [--developers 20] [--clients 16] [--interval 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from usage_meter.domain import accounts, webhooks
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.models.timestamps import parse_rfc3339
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db
from usage_meter_admin.listener import Receiver
from usage_meter_local.alerting import AlertPipeline
from usage_meter_local.containers import ContainerPool
from usage_meter_local.dynamodb_local import LOCAL_AWS_ENVIRONMENT, DynamoDBLocal
from usage_meter_local.events import http_event
from usage_meter_local.outbox import environment as outbox_environment
from usage_meter_local.template import create_tables, function_environment, table_logical_ids

sys.path.insert(0, str(Path(__file__).parent))
from report import markdown_table

TRACK = "/v1/usage/events"
LIMIT, STEP = 100, 5


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--developers", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds each client waits between requests"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    engine = DynamoDBLocal(startup_timeout=120).start()
    tables = {logical_id: f"{logical_id}-bench" for logical_id in table_logical_ids()}
    create_tables(engine.client(), tables)
    env = {
        **function_environment("AlertsFunction", tables),
        **outbox_environment(folder / "outbox"),
        **LOCAL_AWS_ENVIRONMENT,
        "DYNAMODB_ENDPOINT_URL": engine.endpoint_url,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    os.environ.update(env)
    store_db.reset()
    account_store.put_plan(
        Plan(name="bench-alerts", metrics={"api_calls": MetricLimit(limit=LIMIT, enforcement="hard")})  # type: ignore[arg-type]
    )
    developers = [f"dev_{i:03d}" for i in range(args.developers)]
    for developer in developers:
        accounts.create_developer(developer, "bench-alerts", developer)
    service_key = accounts.create_key(developers[0], "service").key
    pool = ContainerPool(args.clients, env)
    pool.warm()
    receiver = Receiver([]).start()
    received = receiver.received
    receiver.secrets.append(webhooks.add(receiver.url).secret)
    pipeline = AlertPipeline(env, folder).start()
    invocations_before = _invocations(folder)
    work = [d for d in developers for _ in range(LIMIT // STEP + 1)]
    random.shuffle(work)
    tracked = Counter[int]()

    def client(index: int) -> None:
        for developer in work[index :: args.clients]:
            body = {
                "metric": "api_calls",
                "quantity": STEP,
                "developerId": developer,
                "idempotencyKey": uuid.uuid4().hex,
            }
            event = http_event(
                "POST",
                TRACK,
                body=json.dumps(body),
                headers={"authorization": f"Bearer {service_key}", "content-type": "application/json"},
                route_key=f"POST {TRACK}",
            )
            tracked[pool.send("POST", TRACK, event).status] += 1
            time.sleep(args.interval)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = args.developers * 4
    while len(received) < expected and time.monotonic() - started < 300:
        time.sleep(0.1)
    time.sleep(1)
    wall = time.monotonic() - started
    events = [r for r in received if r.event is not None]
    crossings = [r for r in events if r.event and r.event["type"] == "usage.threshold.reached"]
    latencies = [
        (r.received_at - parse_rfc3339(r.event["data"]["crossedAt"]).timestamp()) * 1000
        for r in crossings
        if r.event
    ]
    per_threshold = Counter(
        (r.event["data"]["developerId"], r.event["data"]["threshold"]) for r in crossings if r.event
    )
    requests = sum(tracked.values())
    queue_batches = pipeline.worker.invocations
    pipeline.stop()
    receiver.stop()
    pool.close()
    engine.stop()
    print(
        markdown_table(
            [
                "developers",
                "clients",
                "interval s",
                "events tracked",
                "deliveries",
                "duplicates",
                "bad signatures",
                "p50 ms",
                "p99 ms",
                "max ms",
                "wall s",
            ],
            [
                [
                    str(args.developers),
                    str(args.clients),
                    f"{args.interval:g}",
                    str(requests),
                    str(len(events)),
                    str(sum(n - 1 for n in per_threshold.values())),
                    str(len(received) - len(events)),
                    f"{statistics.median(latencies):.0f}",
                    f"{percentile(latencies, 0.99):.0f}",
                    f"{max(latencies):.0f}",
                    f"{wall:.1f}",
                ]
            ],
        )
    )
    stream_batches = _invocations(folder) - invocations_before
    print(
        f"\nper 1,000 tracked events: {1000 * stream_batches / requests:.0f} alerts invocations (stream batches), "
        f"{1000 * queue_batches / requests:.0f} webhooks invocations (queue batches), "
        f"{1000 * len(events) / requests:.0f} queue messages; tracked answers {dict(tracked)}"
    )
    ok = (
        len(crossings) == args.developers * 3
        and len(per_threshold) == len(crossings)
        and len(received) == len(events)
    )
    return 0 if ok else 1


def _invocations(folder: Path) -> int:
    """Stream batches handed to the alerts function so far (the consumer counts them in a file)."""
    path = folder / "usage-stream.invocations"
    return int(path.read_text()) if path.is_file() else 0


if __name__ == "__main__":
    sys.exit(main())
