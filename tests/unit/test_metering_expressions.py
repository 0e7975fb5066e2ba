"""@meter's expressions, inputs and quantities, without DynamoDB: compile, evaluate, convert."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest

import usage_meter_metering as metering
from usage_meter_local.events import http_event
from usage_meter_metering import (
    VARIABLES,
    Exchange,
    Meter,
    MeteringConfigError,
    Skip,
    code_only,
    compile_expression,
    developer_from_authorizer,
    parse_sse,
    to_quantity,
)

WEIGHTED = "respBody.model == 'large' ? respBody.tokens * 2 : respBody.tokens"


def event(body: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return http_event(
        "POST",
        "/v1/completions",
        body=body,
        authorizer={"developerId": "dev_alice", "role": "developer"},
        **kwargs,
    )


def response(
    body: str | None, status: int = 200, content_type: str = "application/json", **extra: Any
) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": content_type}, "body": body, **extra}


def quantity(
    mode: metering.Mode, expression: str | None, resp: Any, request_body: str | None = None
) -> Decimal:
    return Meter(metric="m", mode=mode, expression=expression).quantity(event(request_body), resp)


def skip_reason(mode: metering.Mode, expression: str | None, resp: Any) -> tuple[str, dict[str, Any]]:
    with pytest.raises(Skip) as caught:
        quantity(mode, expression, resp)
    return caught.value.reason, caught.value.fields


# ---- the example expressions ---------------------------------------------------------


def test_request_mode_is_one_per_request() -> None:
    assert quantity("request", None, response("{}")) == 1


def test_bytes_integer_division_follows_cel() -> None:
    # CEL's int / int is integer division: 2,500 bytes are 2 (whole) KiB
    assert quantity("bytes", "responseBytes / 1024", response("x" * 2500)) == 2


def test_bytes_as_double_is_exact_decimal() -> None:
    assert quantity("bytes", "double(responseBytes) / 1024.0", response("x" * 2500)) == Decimal("2.44140625")


def test_bytes_default_is_response_bytes_utf8() -> None:
    assert quantity("bytes", None, response("héllo")) == 6


def test_request_bytes() -> None:
    assert quantity("bytes", "requestBytes + responseBytes", response("ab"), request_body="abcd") == 6


def test_response_field() -> None:
    body = json.dumps({"usage": {"total_tokens": 42}})
    assert quantity("response_field", "respBody.usage.total_tokens", response(body)) == 42


def test_custom_weighted_tokens_both_branches() -> None:
    assert quantity("custom", WEIGHTED, response(json.dumps({"model": "large", "tokens": 10}))) == 20
    assert quantity("custom", WEIGHTED, response(json.dumps({"model": "small", "tokens": 10}))) == 10


def test_custom_sees_status_path_method() -> None:
    expr = "method == 'POST' && path == '/v1/completions' && status == 201 ? 5 : 1"
    assert quantity("custom", expr, response("{}", status=201)) == 5


def test_sse_events_and_all_data() -> None:
    stream = response("data: one\n\ndata: two\n\n: keep-alive\n\n", content_type="text/event-stream")
    assert quantity("sse", None, stream) == 2
    assert quantity("sse", "size(allData)", stream) == 6


def test_decimal_field_goes_through_repr() -> None:
    assert quantity("response_field", "respBody.cost", response('{"cost": 0.1}')) == Decimal("0.1")
    assert quantity("response_field", "respBody.a + respBody.b", response('{"a": 0.1, "b": 0.2}')) == Decimal(
        "0.3"
    )


# ---- evaluation failures record nothing ------------------------------------------------------


def test_missing_field_is_a_skip_with_a_hint() -> None:
    reason, fields = skip_reason("response_field", "respBody.usage.total_tokens", response('{"usage": {}}'))
    assert reason == "expression_failed"
    assert fields["errorType"] == "KeyError"
    assert fields["respBodyIsJson"] is True


def test_non_json_body_is_null() -> None:
    reason, fields = skip_reason(
        "response_field", "respBody.tokens", response("not json", content_type="text/plain")
    )
    assert reason == "expression_failed"
    assert fields["respBodyIsJson"] is False
    # an expression may handle the null itself
    assert quantity("response_field", "respBody == null ? 1 : 2", response("<html>")) == 1


def test_type_mismatch_is_a_skip() -> None:
    reason, fields = skip_reason("bytes", "responseBytes / 1024.0", response("x"))
    assert (reason, fields["errorType"]) == ("expression_failed", "TypeError")


def test_zero_negative_string_bool_results_record_nothing() -> None:
    assert skip_reason("bytes", "responseBytes / 1024", response("small"))[0] == "non_positive"
    assert skip_reason("response_field", "respBody.n", response('{"n": -3}'))[0] == "non_positive"
    assert skip_reason("response_field", "respBody.s", response('{"s": "12"}')) == (
        "not_a_number",
        {"resultType": "str"},
    )
    assert skip_reason("response_field", "respBody.n > 0", response('{"n": 3}')) == (
        "not_a_number",
        {"resultType": "bool"},
    )


def test_error_messages_with_response_values_are_not_logged() -> None:
    _, fields = skip_reason("response_field", "respBody.n * 2", response('{"n": 9223372036854775807}'))
    assert fields["errorType"] == "OverflowError"
    assert "9223372036854775807" not in json.dumps(fields)


def test_failed_evaluation_never_raises_from_record(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(metering.logger, "warning", lambda msg, extra=None: logged.append(extra or {}))
    config = Meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")
    secret = "um_live_SecretSecretSecretSecretSecret12"
    assert config.record(event(), response(json.dumps({"usage": {}, "note": secret}))) is None
    assert logged[-1]["reason"] == "expression_failed"
    assert secret not in json.dumps(logged)


# ---- decoration-time errors ------------------------------------------------------------------


def test_syntax_error_is_clear_at_decoration() -> None:
    with pytest.raises(MeteringConfigError, match=r"does not compile") as caught:
        metering.meter(metric="tokens", mode="custom", expression="respBody.tokens +* 2")
    assert "^" in str(caught.value)  # CEL's position marker
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("mode", "expression", "message"),
    [
        ("bytes", "respBytes / 1024", "reads respBytes"),
        ("bytes", "respBody.size", "reads respBody"),
        ("response_field", "status", "reads status"),
        ("custom", "respBody.items.map(x, x.n)", "comprehension macro map"),
        ("custom", "respBody.items.filter(x, x.ok) == []", "comprehension macro filter"),
        ("custom", "respBody.items.exists(x, x.ok) ? 2 : 1", "comprehension macro exists"),
        ("custom", "respBody.items.all(x, x.ok) ? 2 : 1", "comprehension macro all"),
        ("custom", "respBody.items . exists_one (x, x.ok) ? 2 : 1", "comprehension macro exists_one"),
        ("custom", "1 + " * 300 + "1", "at most 1024 characters"),
        ("custom", "   ", "non-empty"),
        ("response_field", None, "needs an expression"),
        ("custom", None, "needs an expression"),
        ("request", "1", "takes no expression"),
    ],
)
def test_bad_configurations(mode: metering.Mode, expression: str | None, message: str) -> None:
    with pytest.raises(MeteringConfigError, match=message):
        Meter(metric="m", mode=mode, expression=expression)


@pytest.mark.parametrize("metric", ["9tokens", "tokens\n", "tokens\r\n", "\ntokens", "tokens x", ""])
def test_bad_metric_is_refused_when_applied(metric: str) -> None:
    """The whole name must match: `re.match` with `$` let "tokens\\n" through, and the track
    path then refused every event, so nothing was ever recorded and nothing said why."""
    with pytest.raises(MeteringConfigError, match="does not match"):
        Meter(metric=metric)


def test_bad_mode() -> None:
    with pytest.raises(MeteringConfigError, match="is not one of"):
        Meter(metric="m", mode="tokens")  # type: ignore[arg-type]


def test_macro_names_in_strings_and_comments_are_not_calls() -> None:
    compile_expression("respBody.kind == '.map(x' ? 1 : 2", VARIABLES["custom"])
    compile_expression('respBody.kind == """.filter(""" ? 1 : 2 // .all(x, x)\n', VARIABLES["custom"])
    compile_expression(r"respBody.kind == r'\' + '.exists(' ? 1 : 2", VARIABLES["custom"])


def test_code_only_blanks_literals_and_comments_keeping_positions() -> None:
    source = 'a + \'x.map(\' // .all(\n+ b"q\\""'
    blanked = code_only(source)
    assert len(blanked) == len(source)
    assert ".map(" not in blanked
    assert ".all(" not in blanked
    assert blanked.startswith("a + ")
    assert "+ b" in blanked


# ---- quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, Decimal(1)),
        (10**12, Decimal(10**12)),
        (2.5, Decimal("2.5")),
        (0.1 + 0.2, Decimal("0.3")),
        (1.0000000005, Decimal("1.000000001")),  # half up at the 9th place
        (1e-9, Decimal("1E-9")),
        (3.0, Decimal(3)),
    ],
)
def test_to_quantity(value: Any, expected: Decimal) -> None:
    quantity = to_quantity(value)
    assert quantity == expected
    assert quantity.as_tuple().exponent >= -9  # type: ignore[operator]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "non_positive"),
        (-1, "non_positive"),
        (4e-10, "non_positive"),  # rounds to 0 at 9 places
        (10**12 + 1, "too_large"),
        (1e12 + 0.5, "too_large"),
        (1e300, "too_large"),
        (float("nan"), "not_a_number"),
        (float("inf"), "not_a_number"),
        (True, "not_a_number"),
        ("3", "not_a_number"),
        (None, "not_a_number"),
        ([1], "not_a_number"),
        (b"1", "not_a_number"),
    ],
)
def test_to_quantity_refuses(value: Any, reason: str) -> None:
    with pytest.raises(Skip) as caught:
        to_quantity(value)
    assert caught.value.reason == reason


# ---- server-sent events ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "events", "data"),
    [
        ("data: a\n\ndata: b\n\n", 2, "ab"),
        ("data: a\r\n\r\ndata: b\r\r", 2, "ab"),  # CRLF and CR line ends
        ("data: a\ndata: b\n\n", 1, "a\nb"),  # one event, two data lines
        (": comment\n\nevent: ping\nid: 7\n\ndata: x\n\n", 1, "x"),  # blocks without data
        ("data: a\n\ndata: never finished\n", 1, "a"),  # not dispatched without a blank line
        ("data\n\n", 1, ""),  # a data field with no value is still an event
        ("data:x\n\ndata:  y\n\n", 2, "x y"),  # one leading space is stripped
        ("\ufeffdata: bom\n\n", 1, "bom"),
        ("", 0, ""),
        ('data: {"t": 1}\n\ndata: [DONE]\n\n', 2, '{"t": 1}[DONE]'),
    ],
)
def test_parse_sse(text: str, events: int, data: str) -> None:
    assert parse_sse(text) == (events, data)


def test_sse_variables_are_zero_for_json_and_body_null_for_streams() -> None:
    assert skip_reason("sse", None, response('{"a": 1}'))[0] == "non_positive"
    stream = response("data: {}\n\n", content_type="text/event-stream; charset=utf-8")
    assert quantity("custom", "respBody == null ? sseEvents : 0", stream) == 1


# ---- what the expression sees ----------------------------------------------------------------


def test_base64_bodies_are_counted_decoded() -> None:
    raw = bytes(range(256)) * 8
    resp = response(
        base64.b64encode(raw).decode(), content_type="application/octet-stream", isBase64Encoded=True
    )
    assert quantity("bytes", None, resp) == 2048


def test_result_without_status_code_is_a_200_json_body() -> None:
    exchange = Exchange.of(event(), {"usage": {"total_tokens": 7}})
    assert exchange.status == 200
    assert quantity("response_field", "respBody.usage.total_tokens", {"usage": {"total_tokens": 7}}) == 7


def test_multi_value_content_type() -> None:
    resp = {
        "statusCode": 200,
        "multiValueHeaders": {"Content-Type": ["text/event-stream"]},
        "body": "data: a\n\n",
    }
    assert quantity("sse", None, resp) == 1


def test_large_bodies_are_not_read_but_still_measured() -> None:
    big = json.dumps({"tokens": 5, "pad": "x" * (metering.MAX_BODY_BYTES + 1)})
    assert skip_reason("response_field", "respBody.tokens", response(big))[0] == "body_too_large"
    assert quantity("bytes", None, response(big)) == len(big)
    small_limit = Meter(metric="m", mode="response_field", expression="respBody.tokens", max_body_bytes=10)
    with pytest.raises(Skip, match="body_too_large"):
        small_limit.quantity(event(), response('{"tokens": 5}'))


def test_deep_json_is_refused_before_the_engine() -> None:
    deep = "[" * (metering.MAX_JSON_DEPTH + 1) + "]" * (metering.MAX_JSON_DEPTH + 1)
    assert skip_reason("response_field", "size(respBody)", response(deep))[0] == "body_too_deep"
    ok = "[" * metering.MAX_JSON_DEPTH + "]" * metering.MAX_JSON_DEPTH
    assert quantity("custom", "size(respBody) + 1", response(ok)) == 2


def test_too_many_selected_values_are_refused_before_the_engine() -> None:
    many = json.dumps({"tokens": 5, "items": list(range(metering.MAX_JSON_VALUES))})
    assert skip_reason("response_field", "size(respBody.items)", response(many))[0] == "body_too_large"
    # only the selected members count: the same body is fine for another field
    assert quantity("response_field", "respBody.tokens", response(many)) == 5


def test_body_is_parsed_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(Exchange, "resp_body", fail)
    monkeypatch.setattr(Exchange, "sse", fail)
    assert quantity("bytes", None, response('{"a": 1}')) == 8
    assert quantity("custom", "status == 200 ? 3 : 1", response('{"a": 1}')) == 3


def test_slow_evaluation_is_logged_and_still_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(metering.decorator, "SLOW_EVALUATION_SECONDS", -1.0)
    monkeypatch.setattr(metering.logger, "warning", lambda msg, extra=None: logged.append(extra or {}))
    assert quantity("bytes", None, response("abc")) == 3
    assert logged[0]["reason"] == "slow_evaluation"
    assert logged[0]["evaluationMs"] >= 0


# ---- which developer ------------------------------------------------------------------------


def test_developer_from_authorizer() -> None:
    assert developer_from_authorizer(event()) == "dev_alice"
    assert developer_from_authorizer(http_event("GET", "/")) is None
    assert (
        developer_from_authorizer({"requestContext": {"authorizer": {"lambda": {"developerId": 7}}}}) is None
    )
    assert developer_from_authorizer({"requestContext": "x"}) is None
    assert developer_from_authorizer({}) is None


def test_status_filter_and_missing_developer_record_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(metering.logger, "warning", lambda msg, extra=None: logged.append(extra or {}))
    config = Meter(metric="api_calls")
    assert config.record(event(), response("{}", status=500)) is None
    assert logged == []  # a filtered status is not a warning
    assert config.record(http_event("GET", "/"), response("{}")) is None
    assert logged[-1]["reason"] == "no_developer"
    anonymous = http_event("GET", "/", authorizer={"developerId": "dev_alice"})
    del anonymous["requestContext"]["requestId"]
    assert config.record(anonymous, response("{}")) is None
    assert logged[-1]["reason"] == "no_request_id"


# ---- only the selected parts of respBody reach the engine --------------------------------------


@pytest.mark.parametrize(
    ("source", "paths"),
    [
        ("respBody.usage.total_tokens", (("usage", "total_tokens"),)),
        (WEIGHTED, (("model",), ("tokens",), ("tokens",))),
        ("respBody . usage . total_tokens", (("usage", "total_tokens"),)),
        ("respBody.items.size()", (("items",),)),  # a method call: the receiver whole
        ("respBody.items[0].n", (("items",),)),
        ("has(respBody.usage) ? respBody.usage.total_tokens : 1", (("usage",), ("usage", "total_tokens"))),
        ("size(respBody)", None),
        ("respBody['usage'].total_tokens", None),
        ("respBody == null ? 1 : 2", None),
        ("'respBody' == 'x' ? respBody.a : 1", (("a",),)),  # text in a literal is not a use
    ],
)
def test_body_paths(source: str, paths: tuple[tuple[str, ...], ...] | None) -> None:
    assert compile_expression(source, VARIABLES["custom"]).body_paths == paths


BODIES = [
    {"usage": {"total_tokens": 42, "prompt_tokens": 2}, "model": "large", "tokens": 7, "items": [{"n": 3}]},
    {"usage": {"prompt_tokens": 2}, "model": "small", "tokens": 7},
    {"usage": [1, 2], "tokens": "7", "items": []},
    {"usage": None},
    [1, 2, 3],
    "text",
    None,
]
EXPRESSIONS = [
    "respBody.usage.total_tokens",
    WEIGHTED,
    "respBody.items.size()",
    "respBody.items[0].n",
    "has(respBody.usage) ? respBody.usage.total_tokens : 1",
    "has(respBody.usage.total_tokens) ? 2 : 1",
]


@pytest.mark.parametrize("source", EXPRESSIONS)
@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_selected_paths_evaluate_like_the_whole_body(source: str, body: Any) -> None:
    expression = compile_expression(source, VARIABLES["custom"])
    assert expression.body_paths is not None

    def outcome(value: Any) -> Any:
        try:
            return expression.evaluate({"respBody": value})
        except Exception as exc:
            return type(exc)

    assert outcome(metering.select_paths(body, expression.body_paths)) == outcome(body)


def test_select_paths_keeps_only_what_is_selected() -> None:
    body = {"usage": {"total_tokens": 1, "other": [1, 2]}, "model": "m", "pad": "x" * 1000}
    assert metering.select_paths(body, (("usage", "total_tokens"),)) == {"usage": {"total_tokens": 1}}
    assert metering.select_paths(body, (("usage", "total_tokens"), ("usage",))) == {"usage": body["usage"]}
    assert metering.select_paths(body, (("missing", "x"),)) == {}
