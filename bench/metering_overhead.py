"""What `@meter` adds to a metered invocation: expression time and DynamoDB calls.

1. Cold start: `import cel` (the CEL engine) and `import usage_meter_metering` in a fresh
   interpreter (median of 3), and the compile time of each example expression.
2. Evaluation, per example expression: the CEL engine alone (`Program.execute` on ready
   variables), and the whole measuring step (`Meter.quantity`: reading the response, parsing
   JSON or server-sent events when the expression needs them, evaluating, converting the
   result), in µs per evaluation, on a typical response and on 1 MiB worst cases.
3. DynamoDB calls per metered invocation, through decorated handlers against moto (tables from
   template.yaml), counted with botocore hooks on `usage_meter.store.dynamodb.client()`: API calls by
   operation (before-parameter-build) and HTTP round trips (before-send).

    .venv/bin/python bench/metering_overhead.py [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

from usage_meter.domain import accounts, clock
from usage_meter.store import dynamodb as store_db
from usage_meter_local.events import LambdaContext, http_event
from usage_meter_local.template import create_tables, function_environment, table_logical_ids
from usage_meter_metering import Exchange, Meter, Mode, meter

from report import markdown_table

DEVELOPER = {"developerId": "dev_bench", "role": "developer"}
MIB = 1024 * 1024


def json_response(payload: Any, status: int = 200) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }


def sse_response(events: int, size: int = 40) -> dict[str, Any]:
    chunk = json.dumps({"text": "x" * size})
    return {
        "statusCode": 200,
        "headers": {"content-type": "text/event-stream"},
        "body": "".join(f"data: {chunk}\n\n" for _ in range(events)),
    }


TYPICAL_JSON = json_response(
    {
        "id": "cmpl-123",
        "model": "large",
        "output": "a short answer of a few words",
        "tokens": 42,
        "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
    }
)


# Bodies just under the 1 MiB bound: many small objects (the engine converts the whole body to
# CEL values), and many small events.
def _items(count: int) -> dict[str, Any]:
    items = [{"i": i, "ok": True} for i in range(count)]
    return json_response({"usage": {"total_tokens": 42}, "model": "large", "tokens": 42, "items": items})


def _fill(build: Callable[[int], dict[str, Any]], per_unit: int) -> dict[str, Any]:
    count = MIB // per_unit
    while len(build(count)["body"].encode()) > MIB:
        count = count * 99 // 100
    return build(count)


BIG_JSON = _fill(_items, 20)
BIG_SSE = _fill(sse_response, 60)


@dataclass(frozen=True)
class Case:
    label: str
    mode: Mode
    expression: str | None
    response: dict[str, Any]


CASES = [
    Case("bytes", "bytes", "double(responseBytes) / 1024.0", TYPICAL_JSON),
    Case("response_field", "response_field", "respBody.usage.total_tokens", TYPICAL_JSON),
    Case(
        "custom",
        "custom",
        "respBody.model == 'large' ? respBody.tokens * 2 : respBody.tokens",
        TYPICAL_JSON,
    ),
    Case("sse (20 events)", "sse", "sseEvents", sse_response(20)),
    Case("sse allData", "sse", "size(allData)", sse_response(20)),
    Case("response_field, 1 MiB JSON", "response_field", "respBody.usage.total_tokens", BIG_JSON),
    Case("response_field, a 9,000-value list", "response_field", "size(respBody.items)", _items(2_999)),
    Case("sse, 1 MiB stream", "sse", "sseEvents", BIG_SSE),
    Case("bytes, 1 MiB JSON", "bytes", "responseBytes / 1024", BIG_JSON),
]


def per_call_us(action: Callable[[], Any], seconds: float) -> float:
    """Median over 5 rounds of the mean time of `action` in µs (each round ~seconds/5)."""
    action()
    start = time.perf_counter()
    action()
    once = max(time.perf_counter() - start, 1e-7)
    n = max(1, int(seconds / 5 / once))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            action()
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(rounds)


def cold_import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(3)
    ]
    return statistics.median(runs) * 1000


def measure_case(case: Case, event: dict[str, Any], seconds: float) -> list[str]:
    start = time.perf_counter()
    config = Meter(metric="bench", mode=case.mode, expression=case.expression)
    compile_us = (time.perf_counter() - start) * 1e6
    expression = config.expression
    assert expression is not None
    quantity = config.quantity(event, case.response)
    values = Exchange.of(event, case.response).variables(expression.variables, expression.body_paths)
    engine = per_call_us(lambda: expression.evaluate(values), seconds)
    whole = per_call_us(lambda: config.quantity(event, case.response), seconds)
    return [
        case.label,
        f"`{expression.source}`",
        f"{len(case.response['body'].encode()):,}",
        str(quantity),
        f"{compile_us:,.0f}",
        f"{engine:,.1f}",
        f"{whole:,.1f}",
    ]


def evaluation_rows(seconds: float) -> list[list[str]]:
    event = http_event("POST", "/v1/completions", body='{"prompt": "hi"}', authorizer=DEVELOPER)
    return [measure_case(case, event, seconds) for case in CASES]


# ---- DynamoDB calls ------------------------------------------------------------------------


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0


class Calls:
    """Counts the requests of the service's DynamoDB client while `measuring`."""

    def __init__(self, client: Any) -> None:
        self.tally: Tally | None = None
        client.meta.events.register("before-parameter-build.dynamodb", self._call)
        client.meta.events.register("before-send.dynamodb", self._send)

    @contextmanager
    def measuring(self) -> Iterator[Tally]:
        self.tally = Tally()
        try:
            yield self.tally
        finally:
            self.tally = None

    def _call(self, model: Any, **_: Any) -> None:
        if self.tally is not None:
            self.tally.calls[model.name] += 1

    def _send(self, **_: Any) -> None:
        if self.tally is not None:
            self.tally.round_trips += 1


def handler_of(response: Any, *meters: Callable[[Any], Any]) -> Callable[..., Any]:
    def handler(event: dict[str, Any], context: Any) -> Any:
        return response

    for wrap in reversed(meters):
        handler = wrap(handler)
    return handler


def dynamodb_rows() -> list[list[str]]:
    names = {logical_id: f"bench-{logical_id}" for logical_id in table_logical_ids()}
    os.environ.update(function_environment("TrackFunction", names))
    os.environ.update(
        {
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(variable, "testing")
    os.environ.pop("DYNAMODB_ENDPOINT_URL", None)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    pinned = datetime.now(UTC).replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    rows = []
    with mock_aws(), mock.patch.object(clock, "now", return_value=pinned):
        store_db.reset()
        create_tables(boto3.client("dynamodb"), names)
        accounts.seed_default_plans()
        accounts.create_developer("Benchmark", plan="pro", developer_id=DEVELOPER["developerId"])
        counter = Calls(store_db.client())
        tokens = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")
        calls = meter(metric="api_calls")
        retried = http_event("POST", "/v1/completions", authorizer=DEVELOPER)
        scenarios: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
            ("request mode, first invocation", handler_of(TYPICAL_JSON, calls), retried),
            ("same request retried (duplicate)", handler_of(TYPICAL_JSON, calls), retried),
            (
                "response_field mode",
                handler_of(TYPICAL_JSON, tokens),
                http_event("POST", "/v1/completions", authorizer=DEVELOPER),
            ),
            (
                "two stacked meters (api_calls + tokens)",
                handler_of(TYPICAL_JSON, calls, tokens),
                http_event("POST", "/v1/completions", authorizer=DEVELOPER),
            ),
            (
                "expression fails (field missing)",
                handler_of(json_response({"usage": {}}), tokens),
                http_event("POST", "/v1/completions", authorizer=DEVELOPER),
            ),
            (
                "500 response (status filter)",
                handler_of(json_response({}, status=500), calls),
                http_event("POST", "/v1/completions", authorizer=DEVELOPER),
            ),
        ]
        for label, handler, event in scenarios:
            with counter.measuring() as tally:
                handler(event, LambdaContext("bench"))
            described = " + ".join(f"{n} {op}" for op, n in tally.calls.items()) or "none"
            rows.append([label, str(sum(tally.calls.values())), described, str(tally.round_trips)])
    store_db.reset()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="measuring time per figure")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Bench")
    logging.disable(logging.WARNING)  # the 1 MiB cases log slow_evaluation warnings on purpose

    print(f"CEL engine: common-expression-language (module cel), Python {sys.version.split()[0]}\n")
    print("Cold start (fresh interpreter, median of 3):")
    print(f"  import cel                    {cold_import_ms('cel'):7.1f} ms")
    print(
        f"  import usage_meter_metering   {cold_import_ms('usage_meter_metering'):7.1f} ms (includes cel)\n"
    )
    print("Evaluation (µs per evaluation, median of 5 rounds):\n")
    header = ["case", "expression", "body bytes", "quantity", "compile µs", "engine µs", "whole step µs"]
    print(markdown_table(header, evaluation_rows(args.seconds)))
    print("\nDynamoDB calls per metered invocation (moto, counted on usage_meter.store.dynamodb.client()):\n")
    print(markdown_table(["scenario", "calls", "by operation", "round trips"], dynamodb_rows()))


if __name__ == "__main__":
    main()
