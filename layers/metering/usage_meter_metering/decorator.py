"""The `@meter` decorator: the handler answers, then the request is metered exactly once."""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Container, Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger

from usage_meter import jsonutil
from usage_meter.domain.identity import authorizer_context, authorizer_refusal
from usage_meter.domain.tracking import track
from usage_meter.errors import Unauthorized, UsageMeterError
from usage_meter.models.accounts import Identity
from usage_meter.models.wire import DEVELOPER_ID_PATTERN, METRIC_PATTERN, EventBatchIn
from usage_meter_metering.errors import MeteringConfigError, Skip
from usage_meter_metering.exchange import MAX_BODY_BYTES, Event, Exchange, response_status
from usage_meter_metering.expressions import (
    DEFAULT_EXPRESSIONS,
    MODES,
    VARIABLES,
    Mode,
    compile_expression,
    to_quantity,
)

# Not a child logger: a provider's function may have no Powertools Logger of its own, and the
# warnings must still come out as structured JSON. With one, both share the service's logger.
logger = Logger()

SLOW_EVALUATION_SECONDS = 0.010

# @meter runs in the provider's own function, which holds its own access to the tables: the
# service side. So it tracks as a service identity that names the developer in each event
# (developer keys only read). This identity is never stored: the events are the developer's.
METERING_IDENTITY = Identity(developer_id="metering", role="service")

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

UNAVAILABLE_CODE = "temporarily_unavailable"
RECENT_OUTAGES = 64
"""Request ids whose metering found DynamoDB unavailable, kept per container (the latest
few): the other meters stacked on the same request skip at once instead of waiting about 2 s
each for the same outage."""
_outages: dict[str, None] = {}


def _note_outage(request_id: str) -> None:
    _outages[request_id] = None
    while len(_outages) > RECENT_OUTAGES:
        _outages.pop(next(iter(_outages)))


DeveloperSource = Callable[[Event], str | None]
H = TypeVar("H", bound=Callable[..., Any])


def developer_from_authorizer(event: Event) -> str | None:
    """`requestContext.authorizer.lambda.developerId`: where the Usage Meter authorizer (or any
    Lambda authorizer with the same context) puts the calling developer."""
    lambda_context = authorizer_context(event) or {}
    value = lambda_context.get("developerId")
    return value if isinstance(value, str) and value else None


def refusal_answer(error: UsageMeterError) -> dict[str, Any]:
    """A refusal as the function's answer to API Gateway (payload 2.0), in the same error body
    as Usage Meter's own API: {"error": {"code", "message"}}."""
    return {
        "statusCode": error.status,
        "headers": {"content-type": "application/json"},
        "body": jsonutil.dumps({"error": {"code": error.code, "message": error.message}}),
        "isBase64Encoded": False,
    }


def _request_id(event: Event) -> str | None:
    context = event.get("requestContext")
    value = context.get("requestId") if isinstance(context, Mapping) else None
    return value if isinstance(value, str) and value else None


def caller(event: Any, developer: DeveloperSource = developer_from_authorizer) -> str:
    """The developer a request is for, as its authorizer vouched (or the `developer` source
    says). Unauthorized (401) when the authorizer refused the key (`authError`: missing,
    malformed, unknown or revoked), or there is no developer or a malformed id: the wrappers
    ask this before the handler runs, so an anonymous caller is never served."""
    if not isinstance(event, Mapping):
        raise Unauthorized("not an API Gateway request")
    refusal = authorizer_refusal(authorizer_context(event))
    if refusal is not None:
        raise refusal
    try:
        developer_id = developer(event)
    except Exception as exc:  # the provider's own source failed: refuse, never serve
        raise Unauthorized("the request's developer could not be read") from exc
    if not developer_id:
        default = developer is developer_from_authorizer
        raise Unauthorized("missing API key" if default else "no developer for this request")
    if not isinstance(developer_id, str) or re.fullmatch(DEVELOPER_ID_PATTERN, developer_id) is None:
        raise Unauthorized("malformed developer id")
    return developer_id


def _refused(error: Unauthorized, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Log a refusal (never the key: only the reason) and answer it."""
    logger.info("request refused", extra={**fields, "reason": "unauthorized", "detail": error.message})
    return refusal_answer(error)


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
        if not isinstance(metric, str) or not re.fullmatch(METRIC_PATTERN, metric):
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

    def caller(self, event: Any) -> str:
        """The developer a request is for (see `caller`, with this meter's developer source)."""
        return caller(event, self.developer)

    def quantity(self, event: Event, response: Any) -> Decimal:
        """What one request counts for; Skip when it counts for nothing."""
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
            raise Skip("expression_failed", **extra) from exc
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
            try:
                developer_id = self.caller(event)
            except Unauthorized as exc:
                raise Skip("no_developer") from exc
            fields["developerId"] = developer_id
            if request_id is None:
                raise Skip("no_request_id")
            if request_id in _outages:  # a meter stacked on this request found DynamoDB down
                raise Skip("rejected", code=UNAVAILABLE_CODE, waited=False)
            quantity = self.quantity(event, response)
            return self._track(developer_id, request_id, quantity, event, fields)
        except Skip as skip:
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
        route_key = event.get("routeKey")
        metadata: dict[str, Any] = {"meter": self.mode}
        if isinstance(route_key, str):
            metadata["routeKey"] = route_key[:200]
        item = {
            "developerId": developer_id,
            "metric": self.metric,
            "quantity": quantity,
            "idempotencyKey": f"{request_id}:{self.metric}"[:255],
            "metadata": metadata,
        }
        try:
            answer = track(METERING_IDENTITY, EventBatchIn(events=[item]))
        except UsageMeterError as exc:
            raise Skip("track_refused", code=exc.code) from exc
        result = answer.results[0]
        if result.error is not None and result.error.code == UNAVAILABLE_CODE:
            _note_outage(request_id)
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
            try:
                self.caller(event)
            except Unauthorized as refused:
                return _refused(refused, self._fields())
            response = handler(event, context, *args, **kwargs)
            self.record(event, response)
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
    developer       callable(event) -> developer id; default: the authorizer context's developerId.
                    A request without one (or refused by the authorizer) is answered 401 and
                    the handler does not run
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


def authenticated(*, developer: DeveloperSource | None = None) -> Callable[[H], H]:
    """Refuse (401) what `@meter` refuses, for a route of the same API that is not metered:
    behind the Usage Meter authorizer, which never denies at API Gateway, every handler must
    be wrapped by one or the other. Records nothing."""
    if developer is not None and not callable(developer):
        raise MeteringConfigError("developer must be a callable(event) -> developer id")
    source = developer or developer_from_authorizer

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        def guarded(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                caller(event, source)
            except Unauthorized as refused:
                return _refused(refused, {"handler": getattr(handler, "__name__", "handler")})
            return handler(event, context, *args, **kwargs)

        return cast(H, guarded)

    return wrap
