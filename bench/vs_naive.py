"""This service next to the design a user builds by hand, on one DynamoDB Local, in one run.

The hand-built design ("naive"): a Lambda handler that records each event with two plain
`UpdateItem ... ADD #c :q` calls (#c = consumed) (the day and the month counter, as the service keeps
both), wrapped per event in Powertools' idempotency utility: `@idempotent_function` with a
`DynamoDBPersistenceLayer` on its own table (partition key `id`, as Powertools documents), the
key taken from `[developerId, idempotencyKey]`, and `config.register_lambda_context(context)`
so that an in-progress record expires with the invocation. A batch is a loop over its events.

1. Cost, without faults: DynamoDB calls, HTTP round trips and write units for a keyed single
   event, a keyed 100-event batch and a duplicate (a keyed single event sent again).
2. Faults: the same events through both designs while a botocore-level injector on each
   design's client fails ~20% of the HTTP attempts from one seeded schedule (attempt n gets
   the same fate in both runs): ThrottlingException (400), InternalServerError (500), or a
   ReadTimeoutError raised after the request really reached DynamoDB Local and was applied.
   Both designs' clients have the service's botocore settings (standard retry mode, 3
   attempts); botocore's retry waits are scaled by --sdk-backoff (0.1) for both, to keep the
   run near a minute and a half. The caller behaves the same for both: it resends with the same idempotency
   keys until every event is answered recorded or duplicate, after 5xx answers and per-event
   refusals; an "in progress" refusal (the naive design's IdempotencyAlreadyInProgressError,
   answered 409) is retried after 0.5, 1, 2, 4, 4 ... s, each wait short of the in-progress
   expiry (the function timeout, 10 s); the caller gives up on an event after 20 attempts or
   30 s. Every event has its own metric and quantity 1, so a counter that is off belongs to
   one event: "events counted wrong" is the sum over counters of |counter - expected|.

Write units follow DynamoDB's pricing rules (1 per started KB written, 2 in a transaction),
computed from request sizes with bench/dynamodb_cost.py, as in calls_per_event.py, for every
attempt that reached the engine (a conditional write that fails is billed too; an injected
throttle or 500 is not).

    .venv/bin/python bench/vs_naive.py [--events 400] [--rate 0.2] [--seed 1]
                                       [--sdk-backoff 0.1] [--naive-attempts N]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import io
import json
import logging
import os
import random
import sys
import time
import uuid
import warnings
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import boto3
import botocore.endpoint
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from usage_meter.domain import accounts
from usage_meter.store import dynamodb as store_db
from usage_meter_local.dynamodb_local import DynamoDBLocal
from usage_meter_local.events import LambdaContext, http_event
from usage_meter_local.faults import error_response
from usage_meter_local.invoke import Answer, LocalApi, to_answer
from usage_meter_local.template import create_tables, function_environment, load, table_logical_ids

from dynamodb_cost import request_write_units, response_read_units
from report import markdown_table, number

TRACK_PATH = "/v1/usage/events"
COST_DEVELOPER = "dev_cost"
FAULT_DEVELOPER = "dev_fault"
RETRYABLE_CODES = {"temporarily_unavailable", "in_progress"}
MAX_ATTEMPTS = 20
GIVE_UP_SECONDS = 30.0
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def auth(developer_id: str) -> dict[str, str]:
    """The naive design's caller: the developer the authorizer resolved."""
    return {"developerId": developer_id, "role": "developer"}


# this service records what the provider's backend sends with its service key (only service
# keys track), each event naming its developer
SERVICE_AUTH = {"developerId": "dev_provider", "role": "service"}


def naming(body: dict[str, Any], developer_id: str) -> dict[str, Any]:
    """The body with every event naming `developer_id`, as a service key sends it."""
    if "events" in body:
        return {**body, "events": [{**event, "developerId": developer_id} for event in body["events"]]}
    return {**body, "developerId": developer_id}


def function_timeout(logical_id: str = "TrackFunction") -> int:
    """The function's Timeout from template.yaml (its own, else the Globals one)."""
    document = load()
    own = document["Resources"][logical_id]["Properties"].get("Timeout")
    return int(own or document.get("Globals", {}).get("Function", {}).get("Timeout", 3))


# ---- the wire: calls, round trips, write units and injected faults of one client ----------------


class FaultSchedule:
    """Attempt n gets the same fate in every run with the same seed: ~`rate` of attempts fail."""

    KINDS = ("throttle", "server_error", "timeout_after_applied")

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self._rng = random.Random(seed)

    def next(self) -> str | None:
        hit, kind = self._rng.random(), self._rng.choice(self.KINDS)  # always draw both: aligned
        return kind if hit < self.rate else None


@dataclass
class Tally:
    """What one client did: API calls, HTTP attempts, billed write units, injected faults."""

    calls: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0
    wcu: float = 0.0
    rcu: float = 0.0  # of the reads answered (the cost table has no faults, so: of every read)
    cancelled: int = 0  # transactions cancelled (billed at full price here: an upper bound)
    injected: Counter[str] = field(default_factory=Counter)
    # UpdateItem attempts applied, by counter (sort key) and by API call: more than one attempt
    # in a call = an SDK retry re-applied it; more than one call = the function ran again
    applied: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))


class Wire:
    """botocore hooks on one client: count every call and attempt, bill writes, inject faults."""

    def __init__(self, client: Any) -> None:
        self.tally = Tally()
        self.faults: FaultSchedule | None = None
        self._call = 0
        self._http = URLLib3Session(timeout=30)
        client.meta.events.register("before-parameter-build.dynamodb", self._before_call)
        client.meta.events.register("before-send.dynamodb", self._before_send)
        client.meta.events.register("after-call.dynamodb", self._after_call)

    @contextmanager
    def measuring(self, faults: FaultSchedule | None = None) -> Iterator[Tally]:
        self.tally, self.faults = Tally(), faults
        try:
            yield self.tally
        finally:
            self.tally, self.faults = Tally(), None

    def _before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self._call += 1
        self.tally.calls[model.name] += 1
        context["bench_consistent"] = bool(params.get("ConsistentRead"))

    def _after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        consistent = bool(context.get("bench_consistent"))
        if parsed.get("Error", {}).get("Code") == "TransactionCanceledException":
            self.tally.cancelled += 1
        self.tally.rcu += response_read_units(model.name, parsed, consistent=consistent)

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        tally = self.tally
        tally.round_trips += 1
        fate = self.faults.next() if self.faults is not None else None
        if fate == "throttle":
            tally.injected["throttle"] += 1
            return error_response(request, 400, "ThrottlingException")
        if fate == "server_error":
            tally.injected["server_error"] += 1
            return error_response(request, 500, "InternalServerError")
        sent = request.body
        payload = json.loads(sent) if isinstance(sent, str | bytes | bytearray) and sent else {}
        # an attempt that reaches the engine is billed, whatever its answer
        tally.wcu += request_write_units(operation, payload)
        if operation == "UpdateItem" and "sk" in payload.get("Key", {}):
            tally.applied[payload["Key"]["sk"]["S"]][self._call] += 1
        if fate is None:
            return None
        response = self._http.send(request)
        response.content  # noqa: B018 - read it all: the engine has answered, so it has applied it
        if response.status_code != 200:  # nothing was applied: hand back the real answer
            tally.injected["timeout_not_applied"] += 1
            return response
        tally.injected["timeout_after_applied"] += 1
        raise ReadTimeoutError(endpoint_url=request.url)


class ScaledTime:
    """`time` as botocore.endpoint sees it: its retry waits multiplied by `factor`."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.factor)


def naive_client(endpoint_url: str, attempts: int | None = None) -> Any:
    """A client with the service's botocore settings (retry mode, attempts, timeouts)."""
    service: Any = store_db.client().meta.config
    retries: Any = dict(service.retries or {})
    if attempts is not None:
        retries["total_max_attempts"] = attempts
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=service.region_name,
        config=Config(
            retries=retries,
            connect_timeout=service.connect_timeout,
            read_timeout=service.read_timeout,
            tcp_keepalive=True,
        ),
    )


# ---- the two designs ---------------------------------------------------------------------------


def naive_handler(client: Any, idempotency_table: str, usage_table: str) -> Handler:
    """The hand-built track handler: Powertools' idempotency around two ADDs per event."""
    persistence = DynamoDBPersistenceLayer(table_name=idempotency_table, boto3_client=client)
    config = IdempotencyConfig(
        event_key_jmespath="[developerId, idempotencyKey]",
        raise_on_no_idempotency_key=True,
        response_hook=lambda response, _record: {**response, "duplicate": True},
    )

    @idempotent_function(  # type: ignore[untyped-decorator]  # Powertools' decorator is untyped
        data_keyword_argument="event", config=config, persistence_store=persistence
    )
    def record_event(event: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        moment = datetime.fromisoformat(event["timestamp"]) if event.get("timestamp") else now
        for sort_key in (f"D#{moment:%Y-%m-%d}#{event['metric']}", f"M#{moment:%Y-%m}#{event['metric']}"):
            client.update_item(
                TableName=usage_table,
                Key={"pk": {"S": f"DEV#{event['developerId']}"}, "sk": {"S": sort_key}},
                UpdateExpression="ADD #c :q",  # `consumed` is a reserved word
                ExpressionAttributeNames={"#c": "consumed"},
                ExpressionAttributeValues={":q": {"N": str(event["quantity"])}},
            )
        return {"recordedAt": now.isoformat()}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        config.register_lambda_context(context)
        developer_id = event["requestContext"]["authorizer"]["lambda"]["developerId"]
        body = json.loads(event["body"], parse_float=Decimal)
        single = "events" not in body
        results = []
        for index, item in enumerate([body] if single else body["events"]):
            try:
                done = record_event(event={**item, "developerId": developer_id})
                status = "duplicate" if done.get("duplicate") else "recorded"
                results.append({"index": index, "status": status, "idempotencyKey": item["idempotencyKey"]})
            except IdempotencyAlreadyInProgressError:
                error = {"code": "in_progress", "message": "this event is being recorded; retry later"}
                if single:
                    return {"statusCode": 409, "body": json.dumps({"error": error})}
                results.append({"index": index, "status": "rejected", "error": error})
            except Exception as exc:  # a DynamoDB call failed (after botocore's retries)
                if single:
                    raise  # Lambda reports the error; API Gateway answers 500
                error = {"code": "temporarily_unavailable", "message": type(exc).__name__}
                results.append({"index": index, "status": "rejected", "error": error})
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"results": results}),
        }

    return handler


class Design:
    """One design's track endpoint, as its callers see it; a crash is API Gateway's 500."""

    def __init__(self, name: str, client: Any, send: Callable[[dict[str, Any], str], Answer]) -> None:
        self.name = name
        self.wire = Wire(client)
        self._send = send
        self.crashes: Counter[str] = Counter()

    def track(self, body: dict[str, Any], developer_id: str) -> Answer:
        try:
            # the service's metrics go to stdout as EMF (with metrics disabled, in blocks of 100)
            with contextlib.redirect_stdout(io.StringIO()):
                return self._send(body, developer_id)
        except Exception as exc:
            self.crashes[type(exc).__name__] += 1
            return Answer(status=500, headers={}, body='{"message":"Internal Server Error"}')


def service_design() -> Design:
    api = LocalApi()

    def send(body: dict[str, Any], developer_id: str) -> Answer:
        return api.call("POST", TRACK_PATH, body=naming(body, developer_id), authorizer=SERVICE_AUTH)

    return Design("this service", store_db.client(), send)


def naive_design(
    endpoint_url: str, idempotency_table: str, usage_table: str, attempts: int | None = None
) -> Design:
    client = naive_client(endpoint_url, attempts)
    handler = naive_handler(client, idempotency_table, usage_table)
    timeout = function_timeout()

    def send(body: dict[str, Any], developer_id: str) -> Answer:
        event = http_event(
            "POST",
            TRACK_PATH,
            body=json.dumps(body),
            headers={"content-type": "application/json"},
            authorizer=auth(developer_id),
            route_key=f"POST {TRACK_PATH}",
        )
        return to_answer(handler(event, LambdaContext("NaiveTrackFunction", timeout_s=timeout)))

    return Design("Powertools idempotency + UpdateItem ADD", client, send)


# ---- 1. cost per event, no faults --------------------------------------------------------------


@dataclass
class CostRow:
    design: str
    scenario: str
    events: int
    tally: Tally


def keyed(metric: str = "api_calls") -> dict[str, Any]:
    return {"metric": metric, "quantity": 1, "idempotencyKey": f"bench-{uuid.uuid4()}"}


def expect(answer: Answer, status: str, count: int) -> None:
    if answer.status != 200:
        raise SystemExit(f"track answered {answer.status}: {answer.body[:300]}")
    statuses = [r["status"] for r in answer.json()["results"]]
    if statuses != [status] * count:
        raise SystemExit(f"expected {count} x {status!r}, got {Counter(statuses)}")


def cost_rows(design: Design) -> list[CostRow]:
    rows = []
    single = keyed()
    batch = {"events": [keyed() for _ in range(100)]}
    original = keyed()
    expect(design.track(original, COST_DEVELOPER), "recorded", 1)  # unmeasured: the original
    for scenario, body, status, events in (
        ("single event, keyed", single, "recorded", 1),
        ("100-event batch, keyed", batch, "recorded", 100),
        ("duplicate (key re-sent)", original, "duplicate", 1),
    ):
        with design.wire.measuring() as tally:
            expect(design.track(body, COST_DEVELOPER), status, events)
        rows.append(CostRow(design.name, scenario, events, tally))
    return rows


# ---- 2. the same events under the same faults ------------------------------------------------------


@dataclass(order=True)
class Pending:
    """A request waiting to be (re)sent: its events, when, which attempt, since when."""

    due: float
    seq: int
    events: list[dict[str, Any]] = field(compare=False)
    single: bool = field(compare=False)
    attempt: int = field(compare=False, default=1)
    since: float = field(compare=False, default=0.0)


@dataclass
class FaultRun:
    design: str
    tally: Tally
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "200", "500", "409 in_progress", ...
    refused_in_progress: int = 0  # answers (requests or batch items) refused as in progress
    gave_up: int = 0  # events the caller stopped retrying
    unexpected: list[str] = field(default_factory=list)
    double_counted: int = 0
    lost: int = 0
    counter_error: Decimal = Decimal(0)
    seconds: float = 0.0
    crashes: Counter[str] = field(default_factory=Counter)


def workload(count: int, seed: int) -> tuple[list[dict[str, Any]], list[tuple[list[dict[str, Any]], bool]]]:
    """`count` distinct events (each its own metric, quantity 1): half of them in 100-event
    batches, the rest single; then 10% of them sent once more, as a caller that repeats itself."""
    rng = random.Random(seed)
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    distinct = [
        {
            "metric": f"f{i:05d}",
            "quantity": 1,
            "idempotencyKey": f"fault-{i:05d}",
            "timestamp": stamp.isoformat().replace("+00:00", "Z"),
        }
        for i in range(count)
    ]
    in_batches = (count // 2) // 100 * 100
    requests: list[tuple[list[dict[str, Any]], bool]] = [
        (distinct[i : i + 100], False) for i in range(0, in_batches, 100)
    ]
    requests += [([event], True) for event in distinct[in_batches:]]
    rng.shuffle(requests)
    requests += [([dict(event)], True) for event in rng.sample(distinct, count // 10)]
    return distinct, requests


def deliver(design: Design, requests: list[tuple[list[dict[str, Any]], bool]], seed: int) -> FaultRun:
    """The caller: send the requests in order, and each resend when it is due (before the next new
    request), with the same keys, until every event is answered or given up."""
    rng = random.Random(seed)
    run = FaultRun(design.name, design.wire.tally)
    fresh = deque(Pending(0.0, seq, events, single) for seq, (events, single) in enumerate(requests))
    retries: list[Pending] = []
    seq = len(fresh)
    started = time.monotonic()
    while fresh or retries:
        if retries and (not fresh or retries[0].due <= time.monotonic()):
            pending = heapq.heappop(retries)
            time.sleep(max(0.0, pending.due - time.monotonic()))
        else:
            pending = fresh.popleft()
        since = pending.since or time.monotonic()
        body = pending.events[0] if pending.single else {"events": pending.events}
        answer = design.track(body, FAULT_DEVELOPER)
        run.requests += 1
        again, in_progress = examine(run, answer, pending)
        if not again:
            continue
        if pending.attempt >= MAX_ATTEMPTS or time.monotonic() - since > GIVE_UP_SECONDS:
            run.gave_up += len(again)
            continue
        if in_progress:
            wait = min(4.0, 0.5 * 2 ** (pending.attempt - 1))
        else:
            wait = min(1.0, 0.05 * 2**pending.attempt) * rng.uniform(0.5, 1.0)
        seq += 1
        heapq.heappush(
            retries, Pending(time.monotonic() + wait, seq, again, pending.single, pending.attempt + 1, since)
        )
    run.seconds = time.monotonic() - started
    run.crashes = design.crashes
    return run


def examine(run: FaultRun, answer: Answer, pending: Pending) -> tuple[list[dict[str, Any]], bool]:
    """The events to send again, and whether they were refused as in progress."""
    document = answer.json() if answer.body.startswith("{") else None
    code = ((document or {}).get("error") or {}).get("code")
    run.answers[f"{answer.status} {code}" if code else str(answer.status)] += 1
    if answer.status == 409 and code == "in_progress":
        run.refused_in_progress += 1
        return pending.events, True
    if answer.status >= 500:
        return pending.events, False
    if answer.status != 200:
        run.unexpected.append(f"{answer.status} {answer.body[:200]}")
        return [], False
    again: list[dict[str, Any]] = []
    in_progress = False
    for event, result in zip(pending.events, document["results"], strict=True):  # type: ignore[index]
        item_code = (result.get("error") or {}).get("code")
        if result["status"] in ("recorded", "duplicate"):
            continue
        if result["status"] == "rejected" and item_code in RETRYABLE_CODES:
            run.answers[f"200 item {item_code}"] += 1
            if item_code == "in_progress":
                run.refused_in_progress += 1
                in_progress = True
            again.append(event)
        else:
            run.unexpected.append(f"{event['idempotencyKey']}: {result}")
    return again, in_progress


def check_counters(run: FaultRun, dynamodb: Any, table: str, distinct: list[dict[str, Any]]) -> None:
    """Compare the developer's day and month counters with one count per distinct event."""
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"DEV#{FAULT_DEVELOPER}"}},
        ConsistentRead=True,
    )
    held: dict[str, Decimal] = {}
    for page in pages:
        for item in page["Items"]:
            sort_key = item["sk"]["S"]
            if sort_key[0] in "DM":
                held[sort_key] = Decimal(item["consumed"]["N"])
    for event in distinct:
        day, month = event["timestamp"][:10], event["timestamp"][:7]
        off = [
            held.get(f"D#{day}#{event['metric']}", Decimal(0)) - 1,
            held.get(f"M#{month}#{event['metric']}", Decimal(0)) - 1,
        ]
        run.counter_error += sum(abs(d) for d in off)
        run.double_counted += any(d > 0 for d in off)
        run.lost += any(d < 0 for d in off)


def extra_adds(tally: Tally) -> tuple[int, int]:
    """Extra applications of an ADD: by SDK retries within one call, and by running the function again."""
    sdk = sum(n - 1 for calls in tally.applied.values() for n in calls.values() if n > 1)
    rerun = sum(len(calls) - 1 for calls in tally.applied.values() if len(calls) > 1)
    return sdk, rerun


# ---- setup and output -------------------------------------------------------------------------------


def configure(endpoint_url: str, names: dict[str, str]) -> None:
    os.environ.update(function_environment("TrackFunction", names))
    os.environ.update(
        {
            "DYNAMODB_ENDPOINT_URL": endpoint_url,
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
    )
    os.environ.pop("POWERTOOLS_IDEMPOTENCY_DISABLED", None)
    logging.disable(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    warnings.filterwarnings("ignore", message="Couldn't determine the remaining time left")


def create_naive_tables(dynamodb: Any, idempotency_table: str, usage_table: str) -> None:
    """Powertools' documented idempotency table (partition key `id`, TTL on `expiration`) and a
    counters table keyed like the service's."""
    dynamodb.create_table(
        TableName=idempotency_table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=usage_table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=idempotency_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )


def calls_text(calls: Counter[str]) -> str:
    return " + ".join(f"{n} {op}" for op, n in sorted(calls.items(), key=lambda kv: -kv[1]))


def render_cost(rows: list[CostRow]) -> str:
    header = [
        "design",
        "scenario",
        "events",
        "DynamoDB calls",
        "round trips",
        "WCU",
        "RCU",
        "calls/event",
        "round trips/event",
        "WCU/event",
    ]
    body = [
        [
            r.design,
            r.scenario,
            str(r.events),
            calls_text(r.tally.calls),
            str(r.tally.round_trips),
            number(r.tally.wcu) + ("*" if r.tally.cancelled else ""),
            number(r.tally.rcu),
            number(sum(r.tally.calls.values()) / r.events),
            number(r.tally.round_trips / r.events),
            number(r.tally.wcu / r.events),
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def render_faults(runs: list[FaultRun], distinct: int) -> str:
    header = ["", *[r.design for r in runs]]
    rows: list[list[str]] = []

    def row(label: str, cell: Callable[[FaultRun], str]) -> None:
        rows.append([label, *[cell(r) for r in runs]])

    row("track requests (incl. resends)", lambda r: str(r.requests))
    row("DynamoDB calls", lambda r: str(sum(r.tally.calls.values())))
    row("round trips (HTTP attempts)", lambda r: str(r.tally.round_trips))
    row(
        "faults injected: throttle / 500 / timeout after applied",
        lambda r: " / ".join(
            str(r.tally.injected[k]) for k in ("throttle", "server_error", "timeout_after_applied")
        ),
    )
    row("WCU billed", lambda r: number(r.tally.wcu))
    row("WCU per distinct event", lambda r: number(r.tally.wcu / distinct))
    row(
        "5xx answers (resent)",
        lambda r: str(sum(n for k, n in r.answers.items() if k[0] == "5")),
    )
    row(
        "batch items refused, retryable (resent)",
        lambda r: str(r.answers["200 item temporarily_unavailable"]),
    )
    row("refused retries: in progress (resent later)", lambda r: str(r.refused_in_progress))
    row("events the caller gave up on", lambda r: str(r.gave_up))
    row("**events double-counted**", lambda r: f"**{r.double_counted}**")
    row("**events lost**", lambda r: f"**{r.lost}**")
    row(
        "**events counted wrong: sum of abs(counter - expected)**", lambda r: f"**{number(r.counter_error)}**"
    )
    row("extra ADDs: SDK retry of an applied UpdateItem", lambda r: str(extra_adds(r.tally)[0]))
    row("extra ADDs: function ran again", lambda r: str(extra_adds(r.tally)[1]))
    row("wall time (s)", lambda r: f"{r.seconds:.1f}")
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--events", type=int, default=400, help="distinct events in the fault run (default 400)"
    )
    parser.add_argument("--rate", type=float, default=0.2, help="share of HTTP attempts failed (default 0.2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the workload")
    parser.add_argument(
        "--sdk-backoff",
        type=float,
        default=0.1,
        help="botocore's retry waits are multiplied by this, for both designs (default 0.1; 1 = real waits)",
    )
    parser.add_argument(
        "--naive-attempts",
        type=int,
        help="botocore attempts of the naive design's client (default: the service's setting)",
    )
    args = parser.parse_args(argv)

    suffix = uuid.uuid4().hex[:8]
    names = {logical_id: f"bench-{suffix}-{logical_id}" for logical_id in table_logical_ids()}
    naive_tables = (f"bench-{suffix}-naive-idempotency", f"bench-{suffix}-naive-usage")
    with (
        DynamoDBLocal() as engine,
        mock.patch.object(botocore.endpoint, "time", ScaledTime(args.sdk_backoff)),
    ):
        configure(engine.endpoint_url, names)
        store_db.reset()
        admin = engine.client()
        create_tables(admin, names)
        create_naive_tables(admin, *naive_tables)
        accounts.seed_default_plans()
        for developer_id in (COST_DEVELOPER, FAULT_DEVELOPER):
            accounts.create_developer(developer_id, "pro", developer_id)

        service = service_design()
        naive = naive_design(engine.endpoint_url, *naive_tables, attempts=args.naive_attempts)
        costs = cost_rows(service) + cost_rows(naive)

        distinct, requests = workload(args.events, args.seed)
        runs = []
        for design, usage_table in ((service, names["UsageTable"]), (naive, naive_tables[1])):
            with design.wire.measuring(FaultSchedule(args.rate, args.seed)):
                run = deliver(design, requests, args.seed)
            check_counters(run, admin, usage_table, distinct)
            runs.append(run)
        store_db.reset()

    print("DynamoDB work per event, no faults (DynamoDB Local; capacity units computed from request sizes):")
    print(render_cost(costs))
    print("* includes a cancelled transaction, counted at the full price of its items (an upper bound).")
    print()
    batches = sum(1 for _, single in requests if not single)
    print(
        f"The same {len(distinct)} distinct events ({batches} x 100-event batches, the rest single; "
        f"then {args.events // 10} of them sent again) through each design; {args.rate:.0%} of HTTP "
        f"attempts failed (seed {args.seed}); botocore's retry waits x{args.sdk_backoff:g}:"
    )
    print(render_faults(runs, len(distinct)))
    for run in runs:
        if run.crashes:
            print(f"{run.design}: 500s from exceptions out of the handler: {dict(run.crashes)}")
        if run.unexpected:
            print(f"{run.design}: UNEXPECTED answers ({len(run.unexpected)}): {run.unexpected[:3]}")
    return 1 if any(run.unexpected for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
