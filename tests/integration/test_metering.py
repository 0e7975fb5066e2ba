"""@meter against moto: the example provider API and decorated handlers, counters in DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

import usage_meter_metering as metering
from usage_meter.domain import accounts, tracking
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.models.wire import ErrorDetail, EventResult, TrackResponse
from usage_meter.store import accounts as account_store
from usage_meter_local.events import LambdaContext, http_event
from usage_meter_local.handlers import Handler, load_handler
from usage_meter_local.template import ROOT, load
from usage_meter_metering import meter

from helpers import DEV_A, DEV_B, counters, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
EXAMPLE = "examples/metered_api"
WEIGHTED_ISSUE_EXPRESSION = "respBody.model == 'large' ? respBody.tokens * 2 : respBody.tokens"


@pytest.fixture(autouse=True)
def _noon(freeze: Freeze) -> None:
    freeze(NOON)


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The metering module's structured warnings, as {message, **extra}."""
    warnings: list[dict[str, Any]] = []

    def capture(message: str, *args: Any, extra: dict[str, Any] | None = None, **kwargs: Any) -> None:
        warnings.append({"message": message, **(extra or {})})

    monkeypatch.setattr(metering.logger, "warning", capture)
    return warnings


def usage(stack: Stack, developer: str, metric: str) -> tuple[Decimal, int] | None:
    """The month counter (and, checked equal, the day counter) of one metric."""
    found = counters(stack.dynamodb, stack.usage_table)
    month: tuple[Decimal, int] | None = found.get((f"DEV#{developer}", f"M#2026-11#{metric}"))
    assert found.get((f"DEV#{developer}", f"D#2026-11-10#{metric}")) == month
    return month


def request(
    path: str = "/v1/completions",
    body: Any = None,
    auth: dict[str, Any] | None = DEV_A,
    method: str = "POST",
) -> dict[str, Any]:
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return http_event(
        method,
        path,
        body=text,
        headers={"content-type": "application/json"},
        authorizer=auth,
        route_key=f"{method} {path}",
    )


def invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, LambdaContext("metered"))


def returning(response: Any) -> Handler:
    """A provider handler that answers `response` whatever the request."""

    def handler(event: dict[str, Any], context: Any) -> Any:
        return response

    return handler


def json_response(payload: Any, status: int = 200) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }


# ---- the example provider function -----------------------------------------------------------


def test_example_counts_calls_and_weighted_tokens(stack: Stack) -> None:
    handler = load_handler(EXAMPLE, "app.lambda_handler")

    small = invoke(handler, request(body={"prompt": "one two three", "model": "small"}))
    large = invoke(handler, request(body={"prompt": "four five", "model": "large"}))

    assert small["statusCode"] == large["statusCode"] == 200
    assert json.loads(small["body"])["usage"]["total_tokens"] == 6  # the answer is the handler's own
    assert usage(stack, "dev_alice", "api_calls") == (Decimal(2), 2)
    assert usage(stack, "dev_alice", "tokens") == (Decimal(3 + 2 * 2), 2)  # large counts double


def test_example_event_json_counts_once_however_often_invoked(stack: Stack) -> None:
    accounts.create_developer("Demo", "pro", "dev_demo")
    handler = load_handler(EXAMPLE, "app.lambda_handler")
    sample = json.loads((ROOT / EXAMPLE / "event.json").read_text())

    first = invoke(handler, json.loads(json.dumps(sample)))
    retry = invoke(handler, json.loads(json.dumps(sample)))  # same requestId: a retried invocation

    assert first == retry
    assert first["statusCode"] == 200
    assert usage(stack, "dev_demo", "api_calls") == (Decimal(1), 1)
    assert usage(stack, "dev_demo", "tokens") == (Decimal(10), 1)  # 5 words, large model: 5 * 2
    keys = {item["pk"]["S"] for item in table_items(stack.dynamodb, stack.idempotency_table)}
    request_id = sample["requestContext"]["requestId"]
    assert keys == {f"dev_demo#{request_id}:api_calls", f"dev_demo#{request_id}:tokens"}


def test_example_stream_counts_server_sent_events(stack: Stack) -> None:
    handler = load_handler(EXAMPLE, "app.stream_handler")

    answer = invoke(handler, request("/v1/completions/stream", {"prompt": "a b c d"}))

    assert answer["headers"]["content-type"] == "text/event-stream"
    assert answer["body"].count("data:") == 4
    assert usage(stack, "dev_alice", "stream_events") == (Decimal(4), 1)


def test_example_bad_request_is_not_metered(stack: Stack, logged: list[dict[str, Any]]) -> None:
    handler = load_handler(EXAMPLE, "app.lambda_handler")

    answer = invoke(handler, request(body={"model": "small"}))

    assert answer["statusCode"] == 400
    assert usage(stack, "dev_alice", "api_calls") is None
    assert logged == []  # a filtered status is expected, not a warning


# ---- every mode ---------------------------------------------------------------------------------


def test_request_mode(stack: Stack) -> None:
    handler = meter(metric="api_calls")(returning(json_response({"ok": True})))
    for _ in range(3):
        invoke(handler, request())
    assert usage(stack, "dev_alice", "api_calls") == (Decimal(3), 3)


def test_bytes_mode_kib_and_exact_fraction(stack: Stack) -> None:
    body = {"statusCode": 200, "body": "x" * 2560}
    whole = meter(metric="kib", mode="bytes", expression="responseBytes / 1024")(returning(body))
    exact = meter(metric="kib_exact", mode="bytes", expression="double(responseBytes) / 1024.0")(
        returning(body)
    )
    upload = meter(metric="upload_bytes", mode="bytes", expression="requestBytes")(returning(body))

    invoke(whole, request())
    invoke(exact, request())
    invoke(upload, request(body="y" * 300))

    assert usage(stack, "dev_alice", "kib") == (Decimal(2), 1)  # CEL int division
    assert usage(stack, "dev_alice", "kib_exact") == (Decimal("2.5"), 1)
    assert usage(stack, "dev_alice", "upload_bytes") == (Decimal(300), 1)


def test_response_field_mode(stack: Stack) -> None:
    handler = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")(
        returning(json_response({"usage": {"total_tokens": 1234}}))
    )
    invoke(handler, request())
    assert usage(stack, "dev_alice", "tokens") == (Decimal(1234), 1)


def test_response_field_decimal_is_exact(stack: Stack) -> None:
    handler = meter(metric="credits", mode="response_field", expression="respBody.cost")(
        returning({"statusCode": 200, "body": '{"cost": 0.000000123}'})
    )
    invoke(handler, request())
    invoke(handler, request())
    assert usage(stack, "dev_alice", "credits") == (Decimal("0.000000246"), 2)


def test_custom_mode_issue_expression(stack: Stack) -> None:
    handler = meter(metric="tokens", mode="custom", expression=WEIGHTED_ISSUE_EXPRESSION)(
        lambda event, context: json_response(json.loads(event["body"]))
    )
    invoke(handler, request(body={"model": "large", "tokens": 10}))
    invoke(handler, request(body={"model": "small", "tokens": 10}))
    assert usage(stack, "dev_alice", "tokens") == (Decimal(30), 2)


def test_custom_mode_over_request_facts(stack: Stack) -> None:
    expression = "method == 'POST' && path.startsWith('/v1/images') ? requestBytes : 1"
    handler = meter(metric="units", mode="custom", expression=expression)(returning(json_response({})))
    invoke(handler, request("/v1/images/upload", body="z" * 50))
    invoke(handler, request("/v1/text", method="GET"))
    assert usage(stack, "dev_alice", "units") == (Decimal(51), 2)


def test_sse_mode_all_data(stack: Stack) -> None:
    stream = {
        "statusCode": 200,
        "headers": {"Content-Type": "text/event-stream"},
        "body": "data: Hello\n\n: ping\n\ndata: , world\n\ndata: [DONE]\n\n",
    }
    events = meter(metric="chunks", mode="sse")(returning(stream))
    chars = meter(metric="chars", mode="sse", expression="size(allData) - size('[DONE]')")(returning(stream))

    invoke(events, request())
    invoke(chars, request())

    assert usage(stack, "dev_alice", "chunks") == (Decimal(3), 1)
    assert usage(stack, "dev_alice", "chars") == (Decimal(len("Hello, world")), 1)


# ---- what records nothing --------------------------------------------------------------------


def test_response_without_the_field_records_nothing_and_warns(
    stack: Stack, logged: list[dict[str, Any]]
) -> None:
    original = json_response({"usage": {"prompt_tokens": 3}, "secret": "do-not-log-me"})
    handler = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")(
        returning(original)
    )

    answer = invoke(handler, request())

    assert answer is original  # the provider's response, untouched
    assert usage(stack, "dev_alice", "tokens") is None
    (warning,) = logged
    assert warning["reason"] == "expression_failed"
    assert warning["errorType"] == "KeyError"
    assert warning["metric"] == "tokens"
    assert warning["developerId"] == "dev_alice"
    assert warning["expression"] == "respBody.usage.total_tokens"
    assert "do-not-log-me" not in json.dumps(logged)


def test_500_is_not_metered_by_default(stack: Stack) -> None:
    failing = returning(json_response({"error": "boom", "usage": {"total_tokens": 9}}, status=500))
    default = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")(failing)
    everything = meter(
        metric="tokens_all",
        mode="response_field",
        expression="respBody.usage.total_tokens",
        statuses=range(100, 600),
    )(failing)

    assert invoke(default, request())["statusCode"] == 500
    invoke(everything, request())

    assert usage(stack, "dev_alice", "tokens") is None
    assert usage(stack, "dev_alice", "tokens_all") == (Decimal(9), 1)


def test_non_positive_and_non_numeric_results_record_nothing(
    stack: Stack, logged: list[dict[str, Any]]
) -> None:
    zero = meter(metric="kib", mode="bytes", expression="responseBytes / 1024")(returning(json_response({})))
    text = meter(metric="label", mode="response_field", expression="respBody.model")(
        returning(json_response({"model": "small"}))
    )

    invoke(zero, request())
    invoke(text, request())

    assert usage(stack, "dev_alice", "kib") is None
    assert usage(stack, "dev_alice", "label") is None
    assert [w["reason"] for w in logged] == ["non_positive", "not_a_number"]


def test_bad_expression_fails_at_decoration() -> None:
    with pytest.raises(metering.MeteringConfigError, match="does not compile"):
        meter(metric="tokens", mode="custom", expression="respBody.model == 'large' ? respBody.tokens")


def test_handler_error_propagates_unmetered(stack: Stack) -> None:
    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("provider bug")

    handler = meter(metric="api_calls")(broken)
    with pytest.raises(RuntimeError, match="provider bug"):
        invoke(handler, request())
    assert usage(stack, "dev_alice", "api_calls") is None


def test_metering_failure_never_breaks_the_response(
    stack: Stack, logged: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("DynamoDB unreachable")

    monkeypatch.setattr(metering.decorator, "track", unavailable)
    original = json_response({"ok": True})
    answer = invoke(meter(metric="api_calls")(returning(original)), request())

    assert answer is original
    assert logged[-1]["reason"] == "metering_failed"
    assert logged[-1]["errorType"] == "ConnectionError"


def test_stacked_meters_wait_for_an_outage_once(
    stack: Stack, logged: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB unreachable: the first meter's track gives up (temporarily_unavailable, after
    its ~2 s of tries), and the meters stacked on the same request skip at once instead of
    each waiting as long; the next request tries again."""
    tried: list[str] = []
    busy = ErrorDetail(code="temporarily_unavailable", message="DynamoDB could not be reached")

    def unavailable(identity: Any, body: Any) -> TrackResponse:
        tried.append(body.events[0]["metric"])
        result = EventResult(index=0, status="rejected", idempotency_key="k", error=busy)
        return TrackResponse(results=[result], recorded=0, duplicates=0, rejected=1)

    monkeypatch.setattr(metering.decorator, "track", unavailable)
    original = json_response({"ok": True})
    stacked = meter(metric="api_calls")(
        meter(metric="tokens", mode="custom", expression="1")(returning(original))
    )

    assert invoke(stacked, request()) is original
    assert tried == ["tokens"]  # the inner meter tried; the outer one did not wait again
    outcomes = [(e.get("metric"), e.get("reason"), e.get("code"), e.get("waited")) for e in logged[-2:]]
    assert outcomes == [
        ("tokens", "rejected", "temporarily_unavailable", None),
        ("api_calls", "rejected", "temporarily_unavailable", False),
    ]

    invoke(stacked, request())  # another request: DynamoDB is tried again
    assert tried == ["tokens", "tokens"]


REFUSED_CALLERS: dict[str, tuple[dict[str, Any] | None, str]] = {
    "no-authorizer-context": (None, "missing API key"),
    "missing-key": ({"authError": "missing_key"}, "missing API key"),
    "malformed-key": ({"authError": "malformed_key"}, "malformed API key"),
    "unknown-key": ({"authError": "unknown_key"}, "unknown API key"),
    "revoked-key": ({"authError": "revoked_key"}, "revoked API key"),
    "no-developer-id": ({"role": "developer"}, "missing API key"),
    "malformed-developer-id": ({"developerId": "dev#x", "role": "developer"}, "malformed developer id"),
}


@pytest.mark.parametrize(("auth", "message"), REFUSED_CALLERS.values(), ids=REFUSED_CALLERS)
def test_refused_caller_gets_401_and_the_handler_never_runs(
    stack: Stack, auth: dict[str, Any] | None, message: str
) -> None:
    """The Usage Meter authorizer never denies at API Gateway (it passes authError on, so that
    the answer can carry the API's error body): @meter refuses before the provider's code runs."""
    served: list[Any] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        served.append(event)
        return json_response({"answer": "paid content"})

    answer = invoke(meter(metric="api_calls")(handler), request(auth=auth))

    assert answer["statusCode"] == 401
    assert answer["headers"] == {"content-type": "application/json"}
    assert json.loads(answer["body"]) == {"error": {"code": "unauthorized", "message": message}}
    assert served == []
    assert counters(stack.dynamodb, stack.usage_table) == {}


@pytest.mark.parametrize("auth", [None, {"authError": "revoked_key"}])
def test_example_refuses_callers_without_a_valid_key(stack: Stack, auth: dict[str, Any] | None) -> None:
    for name, path in (
        ("app.lambda_handler", "/v1/completions"),
        ("app.stream_handler", "/v1/completions/stream"),
    ):
        handler = load_handler(EXAMPLE, name)
        answer = invoke(handler, request(path, {"prompt": "free tokens please", "model": "large"}, auth=auth))
        assert answer["statusCode"] == 401, name
        assert json.loads(answer["body"])["error"]["code"] == "unauthorized"
        assert "free" not in answer["body"]
    assert counters(stack.dynamodb, stack.usage_table) == {}
    assert table_items(stack.dynamodb, stack.idempotency_table) == []


def test_authenticated_guards_an_unmetered_route_the_same_way(stack: Stack) -> None:
    served: list[str] = []

    @metering.authenticated()
    def models(event: dict[str, Any], context: Any) -> dict[str, Any]:
        served.append(event["requestContext"]["authorizer"]["lambda"]["developerId"])
        return json_response({"models": ["small", "large"]})

    for auth in (None, {"authError": "unknown_key"}, {"role": "developer"}):
        refused = invoke(models, request("/v1/models", method="GET", auth=auth))
        assert refused["statusCode"] == 401
        assert json.loads(refused["body"])["error"]["code"] == "unauthorized"
    assert served == []

    assert invoke(models, request("/v1/models", method="GET"))["statusCode"] == 200
    assert served == ["dev_alice"]
    assert counters(stack.dynamodb, stack.usage_table) == {}  # guarded, not metered


def test_record_without_a_developer_records_nothing(stack: Stack, logged: list[dict[str, Any]]) -> None:
    config = meter(metric="api_calls")(returning(json_response({}))).meter  # type: ignore[attr-defined]
    assert config.record(request(auth=None), json_response({})) is None
    assert counters(stack.dynamodb, stack.usage_table) == {}
    assert logged[-1]["reason"] == "no_developer"


def test_unknown_developer_is_not_counted(stack: Stack, logged: list[dict[str, Any]]) -> None:
    """The service side names the developer, and the track path checks that it exists."""
    answer = invoke(
        meter(metric="api_calls")(returning(json_response({}))),
        request(auth={"developerId": "dev_nobody", "role": "developer"}),
    )
    assert answer["statusCode"] == 200
    assert counters(stack.dynamodb, stack.usage_table) == {}
    assert (logged[-1]["reason"], logged[-1]["code"]) == ("rejected", "developer_not_found")


def test_hard_limit_refusal_is_logged_and_the_response_stands(
    stack: Stack, logged: list[dict[str, Any]]
) -> None:
    account_store.put_plan(
        Plan(name="pro", metrics={"api_calls": MetricLimit(limit=Decimal(1), enforcement="hard")})
    )
    handler = meter(metric="api_calls")(returning(json_response({"ok": True})))

    invoke(handler, request())
    second = invoke(handler, request())

    assert second["statusCode"] == 200  # metering after the fact does not refuse; entitlements do
    assert usage(stack, "dev_alice", "api_calls") == (Decimal(1), 1)
    assert logged[-1]["reason"] == "limit_exceeded"


# ---- exactly once --------------------------------------------------------------------------------


def test_retried_invocation_with_the_same_request_id_counts_once(stack: Stack) -> None:
    handler = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")(
        returning(json_response({"usage": {"total_tokens": 50}}))
    )
    event = request()
    statuses = [handler.meter.record(event, handler(event, None)) for _ in range(3)]  # type: ignore[attr-defined]

    assert statuses == ["duplicate", "duplicate", "duplicate"]  # the wrapper itself recorded first
    assert usage(stack, "dev_alice", "tokens") == (Decimal(50), 1)


def test_retry_with_a_different_answer_keeps_the_first_count(
    stack: Stack, logged: list[dict[str, Any]]
) -> None:
    answers = iter([{"usage": {"total_tokens": 50}}, {"usage": {"total_tokens": 70}}])
    handler = meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")(
        lambda event, context: json_response(next(answers))
    )
    event = request()

    invoke(handler, event)
    invoke(handler, event)

    assert usage(stack, "dev_alice", "tokens") == (Decimal(50), 1)
    assert logged[-1]["reason"] == "rejected"
    assert logged[-1]["code"] == "idempotency_key_reused"


def test_request_ids_are_scoped_per_developer(stack: Stack) -> None:
    handler = meter(metric="api_calls")(returning(json_response({})))
    alice, bob = request(), request(auth=DEV_B)
    bob["requestContext"]["requestId"] = alice["requestContext"]["requestId"]

    invoke(handler, alice)
    invoke(handler, bob)

    assert usage(stack, "dev_alice", "api_calls") == (Decimal(1), 1)
    assert usage(stack, "dev_bob", "api_calls") == (Decimal(1), 1)


def _jwt_subject(event: dict[str, Any]) -> str | None:
    """The subject of a JWT that API Gateway's own JWT authorizer verified (never a header the
    caller writes)."""
    claims = event["requestContext"].get("authorizer", {}).get("jwt", {}).get("claims", {})
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None


def test_developer_from_a_callable(stack: Stack) -> None:
    handler = meter(metric="api_calls", developer=_jwt_subject)(returning(json_response({})))
    event = request(auth=None)
    event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "dev_bob"}, "scopes": None}}

    answer = invoke(handler, event)

    assert answer["statusCode"] == 200
    assert usage(stack, "dev_bob", "api_calls") == (Decimal(1), 1)


@pytest.mark.parametrize(
    "source", [lambda event: None, lambda event: event["no such field"], lambda event: 7]
)
def test_developer_callable_without_an_answer_refuses(stack: Stack, source: Any) -> None:
    served: list[Any] = []
    handler = meter(metric="api_calls", developer=source)(lambda event, context: served.append(event))

    answer = invoke(handler, request())

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"
    assert served == []
    assert counters(stack.dynamodb, stack.usage_table) == {}


def test_stacked_meters_use_one_key_per_metric(stack: Stack) -> None:
    handler = meter(metric="api_calls")(
        meter(metric="kib", mode="bytes", expression="double(responseBytes) / 1024.0")(
            returning({"statusCode": 200, "body": "x" * 512})
        )
    )
    event = request()
    invoke(handler, event)
    invoke(handler, event)

    assert usage(stack, "dev_alice", "api_calls") == (Decimal(1), 1)
    assert usage(stack, "dev_alice", "kib") == (Decimal("0.5"), 1)


def test_track_metrics_still_recorded_through_the_same_path(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real_track = tracking.track

    def spy(identity: Any, body: Any, **kwargs: Any) -> Any:
        calls.append((identity, body))
        return real_track(identity, body, **kwargs)

    monkeypatch.setattr(metering.decorator, "track", spy)
    invoke(meter(metric="api_calls")(returning(json_response({}))), request())

    ((identity, body),) = calls
    assert identity.role == "service"  # the provider's own function: the service side
    (item,) = body.events
    assert item["developerId"] == "dev_alice"
    assert item["metric"] == "api_calls"
    assert item["quantity"] == 1
    assert item["idempotencyKey"].endswith(":api_calls")
    assert item["metadata"] == {"meter": "request", "routeKey": "POST /v1/completions"}


def test_example_template_routes_to_metered_handlers() -> None:
    template = load(ROOT / EXAMPLE / "template.yaml")
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {"CompletionsFunction", "StreamFunction"}
    for properties in functions.values():
        handler = load_handler(EXAMPLE, properties["Handler"])
        assert isinstance(handler.meter, metering.Meter)  # type: ignore[attr-defined]
    layer = template["Resources"]["MeteringLayer"]["Properties"]["ContentUri"]
    requirements = (ROOT / EXAMPLE / layer / "requirements.txt").resolve().read_text()
    assert "common-expression-language==" in requirements
