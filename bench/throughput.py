"""Events per second through the track handler on DynamoDB Local, with concurrent clients.

16 client threads (`--clients`) share a pool of as many worker processes, each like a warm
Lambda container: Powertools' resolver serves one request at a time per process, so
concurrency comes from processes (as in usage_meter_local.containers). A worker does what
the local gateway does for `POST /v1/usage/events`: it runs the route's Lambda authorizer
on the request's `Authorization: Bearer <key>` header (a real service key, created with
accounts.create_key; the authorizer caches a key lookup for up to 60 s per container), then
the track handler, against one DynamoDB Local (in memory, tables from template.yaml).

Each client acts for its own developer (plan pro), so the clients do not share counters.
Phases: a warm-up (3 requests per client, not measured), then `--singles` single keyed events
(default 3,000), then `--batches` batches of 100 keyed events (default 100). A phase stops
early after `--seconds` (default 60). Latency is measured in the client thread around one
request, so it includes handing the event to a worker and back.

    .venv/bin/python bench/throughput.py [--clients 16] [--singles 3000] [--batches 100]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from usage_meter.domain import accounts
from usage_meter.store import dynamodb as store_db
from usage_meter_local.dynamodb_local import DynamoDBLocal
from usage_meter_local.events import http_event
from usage_meter_local.invoke import LocalApi
from usage_meter_local.template import (
    authorizer_function,
    create_tables,
    function_environment,
    routes,
    table_logical_ids,
)

from report import markdown_table

TRACK_PATH = "/v1/usage/events"
BATCH_SIZE = 100
WARMUP_PER_CLIENT = 3

# ---- the workers (one per process, like Lambda containers) -------------------------------------

_api: LocalApi | None = None


def _start_worker(environment: dict[str, str]) -> None:
    """Load the handlers once; stdout goes nowhere (the handlers' metrics are printed as EMF)."""
    global _api
    os.environ.update(environment)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    store_db.reset()
    _api = LocalApi()
    route = _api.route("POST", TRACK_PATH)
    assert route is not None
    _api.handler(route)


def _serve(event: dict[str, Any]) -> tuple[int, int, str]:
    """Authorize and invoke, as API Gateway would: (status, events recorded, body if not 200)."""
    assert _api is not None, "worker not started"
    route = _api.route("POST", TRACK_PATH)
    assert route is not None
    answer = _api.send(route, event)
    if answer.status != 200:
        return answer.status, 0, answer.body[:300]
    recorded = sum(1 for r in json.loads(answer.body)["results"] if r["status"] == "recorded")
    return answer.status, recorded, ""


# ---- the clients -----------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    events_per_request: int
    latencies: list[float] = field(default_factory=list)
    recorded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)


def body(developer_id: str, events: int) -> dict[str, Any]:
    def event() -> dict[str, Any]:
        return {
            "developerId": developer_id,
            "metric": "api_calls",
            "quantity": 1,
            "idempotencyKey": f"tp-{uuid.uuid4()}",
        }

    return event() if events == 1 else {"events": [event() for _ in range(events)]}


def run_phase(
    pool: ProcessPoolExecutor,
    key: str,
    developers: list[str],
    phase: Phase,
    requests: int,
    seconds: float,
) -> Phase:
    """`len(developers)` client threads send `requests` requests in all, until done or `seconds` pass."""
    lock = threading.Lock()
    left = [requests]
    deadline = time.monotonic() + seconds
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

    def take() -> bool:
        with lock:
            if left[0] <= 0 or time.monotonic() > deadline:
                return False
            left[0] -= 1
            return True

    def client(developer_id: str) -> None:
        while take():
            event = http_event(
                "POST",
                TRACK_PATH,
                body=json.dumps(body(developer_id, phase.events_per_request)),
                headers=headers,
                route_key=f"POST {TRACK_PATH}",
            )
            started = time.perf_counter()
            status, recorded, text = pool.submit(_serve, event).result()
            elapsed = time.perf_counter() - started
            with lock:
                phase.latencies.append(elapsed)
                phase.recorded += recorded
                if status != 200 or recorded != phase.events_per_request:
                    phase.errors[f"{status} {text[:120]}"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(d,)) for d in developers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.monotonic() - started
    return phase


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def render(phases: list[Phase]) -> str:
    header = [
        "phase",
        "requests",
        "events",
        "seconds",
        "events/s",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]
    rows: list[list[str]] = []
    for p in phases:
        rows.append(
            [
                p.name,
                str(p.requests),
                str(p.recorded),
                f"{p.seconds:.1f}",
                f"{p.recorded / p.seconds:.0f}" if p.seconds else "-",
                f"{p.requests / p.seconds:.1f}" if p.seconds else "-",
                f"{statistics.median(p.latencies) * 1000:.0f}" if p.latencies else "-",
                f"{percentile(p.latencies, 0.99) * 1000:.0f}",
                str(sum(p.errors.values())),
            ]
        )
    return markdown_table(header, rows)


# ---- setup -------------------------------------------------------------------------------------------


def environment(endpoint_url: str, names: dict[str, str]) -> dict[str, str]:
    """The track function's and the authorizer's variables from template.yaml, for DynamoDB Local."""
    track = next(r for r in routes() if r.method == "POST" and r.path == TRACK_PATH)
    env: dict[str, str] = {}
    if track.authorizer:
        env.update(function_environment(authorizer_function(track.authorizer), names))
    env.update(function_environment(track.function, names))
    env.update(
        {
            "DYNAMODB_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--clients", type=int, default=16, help="client threads = worker processes (default 16)"
    )
    parser.add_argument("--singles", type=int, default=3000, help="single-event requests (default 3000)")
    parser.add_argument("--batches", type=int, default=100, help="100-event batch requests (default 100)")
    parser.add_argument("--seconds", type=float, default=60, help="time limit of each phase (default 60)")
    args = parser.parse_args(argv)

    suffix = uuid.uuid4().hex[:8]
    names = {logical_id: f"tp-{suffix}-{logical_id}" for logical_id in table_logical_ids()}
    developers = [f"dev_tp{i:02d}" for i in range(args.clients)]
    phases: list[Phase] = []
    with DynamoDBLocal() as engine:
        env = environment(engine.endpoint_url, names)
        os.environ.update(env)
        store_db.reset()
        create_tables(engine.client(), names)
        accounts.seed_default_plans()
        for developer_id in developers:
            accounts.create_developer(developer_id, "pro", developer_id)
        key = accounts.create_key(developers[0], "service").key
        load = os.getloadavg()[0]
        started = time.monotonic()
        pool = ProcessPoolExecutor(
            max_workers=args.clients,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(env,),
        )
        try:
            # every client blocks on its request, so the warm-up reaches every worker
            warm_phase = run_phase(
                pool, key, developers, Phase("warm-up", 1), WARMUP_PER_CLIENT * args.clients, args.seconds
            )
            startup = time.monotonic() - started
            phases.append(
                run_phase(pool, key, developers, Phase("single events", 1), args.singles, args.seconds)
            )
            phases.append(
                run_phase(
                    pool, key, developers, Phase("100-event batches", BATCH_SIZE), args.batches, args.seconds
                )
            )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        store_db.reset()

    print(
        f"track handler (authorizer + handler) on DynamoDB Local: {args.clients} clients, "
        f"{args.clients} worker processes; {os.cpu_count()} CPUs, load average {load:.1f} before the run; "
        f"start-up and warm-up {startup:.1f} s"
    )
    print(render(phases))
    failures = [p for p in (warm_phase, *phases) if p.errors]
    for phase in failures:
        print(f"{phase.name}: unexpected answers {dict(phase.errors.most_common(3))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
