"""Every sample in events/ is invoked against the function the template routes it to.

The samples are what `sam local invoke -e events/<name>.json` feeds the functions, so they
must look like what API Gateway (payload format 2.0, Lambda authorizer) and EventBridge
really send, and each one must get the answer its name promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from usage_meter.domain import accounts, meters
from usage_meter.http.docs import openapi_document
from usage_meter.store import dynamodb as store_db
from usage_meter_local.events import LambdaContext, http_event
from usage_meter_local.handlers import load_handler
from usage_meter_local.invoke import Answer, to_answer
from usage_meter_local.outbox import environment as outbox_environment
from usage_meter_local.template import ROOT, Route, load, resources, routes

from helpers import counters, iso, table_items
from integration.conftest import Stack

EVENTS_DIR = ROOT / "events"
SAMPLES = sorted(path.name for path in EVENTS_DIR.glob("*.json"))
HTTP_SAMPLES = [name for name in SAMPLES if "routeKey" in json.loads((EVENTS_DIR / name).read_text())]
NOW = datetime(2026, 11, 25, 10, 20, tzinfo=UTC)
DEMO = {"developerId": "dev_demo", "role": "developer"}
FUNCTION = "AWS::Serverless::Function"


def load_sample(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return sample


def http_route(event: dict[str, Any]) -> Route:
    matches = [r for r in routes() if f"{r.method} {r.path}" == event["routeKey"]]
    assert len(matches) == 1, f"template.yaml routes {event['routeKey']!r} {len(matches)} times"
    return matches[0]


def scheduled_function(event: dict[str, Any]) -> str:
    """The function whose Schedule event created the rule named in the event.

    SAM names a schedule's rule `<stack>-<FunctionId><EventId>-<suffix>`.
    """
    rules = [arn.split(":rule/", 1)[1] for arn in event["resources"]]
    matches = [
        logical_id
        for logical_id, fn in resources(FUNCTION).items()
        for event_id, source in fn["Properties"].get("Events", {}).items()
        if source.get("Type") in ("Schedule", "ScheduleV2")
        and any(f"-{logical_id}{event_id}-" in rule for rule in rules)
    ]
    assert len(matches) == 1, f"rules {rules} match scheduled functions {matches}"
    return matches[0]


SOURCE_TYPES = {"aws:dynamodb": "DynamoDB", "aws:sqs": "SQS"}


def record_function(event: dict[str, Any]) -> str:
    """The function whose stream or queue event source delivers these records."""
    kind = SOURCE_TYPES[event["Records"][0]["eventSource"]]
    matches = [
        logical_id
        for logical_id, fn in resources(FUNCTION).items()
        if any(source.get("Type") == kind for source in fn["Properties"].get("Events", {}).values())
    ]
    assert len(matches) == 1, f"{kind} event sources: {matches}"
    return matches[0]


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    """Call the handler the template maps this event to, the way Lambda would."""
    if "routeKey" in event:
        route = http_route(event)
        handler = load_handler(route.code_uri, route.handler)
        name = route.function
    else:
        name = record_function(event) if "Records" in event else scheduled_function(event)
        props = resources(FUNCTION)[name]["Properties"]
        default = load()["Globals"]["Function"].get("Handler", "app.lambda_handler")
        handler = load_handler(props["CodeUri"], props.get("Handler", default))
    return handler(event, LambdaContext(name))


def error_of(answer: Answer) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def nothing_written(stack: Stack) -> bool:
    return not table_items(stack.dynamodb, stack.usage_table) and not table_items(
        stack.dynamodb, stack.idempotency_table
    )


# ---- what each sample must answer ------------------------------------------------------------

Expectation = Callable[[Stack, Callable[[], dict[str, Any]]], None]


def expect_track_single(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    key = "req_01JDQ4Z8K3M5N7P9R1T3V5X7Z9"
    assert body["results"] == [
        {"index": 0, "status": "recorded", "idempotencyKey": key, "recordedAt": iso(NOW)}
    ]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    usage = body["usage"]
    assert usage["metric"] == "api_calls"
    assert usage["consumed"] == 1
    assert (usage["periodStart"], usage["periodEnd"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    expected = {
        ("DEV#dev_demo", "D#2026-11-25#api_calls"): (Decimal(1), 1),
        ("DEV#dev_demo", "M#2026-11#api_calls"): (Decimal(1), 1),
    }
    assert counters(stack.dynamodb, stack.usage_table) == expected
    records = table_items(stack.dynamodb, stack.idempotency_table)
    assert [r["pk"]["S"] for r in records] == [f"dev_demo#{key}"]
    assert records[0]["metadata"] == {"S": '{"endpoint":"/v1/search","status":200}'}  # JSON text

    # the same request again (a client or gateway retry) is a duplicate, counted once
    again = to_answer(run())
    assert again.status == 200, again.body
    assert again.json()["results"] == [
        {"index": 0, "status": "duplicate", "idempotencyKey": key, "recordedAt": iso(NOW)}
    ]
    assert counters(stack.dynamodb, stack.usage_table) == expected
    assert len(table_items(stack.dynamodb, stack.idempotency_table)) == 1


def expect_track_batch(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    keys = [f"batch_2026-11-25T10:15_{i}" for i in range(3)]
    assert body["results"] == [
        {"index": i, "status": "recorded", "idempotencyKey": key, "recordedAt": iso(NOW)}
        for i, key in enumerate(keys)
    ]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (3, 0, 0)
    assert "usage" not in body
    # the service key acts for the developer named in each event, not for itself
    assert counters(stack.dynamodb, stack.usage_table) == {
        ("DEV#dev_demo", "D#2026-11-25#api_calls"): (Decimal(150), 2),
        ("DEV#dev_demo", "M#2026-11#api_calls"): (Decimal(150), 2),
        ("DEV#dev_demo", "D#2026-11-25#tokens"): (Decimal(1530), 1),
        ("DEV#dev_demo", "M#2026-11#tokens"): (Decimal(1530), 1),
    }
    records = table_items(stack.dynamodb, stack.idempotency_table)
    assert sorted(r["pk"]["S"] for r in records) == [f"dev_demo#{key}" for key in keys]


def expect_track_invalid(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    answer = to_answer(run())
    assert answer.status == 422, answer.body
    error = error_of(answer)
    assert error["code"] == "validation_error"
    assert {d["field"] for d in error["details"]} == {"body.quantity", "body.unit"}
    assert nothing_written(stack)


def expect_current(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 5}, developer="dev_demo").status == 200
    assert stack.track({"metric": "tokens", "quantity": 1250.5}, developer="dev_demo").status == 200
    assert stack.track({"metric": "api_calls", "quantity": 7}).status == 200  # someone else
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["developerId"] == "dev_demo"
    assert body["period"] == {
        "key": "2026-11",
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
    }
    assert {name: usage["consumed"] for name, usage in body["metrics"].items()} == {
        "api_calls": 5,
        "tokens": Decimal("1250.5"),
    }
    assert body["totalRequests"] == 2
    assert body["resetsInDays"] == 6  # 5 days 13 h 40 min until December, rounded up


def expect_history(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    for days_ago, quantity in ((7, 100), (6, 2), (0, 3), (0, 4)):
        event = {
            "metric": "api_calls",
            "quantity": quantity,
            "timestamp": iso(NOW - timedelta(days=days_ago)),
        }
        assert stack.track(event, developer="dev_demo").status == 200
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["developerId"], body["granularity"]) == ("dev_demo", "day")
    expected = {"2026-11-19": (2, 1), "2026-11-25": (7, 2)}
    assert body["entries"] == [
        {
            "date": f"2026-11-{day}",
            "metrics": {"api_calls": expected.get(f"2026-11-{day}", (0, 0))[0]},
            "totalRequests": expected.get(f"2026-11-{day}", (0, 0))[1],
        }
        for day in range(19, 26)
    ]


def expect_docs(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    document = json.loads(answer.body)
    assert document == json.loads(openapi_document())
    assert document["openapi"].startswith("3.")
    assert {"/v1/usage/events", "/v1/usage", "/v1/usage/history"} <= set(document["paths"])
    assert nothing_written(stack)


def expect_rollup(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 5}, developer="dev_demo").status == 200
    late = {"metric": "tokens", "quantity": 1250.5, "timestamp": "2026-10-30T08:00:00Z"}
    assert stack.track(late, developer="dev_demo").status == 200  # backdated into a closed month
    assert stack.track({"metric": "api_calls", "quantity": 7}).status == 200  # someone else
    result = run()
    assert result == {
        "firstDay": "2026-10-20",  # the backdating window and a day, to tomorrow
        "lastDay": "2026-11-26",
        "days": 38,
        "months": ["2026-10", "2026-11"],
        "developers": 2,
        "developerMonths": 3,
        "summaries": 3,
        "summariesWritten": 3,
        "summariesUnchanged": 0,
        "drift": 0,
        "drifts": [],
        "failed": 0,
        "durationMs": result["durationMs"],
    }
    summaries = {
        (i["pk"]["S"], i["sk"]["S"]): (
            Decimal(i["consumed"]["N"]),
            int(i["events"]["N"]),
            i["closed"]["BOOL"],
        )
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith("S#")
    }
    assert summaries == {
        ("DEV#dev_demo", "S#2026-11#api_calls"): (Decimal(5), 1, False),
        ("DEV#dev_demo", "S#2026-10#tokens"): (Decimal("1250.5"), 1, True),
        ("DEV#dev_alice", "S#2026-11#api_calls"): (Decimal(7), 1, False),
    }
    # the schedule fires again: nothing changed, nothing is written
    again = run()
    assert (again["summaries"], again["summariesWritten"], again["summariesUnchanged"]) == (3, 0, 3)


def expect_entitlements(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 40}, developer="dev_demo").status == 200
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "metric": "api_calls",
        "hasAccess": True,
        "consumed": 40,
        "limit": 100000,  # the pro plan's hard limit
        "remaining": 99960,
        "enforcement": "hard",
        "resetsAt": "2026-12-01T00:00:00Z",
    }


def expect_meters(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    meters.create(meters.definition(name="seats", aggregation="level", unit="seats"))
    meters.create(meters.definition(name="api_calls", aggregation="count", dimensions=["endpoint"]))
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "meters": [
            {
                "name": "api_calls",
                "aggregation": "count",
                "uniqueBy": None,
                "dimensions": ["endpoint"],
                "unit": None,
                "description": None,
                "status": "active",
                "shards": 1,
            },
            {
                "name": "seats",
                "aggregation": "level",
                "uniqueBy": None,
                "dimensions": [],
                "unit": "seats",
                "description": None,
                "status": "active",
                "shards": 1,
            },
        ]
    }
    assert nothing_written(stack)


def expect_grantex_usage(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    for metric in ("token_exchanges", "token_exchanges", "authorizations", "api_calls"):
        assert stack.track({"metric": metric, "quantity": 1}, developer="dev_demo").status == 200
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    assert json.loads(answer.body) == {
        "developerId": "dev_demo",
        "period": "2026-11",
        "tokenExchanges": 2,
        "authorizations": 1,
        "verifications": 0,
        "totalRequests": 4,
    }
    assert answer.headers["x-ratelimit-limit"] == "1000"  # the pro plan's rate, for the SDK
    assert len(table_items(stack.dynamodb, stack.idempotency_table)) == 4  # the read wrote nothing


def expect_glyphnet_usage(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 5}, developer="dev_demo").status == 200
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["organization"] == {"id": "dev_demo", "name": "Demo developer", "plan": "pro"}
    assert body["period"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-30T23:59:59Z"}
    assert (body["current_usage"], body["monthly_limit"], body["remaining"]) == (5, 100000, 99995)
    assert body["rate_limit"] == {"requests_per_minute": 1000, "current_minute_usage": 1}
    assert body["breakdown"] == {}  # api_calls declares no dimension here
    assert [d["date"] for d in body["daily"]] == [f"2026-11-{d:02d}" for d in range(1, 26)]
    assert body["daily"][-1] == {
        "date": "2026-11-25",
        "requests": 5,
        "verified_claims": 0,
        "avg_confidence": None,
    }
    assert answer.headers["x-ratelimit-remaining"] == "999"


def expect_billingos_track(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    expected = {
        "success": True,
        "feature_key": "api_calls",
        "quantity": 1,
        "recorded_at": iso(NOW),
        "usage": {
            "consumed_units": 1,
            "limit_units": 100000,
            "remaining_units": 99999,
            "period_start": "2026-11-01T00:00:00Z",
            "period_end": "2026-12-01T00:00:00Z",
        },
    }
    assert json.loads(answer.body) == expected
    again = to_answer(run())  # a retry with the same idempotencyKey
    assert json.loads(again.body) == expected
    assert counters(stack.dynamodb, stack.usage_table) == {
        ("DEV#dev_demo", "D#2026-11-25#api_calls"): (Decimal(1), 1),
        ("DEV#dev_demo", "M#2026-11#api_calls"): (Decimal(1), 1),
    }
    records = table_items(stack.dynamodb, stack.idempotency_table)
    assert [r["pk"]["S"] for r in records] == ["dev_demo#api-call-req_01JDQ4Z8K3M5N7P9R1T3V5X7Z9"]


def expect_alerts_stream(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    """79,990 -> 90,010 of pro's 100,000 crosses 80 and 90 %; the refusal flag raises
    usage.limit.reached; the same records again raise nothing more."""
    assert run() == {"batchItemFailures": []}
    claims = {
        i["sk"]["S"]: i["state"]["S"]
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith("A#")
    }
    assert claims == {
        "A#2026-11#api_calls#80": "published",
        "A#2026-11#api_calls#90": "published",
        "A#2026-11#api_calls#limit": "published",
    }
    assert run() == {"batchItemFailures": []}


def expect_webhooks_delivery(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    """The sample's endpoint is a local receiver: one signed delivery, recorded."""
    from usage_meter.domain import webhooks
    from usage_meter.models.alerts import Webhook
    from usage_meter.store import alerts as alert_store
    from usage_meter_admin.listener import Received, Receiver

    got: list[Received] = []
    receiver = Receiver([], got.append).start()
    try:
        hook = Webhook(webhook_id="wh_0123456789abcdef", url=receiver.url, salt="00", created_at=iso(NOW))
        alert_store.put_webhook(hook)
        receiver.secrets.append(webhooks.secret_for(hook))
        assert run() == {"batchItemFailures": []}
    finally:
        receiver.stop()
    assert [r.event["data"]["threshold"] for r in got if r.event is not None] == [80]
    (attempt,) = alert_store.attempts(hook.webhook_id, 10)
    assert (attempt.outcome, attempt.status_code, attempt.attempt) == ("delivered", 204, 1)


def expect_events_list(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    sent = [
        {
            "metric": "api_calls",
            "quantity": 1,
            "idempotencyKey": f"log_{i}",
            "timestamp": iso(NOW - timedelta(minutes=i)),
        }
        for i in range(3)
    ]
    tracked = stack.track({"events": [*sent, {"metric": "tokens", "quantity": 5}]}, developer="dev_demo")
    assert tracked.json()["recorded"] == 4, tracked.body
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    assert [e["idempotencyKey"] for e in body["events"]] == ["log_0", "log_1", "log_2"]  # newest first
    assert {(e["metric"], e["quantity"], e["status"], e["revision"]) for e in body["events"]} == {
        ("api_calls", 1, "recorded", 0)
    }
    assert body["nextCursor"] is None


def expect_events_cancel(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    key = "req_01JDQ4Z8K3M5N7P9R1T3V5X7Z9"
    sent = {"metric": "api_calls", "quantity": 4, "idempotencyKey": key}
    assert stack.track(sent, developer="dev_demo").status == 200
    answer = to_answer(run())
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["status"], body["revision"], body["event"]["status"]) == ("cancelled", 1, "cancelled")
    assert body["event"]["revisions"][0]["reason"] == "reported twice by a retrying job"
    expected = {
        ("DEV#dev_demo", "D#2026-11-25#api_calls"): (Decimal(0), 0),
        ("DEV#dev_demo", "M#2026-11#api_calls"): (Decimal(0), 0),
    }
    assert counters(stack.dynamodb, stack.usage_table) == expected
    again = to_answer(run())  # a retry of the same cancellation changes nothing
    assert (again.status, again.json()["status"]) == (200, "already_cancelled")
    assert counters(stack.dynamodb, stack.usage_table) == expected


EXPECTATIONS: dict[str, Expectation] = {
    "alerts-stream.json": expect_alerts_stream,
    "webhooks-delivery.json": expect_webhooks_delivery,
    "grantex-usage.json": expect_grantex_usage,
    "glyphnet-usage.json": expect_glyphnet_usage,
    "billingos-track.json": expect_billingos_track,
    "meters.json": expect_meters,
    "entitlements.json": expect_entitlements,
    "track-single.json": expect_track_single,
    "track-batch.json": expect_track_batch,
    "track-invalid.json": expect_track_invalid,
    "current.json": expect_current,
    "history.json": expect_history,
    "docs-openapi.json": expect_docs,
    "rollup-schedule.json": expect_rollup,
    "events-list.json": expect_events_list,
    "events-cancel.json": expect_events_cancel,
}


def expect_any(stack: Stack, run: Callable[[], dict[str, Any]]) -> None:
    """A sample nobody wrote an expectation for yet: it must at least get a well-formed answer."""
    result = run()
    assert isinstance(result, dict)
    if "statusCode" in result:
        answer = to_answer(result)
        assert answer.status < 500, answer.body
        if answer.status >= 400:
            error_of(answer)


# ---- tests ---------------------------------------------------------------------------------


def test_the_samples_are_there() -> None:
    assert set(EXPECTATIONS) <= set(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_gets_its_answer(
    name: str,
    stack: Stack,
    freeze: Callable[[datetime], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    freeze(NOW)
    for variable, value in outbox_environment(tmp_path).items():  # the local bus, queue and key
        monkeypatch.setenv(variable, value)
    store_db.reset()
    accounts.create_developer("Demo developer", "pro", DEMO["developerId"])  # as `make dev` seeds it
    event = load_sample(name)
    EXPECTATIONS.get(name, expect_any)(stack, lambda: invoke(event))


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_sample_is_consistent(name: str) -> None:
    """The fields API Gateway derives from one another agree, as in a real event."""
    event = load_sample(name)
    context = event["requestContext"]
    method, template_path = event["routeKey"].split(" ", 1)
    path = event["rawPath"]
    assert event["version"] == "2.0"
    assert context["routeKey"] == event["routeKey"]
    assert (context["http"]["method"], context["http"]["path"]) == (method, path)
    route = http_route(event)
    assert route.path == template_path
    assert route.match(method, path) == event.get("pathParameters", {})
    assert context["stage"] == "$default"
    assert event["isBase64Encoded"] is False
    assert all(header == header.lower() for header in event["headers"])
    assert context["http"]["userAgent"] == event["headers"]["user-agent"]
    assert event["headers"]["x-forwarded-for"] == context["http"]["sourceIp"]
    assert dict(parse_qsl(event["rawQueryString"])) == event.get("queryStringParameters", {})
    moment = datetime.strptime(context["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert context["timeEpoch"] // 1000 == int(moment.timestamp())
    if "body" in event:
        assert int(event["headers"]["content-length"]) == len(event["body"].encode())
        assert event["headers"]["content-type"] == "application/json"
        json.loads(event["body"])


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_sample_carries_the_authorizer_its_route_has(name: str) -> None:
    event = load_sample(name)
    route = http_route(event)
    authorizer = event["requestContext"].get("authorizer")
    if route.authorizer is None:
        assert authorizer is None
    else:
        assert authorizer is not None, f"{route.path} is behind {route.authorizer}"
        assert set(authorizer) == {"lambda"}
        assert authorizer["lambda"]["role"] in ("developer", "service")
        if route.method == "POST":  # only the provider's backend tracks
            assert authorizer["lambda"]["role"] == "service"
        assert authorizer["lambda"]["developerId"]
        assert {"authorization", "x-api-key"} & set(event["headers"])


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_track_samples_never_go_stale(name: str) -> None:
    """Without timestamps the events are "now" whenever they are sent (35-day backdating window)."""
    event = load_sample(name)
    if "body" not in event:
        return
    body = json.loads(event["body"])
    items = body.get("events", [body]) if isinstance(body, dict) else []
    assert all("timestamp" not in item for item in items if isinstance(item, dict))


def _shape(event: dict[str, Any]) -> dict[str, dict[str, str]]:
    context = event["requestContext"]
    return {
        "top": {key: type(value).__name__ for key, value in event.items()},
        "requestContext": {key: type(value).__name__ for key, value in context.items()},
        "http": {key: type(value).__name__ for key, value in context["http"].items()},
        "authorizer": {key: type(value).__name__ for key, value in context.get("authorizer", {}).items()},
    }


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_built_events_have_the_shape_of_the_samples(name: str) -> None:
    """The local gateway and the tests build events like the samples (and API Gateway)."""
    sample = load_sample(name)
    method = sample["routeKey"].split(" ", 1)[0]
    authorizer = sample["requestContext"].get("authorizer", {}).get("lambda")
    built = http_event(
        method,
        sample["rawPath"],
        path_parameters=sample.get("pathParameters"),
        body=sample.get("body"),
        headers=sample["headers"],
        query=sample.get("queryStringParameters"),
        authorizer=authorizer,
        route_key=sample["routeKey"],
    )
    assert _shape(built) == _shape(sample)
    assert built["rawQueryString"] == sample["rawQueryString"]
    assert built["requestContext"].get("authorizer") == sample["requestContext"].get("authorizer")


def test_no_stray_files_in_events() -> None:
    """Only JSON samples live in events/ (they are what the parametrized tests pick up)."""
    stray = [p.name for p in Path(EVENTS_DIR).iterdir() if p.suffix != ".json"]
    assert stray == []
