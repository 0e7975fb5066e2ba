"""Metering a provider's own API: `@meter` wraps an API Gateway-backed Lambda handler.

The decorated handler runs first and its response goes back untouched; then the request is
metered through the same exactly-once path as POST /v1/usage/events (`tracking.track`), with
the API Gateway request id in the idempotency key, so a retried invocation of one request is
counted once. Metering never raises into the handler: a failure records nothing and logs a
structured warning.

    @meter(metric="tokens", mode="response_field", expression="respBody.usage.total_tokens")
    def lambda_handler(event, context): ...

Modes and the variables their CEL expression may use:

    request         1 unit per request (no expression)
    bytes           requestBytes, responseBytes                   default: responseBytes
    response_field  respBody (the JSON response body)             expression required
    sse             sseEvents, allData (a text/event-stream body) default: sseEvents
    custom          all of the above and status, path, method     expression required

Expressions are CEL, compiled once when the decorator runs (at cold start); a syntax error,
an unknown variable or a comprehension macro is a `MeteringConfigError` there and then.

Bounds (see examples/metered_api/README.md for the measurements):

- an expression is at most 1,024 characters and may not use the comprehension macros
  (all, exists, exists_one, map, filter): their cost grows with the response, quadratically
  for map and filter in the CEL engine. Without them an expression is a fixed tree of
  operators, each linear in the values it touches;
- respBody, sseEvents and allData are only read from bodies of at most `max_body_bytes`
  (default 1 MiB). Only the members of respBody that the expression selects
  (`respBody.usage.total_tokens`) go to the engine, and at most 10,000 JSON values nested at
  most 32 levels deep (the engine converts every value it is given, recursively); past that
  nothing is recorded. requestBytes and responseBytes are lengths;
- evaluation cannot be interrupted (the engine holds the GIL while it runs): an evaluation
  slower than 10 ms is recorded and logged as `slow_evaluation`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import os
import re
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar, cast, get_args

import cel
from aws_lambda_powertools import Logger
from pydantic import ValidationError

from usage_meter import jsonutil
from usage_meter.domain.identity import authorizer_context
from usage_meter.domain.tracking import track
from usage_meter.errors import UsageMeterError
from usage_meter.models.accounts import Identity
from usage_meter.models.wire import MAX_QUANTITY, METRIC_PATTERN, EventBatchIn

# Not a child logger: a provider's function may have no Powertools Logger of its own, and the
# warnings must still come out as structured JSON. With one, both share the service's logger.
logger = Logger()

Mode = Literal["request", "bytes", "response_field", "sse", "custom"]
MODES: tuple[str, ...] = get_args(Mode)

MAX_EXPRESSION_CHARS = 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 10_000
SLOW_EVALUATION_SECONDS = 0.010
DECIMAL_PLACES = 9
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)

REQUEST_VARIABLES = frozenset({"status", "path", "method", "requestBytes", "responseBytes"})
BODY_VARIABLES = frozenset({"respBody", "sseEvents", "allData"})
VARIABLES: dict[str, frozenset[str]] = {
    "request": frozenset(),
    "bytes": frozenset({"requestBytes", "responseBytes"}),
    "response_field": frozenset({"respBody"}),
    "sse": frozenset({"sseEvents", "allData"}),
    "custom": REQUEST_VARIABLES | BODY_VARIABLES,
}
DEFAULT_EXPRESSIONS: dict[str, str] = {"bytes": "responseBytes", "sse": "sseEvents"}
COMPREHENSION_MACROS = ("all", "exists", "exists_one", "map", "filter")
_MACRO_CALL = re.compile(r"\.\s*(" + "|".join(COMPREHENSION_MACROS) + r")\s*\(")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_METRIC = re.compile(METRIC_PATTERN)

# What a failed evaluation means, by the engine's exception type: logged instead of the
# exception's message, which may quote values of the response.
_EVALUATION_HINTS = {
    "KeyError": "a field the expression reads is missing from the response",
    "TypeError": "operand types do not match (CEL does not mix int and double: use double(x))",
    "RuntimeError": "undefined variable or function",
    "ZeroDivisionError": "division by zero",
    "OverflowError": "integer overflow",
    "ValueError": "a value could not be converted",
}

Event = Mapping[str, Any]
DeveloperSource = Callable[[Event], str | None]
H = TypeVar("H", bound=Callable[..., Any])


class MeteringConfigError(ValueError):
    """A `@meter` that cannot work: raised when the decorator is applied (at cold start)."""


class _Skip(Exception):
    """This request records nothing; `reason` (and `fields`) go into the warning."""

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


# ---- expressions ----------------------------------------------------------------------------


def code_only(source: str) -> str:
    """The expression with the contents of string and bytes literals and of comments blanked,
    so that a scan for macro calls sees code only (`'.map('` is text, not a call)."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        char = source[i]
        if char not in "'\"":
            i += 1
            continue
        start = i
        while start > 0 and source[start - 1] in "rRbB":
            start -= 1
        prefix = source[start:i]
        is_prefix = len(prefix) <= 2 and (
            start == 0 or not (source[start - 1].isalnum() or source[start - 1] == "_")
        )
        raw = is_prefix and "r" in prefix.lower()
        quote = source[i : i + 3] if source.startswith(char * 3, i) else char
        j = i + len(quote)
        while j < n and not source.startswith(quote, j):
            j += 2 if source[j] == "\\" and not raw else 1
        end = min(j + len(quote), n)
        out[i:end] = " " * (end - i)
        i = end
    return "".join(out)


@dataclass(frozen=True)
class Expression:
    """A compiled metering expression, the variables it reads, and the parts of respBody it
    selects (None: it uses respBody as a whole)."""

    source: str
    program: cel.Program
    variables: frozenset[str]
    body_paths: tuple[tuple[str, ...], ...] | None = None

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        return self.program.execute(dict(variables))


def compile_expression(source: str, allowed: frozenset[str]) -> Expression:
    """Compile a CEL expression that may read only `allowed` variables.

    Raises MeteringConfigError for an over-long expression, a comprehension macro, a syntax
    error (with CEL's position marker) or a variable that is not allowed.
    """
    if not isinstance(source, str) or not source.strip():
        raise MeteringConfigError("a metering expression must be a non-empty string")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise MeteringConfigError(
            f"a metering expression is at most {MAX_EXPRESSION_CHARS} characters (this one: {len(source)})"
        )
    try:
        program = cel.compile(source)
    except ValueError as exc:
        raise MeteringConfigError(f"metering expression {source!r} does not compile: {exc}") from exc
    code = code_only(source)
    macro = _MACRO_CALL.search(code)
    if macro is not None:
        raise MeteringConfigError(
            f"metering expression {source!r} uses the comprehension macro {macro.group(1)}(); "
            "comprehensions are not allowed: their cost grows with the response. Have the "
            "handler return the figure to meter (e.g. a count) in its response instead."
        )
    variables = frozenset(program.variables())
    unknown = sorted(variables - allowed)
    if unknown:
        raise MeteringConfigError(
            f"metering expression {source!r} reads {', '.join(unknown)}; "
            f"this mode offers {', '.join(sorted(allowed)) or 'no variables'}"
        )
    return Expression(source=source, program=program, variables=variables, body_paths=_body_paths(code))


_BODY_USE = re.compile(r"(?<![\w.])respBody((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\(?)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _body_paths(code: str) -> tuple[tuple[str, ...], ...] | None:
    """The field paths the expression selects from respBody (`respBody.usage.total_tokens` ->
    ("usage", "total_tokens")), or None when it uses respBody otherwise (bare, indexed).

    Only these paths are handed to the CEL engine, which converts every value it is given: a
    1 MiB body costs ~100 ms to convert whole, a selected field microseconds.
    """
    paths: list[tuple[str, ...]] = []
    for use in _BODY_USE.finditer(code):
        path = tuple(_IDENTIFIER.findall(use.group(1)))
        if use.group(2).strip():  # respBody.items.size(): the last name is a method
            path = path[:-1]
        if not path:
            return None
        paths.append(path)
    return tuple(paths) or None


def select_paths(value: Any, paths: tuple[tuple[str, ...], ...]) -> Any:
    """`value` with only the object members on `paths` (each path's end value whole).

    Selecting a path from the result gives what selecting it from `value` gives, missing
    members included; anything that is not an object on the way is kept whole, so the engine
    fails on it the same way."""
    trie: dict[str, Any] = {}
    for path in paths:
        node: dict[str, Any] | None = trie
        for name in path[:-1]:
            assert node is not None
            child = node.setdefault(name, {})
            if child is None:  # a shorter path already keeps this member whole
                node = None
                break
            node = child
        if node is not None:
            node[path[-1]] = None

    def walk(item: Any, node: dict[str, Any] | None) -> Any:
        if node is None or not isinstance(item, dict):
            return item
        return {name: walk(item[name], child) for name, child in node.items() if name in item}

    return walk(value, trie)


def to_quantity(value: Any) -> Decimal:
    """An expression's result as a quantity for `track()`: exact for ints, doubles through
    their repr rounded half-up to 9 decimal places; > 0 and <= 1e12, else _Skip."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Skip("not_a_number", resultType=type(value).__name__)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Skip("not_a_number", resultType="double")
        quantity = Decimal(repr(value))
        if quantity > MAX_QUANTITY:  # before quantize: 1e300 has no 9-place form in 28 digits
            raise _Skip("too_large")
        quantity = quantity.quantize(_QUANTUM, rounding=ROUND_HALF_UP).normalize()
    else:
        quantity = Decimal(value)
    if quantity <= 0:
        raise _Skip("non_positive")
    if quantity > MAX_QUANTITY:
        raise _Skip("too_large")
    return quantity


# ---- the request and the response, as the expression sees them ------------------------------


def parse_sse(text: str) -> tuple[int, str]:
    """Server-sent events in a buffered text/event-stream body: (events, all data).

    An event is a block of lines ended by a blank line with at least one `data` field; its
    data is its `data` values joined by newlines. `allData` concatenates the events' data, in
    order, without separators. As in the SSE standard, lines starting with ':' are comments
    and a block the body does not end with a blank line is never dispatched, so not counted.
    """
    events = 0
    payloads: list[str] = []
    data: list[str] = []
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    for line in lines[:-1]:  # the last piece was not ended by a line break
        if not line:
            if data:
                events += 1
                payloads.append("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    return events, "".join(payloads)


def _json_shape_fault(value: Any) -> _Skip | None:
    """Why parsed JSON may not go to the engine: nested deeper than MAX_JSON_DEPTH, or more
    than MAX_JSON_VALUES values (the engine converts each, ~2-5 µs apiece). Iterative, and
    stops at the first fault."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_JSON_VALUES:
            return _Skip("body_too_large", values=f">{MAX_JSON_VALUES}", limit=MAX_JSON_VALUES)
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return _Skip("body_too_deep", limit=MAX_JSON_DEPTH)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _body_bytes(body: Any, base64_encoded: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    text = str(body)
    if base64_encoded:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return text.encode()
    return text.encode()


def _header(headers: Any, name: str) -> str:
    if not isinstance(headers, Mapping):
        return ""
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return ""


def response_status(response: Any) -> int:
    """The status API Gateway answers with: the result's statusCode, else 200 (payload 2.0)."""
    if isinstance(response, Mapping) and "statusCode" in response:
        return int(response["statusCode"])
    return 200


@dataclass
class Exchange:
    """One request and its response. The bodies are parsed (JSON, SSE) only for an expression
    that reads them: see `variables`."""

    status: int
    method: str
    path: str
    request_body: bytes
    response_body: bytes
    content_type: str
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def of(cls, event: Event, response: Any, max_body_bytes: int = MAX_BODY_BYTES) -> Exchange:
        """From a payload-2.0 event and the handler's result. A result without statusCode is
        what API Gateway (payload 2.0) makes of it: 200 with the result as a JSON body."""
        context = event.get("requestContext")
        http = (context.get("http") or {}) if isinstance(context, Mapping) else {}
        if isinstance(response, Mapping) and "statusCode" in response:
            body = _body_bytes(response.get("body"), response.get("isBase64Encoded"))
            content_type = _header(response.get("headers"), "content-type") or _header(
                response.get("multiValueHeaders"), "content-type"
            )
        else:
            body = jsonutil.dumps(response).encode()
            content_type = "application/json"
        return cls(
            status=response_status(response),
            method=str(http.get("method", "")),
            path=str(http.get("path") or event.get("rawPath") or ""),
            request_body=_body_bytes(event.get("body"), event.get("isBase64Encoded")),
            response_body=body,
            content_type=content_type.split(";")[0].strip().lower(),
            max_body_bytes=max_body_bytes,
        )

    def _text(self) -> str:
        if len(self.response_body) > self.max_body_bytes:
            raise _Skip("body_too_large", responseBytes=len(self.response_body), limit=self.max_body_bytes)
        return self.response_body.decode("utf-8", errors="replace")

    def resp_body(self, paths: tuple[tuple[str, ...], ...] | None = None) -> Any:
        """The JSON response body, or null when it is not JSON (or is an event stream); with
        `paths`, only those members of it."""
        text = self._text()
        if self.content_type == "text/event-stream":
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if paths is not None:
            value = select_paths(value, paths)
        fault = _json_shape_fault(value)
        if fault is not None:
            raise fault
        return value

    def sse(self) -> tuple[int, str]:
        text = self._text()
        if self.content_type != "text/event-stream":
            return 0, ""
        return parse_sse(text)

    def variables(
        self, names: frozenset[str], body_paths: tuple[tuple[str, ...], ...] | None = None
    ) -> dict[str, Any]:
        """The named variables only: the response body is parsed only if the expression reads it."""
        values: dict[str, Any] = {}
        if "status" in names:
            values["status"] = self.status
        if "method" in names:
            values["method"] = self.method
        if "path" in names:
            values["path"] = self.path
        if "requestBytes" in names:
            values["requestBytes"] = len(self.request_body)
        if "responseBytes" in names:
            values["responseBytes"] = len(self.response_body)
        if "respBody" in names:
            values["respBody"] = self.resp_body(body_paths)
        if names & {"sseEvents", "allData"}:
            events, data = self.sse()
            values["sseEvents"] = events
            values["allData"] = data
        return values


# ---- the decorator --------------------------------------------------------------------------


def developer_from_authorizer(event: Event) -> str | None:
    """`requestContext.authorizer.lambda.developerId`: where the Usage Meter authorizer (or any
    Lambda authorizer with the same context) puts the calling developer."""
    lambda_context = authorizer_context(event) or {}
    value = lambda_context.get("developerId")
    return value if isinstance(value, str) and value else None


def _request_id(event: Event) -> str | None:
    context = event.get("requestContext")
    value = context.get("requestId") if isinstance(context, Mapping) else None
    return value if isinstance(value, str) and value else None


class Meter:
    """A compiled `@meter` configuration; `meter()` builds one and wraps the handler with it."""

    def __init__(
        self,
        *,
        metric: str,
        mode: Mode = "request",
        expression: str | None = None,
        developer: DeveloperSource | None = None,
        statuses: Container[int] = range(200, 300),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not isinstance(metric, str) or not _METRIC.match(metric):
            raise MeteringConfigError(f"metric {metric!r} does not match {METRIC_PATTERN}")
        if mode not in MODES:
            raise MeteringConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "request" and expression is not None:
            raise MeteringConfigError("mode 'request' counts 1 per request and takes no expression")
        source = expression if expression is not None else DEFAULT_EXPRESSIONS.get(mode)
        if mode != "request" and source is None:
            raise MeteringConfigError(f"mode {mode!r} needs an expression")
        if developer is not None and not callable(developer):
            raise MeteringConfigError("developer must be a callable(event) -> developer id")
        if not isinstance(max_body_bytes, int) or max_body_bytes < 0:
            raise MeteringConfigError("max_body_bytes must be a non-negative int")
        self.metric = metric
        self.mode: Mode = mode
        self.expression = compile_expression(source, VARIABLES[mode]) if source is not None else None
        self.developer: DeveloperSource = developer or developer_from_authorizer
        self.statuses = statuses
        self.max_body_bytes = max_body_bytes
        if not os.environ.get("POWERTOOLS_METRICS_NAMESPACE"):
            logger.warning(
                "POWERTOOLS_METRICS_NAMESPACE is not set: the service's metrics cannot be published",
                extra={"metric": metric},
            )

    def quantity(self, event: Event, response: Any) -> Decimal:
        """What one request counts for; _Skip when it counts for nothing."""
        if self.expression is None:
            return Decimal(1)
        exchange = Exchange.of(event, response, self.max_body_bytes)
        values = exchange.variables(self.expression.variables, self.expression.body_paths)
        started = time.perf_counter()
        try:
            result = self.expression.evaluate(values)
        except Exception as exc:  # the engine's errors: KeyError, TypeError, RuntimeError...
            kind = type(exc).__name__
            extra: dict[str, Any] = {
                "errorType": kind,
                "hint": _EVALUATION_HINTS.get(kind, "evaluation failed"),
            }
            if "respBody" in values:
                extra["respBodyIsJson"] = values["respBody"] is not None
            raise _Skip("expression_failed", **extra) from exc
        elapsed = time.perf_counter() - started
        if elapsed > SLOW_EVALUATION_SECONDS:
            logger.warning(
                "slow metering expression",
                extra={
                    **self._fields(),
                    "reason": "slow_evaluation",
                    "evaluationMs": round(elapsed * 1000, 3),
                },
            )
        return to_quantity(result)

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"metric": self.metric, "mode": self.mode}
        if self.expression is not None:
            fields["expression"] = self.expression.source
        return fields

    def record(self, event: Event, response: Any) -> str | None:
        """Meter one request: the track status ("recorded", "duplicate", ...) or None when the
        request records nothing. Never raises: failures are logged as warnings."""
        request_id = _request_id(event)
        fields = {**self._fields(), "requestId": request_id}
        try:
            status = response_status(response)
            if status not in self.statuses:
                logger.debug("status not metered", extra={**fields, "status": status})
                return None
            developer_id = self.developer(event)
            if not developer_id:
                raise _Skip("no_developer")
            fields["developerId"] = developer_id
            if request_id is None:
                raise _Skip("no_request_id")
            quantity = self.quantity(event, response)
            return self._track(developer_id, request_id, quantity, event, fields)
        except _Skip as skip:
            logger.warning("usage not metered", extra={**fields, "reason": skip.reason, **skip.fields})
        except Exception as exc:  # metering must never break the provider's response
            logger.warning(
                "usage not metered",
                extra={**fields, "reason": "metering_failed", "errorType": type(exc).__name__},
            )
        return None

    def _track(
        self, developer_id: str, request_id: str, quantity: Decimal, event: Event, fields: dict[str, Any]
    ) -> str | None:
        try:
            identity = Identity(developer_id=developer_id, role="developer")
        except ValidationError as exc:
            raise _Skip("invalid_developer") from exc
        route_key = event.get("routeKey")
        metadata: dict[str, Any] = {"meter": self.mode}
        if isinstance(route_key, str):
            metadata["routeKey"] = route_key[:200]
        item = {
            "metric": self.metric,
            "quantity": quantity,
            "idempotencyKey": f"{request_id}:{self.metric}"[:255],
            "metadata": metadata,
        }
        try:
            answer = track(identity, EventBatchIn(events=[item]))
        except UsageMeterError as exc:
            raise _Skip("track_refused", code=exc.code) from exc
        result = answer.results[0]
        outcome = {**fields, "quantity": jsonutil.number_text(quantity), "status": result.status}
        if result.status == "recorded":
            logger.debug("usage metered", extra=outcome)
        elif result.status == "duplicate":
            logger.info("retried request already metered", extra=outcome)
        else:
            code = result.error.code if result.error else None
            logger.warning("usage not metered", extra={**outcome, "reason": result.status, "code": code})
        return result.status

    def wrap(self, handler: H) -> H:
        @functools.wraps(handler)
        def metered(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            response = handler(event, context, *args, **kwargs)
            if isinstance(event, Mapping):
                self.record(event, response)
            else:
                logger.warning("usage not metered", extra={**self._fields(), "reason": "event_not_a_mapping"})
            return response

        metered.meter = self  # type: ignore[attr-defined]
        return cast(H, metered)


def meter(
    *,
    metric: str,
    mode: Mode = "request",
    expression: str | None = None,
    developer: DeveloperSource | None = None,
    statuses: Container[int] = range(200, 300),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Callable[[H], H]:
    """Meter every invocation of an API Gateway (HTTP API, payload 2.0) Lambda handler.

    metric          the metric to record (e.g. "api_calls", "tokens")
    mode            "request" (default: 1 per request), "bytes", "response_field", "sse", "custom"
    expression      a CEL expression over the mode's variables (see the module docstring)
    developer       callable(event) -> developer id; default: the authorizer context's developerId
    statuses        response status codes that are metered; default: 2xx
    max_body_bytes  bodies larger than this are not read for respBody/sseEvents/allData

    Raises MeteringConfigError at decoration time for a bad configuration or expression.
    Stack decorators to record several metrics per request (one track call each).
    """
    config = Meter(
        metric=metric,
        mode=mode,
        expression=expression,
        developer=developer,
        statuses=statuses,
        max_body_bytes=max_body_bytes,
    )
    return config.wrap
