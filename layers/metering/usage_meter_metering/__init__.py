"""Metering a provider's own API: `@meter` wraps an API Gateway-backed Lambda handler.

A request the authorizer refused (no key, a malformed, unknown or revoked one) or that names
no developer is answered 401 before the handler runs: the Usage Meter authorizer never denies
at API Gateway, it passes `authError` on. Otherwise the decorated handler runs and its
response goes back untouched; then the request is metered through the same exactly-once path
as POST /v1/usage/events (`tracking.track`, as the provider's service identity naming the
developer), with the API Gateway request id in the idempotency key, so a retried invocation
of one request is counted once. Metering never raises into the handler: a failure records
nothing and logs a structured warning.

Modules: `expressions` (CEL compile and evaluate, quantities), `exchange` (the request and
response as an expression sees them), `decorator` (`Meter`, `meter`).

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

from usage_meter_metering.decorator import (
    SLOW_EVALUATION_SECONDS,
    DeveloperSource,
    Meter,
    authenticated,
    caller,
    developer_from_authorizer,
    logger,
    meter,
)
from usage_meter_metering.errors import MeteringConfigError, Skip
from usage_meter_metering.exchange import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_VALUES,
    Exchange,
    parse_sse,
    response_status,
)
from usage_meter_metering.expressions import (
    DEFAULT_EXPRESSIONS,
    MAX_EXPRESSION_CHARS,
    MODES,
    VARIABLES,
    Expression,
    Mode,
    code_only,
    compile_expression,
    select_paths,
    to_quantity,
)

__all__ = [
    "DEFAULT_EXPRESSIONS",
    "MAX_BODY_BYTES",
    "MAX_EXPRESSION_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "MODES",
    "SLOW_EVALUATION_SECONDS",
    "VARIABLES",
    "DeveloperSource",
    "Exchange",
    "Expression",
    "Meter",
    "MeteringConfigError",
    "Mode",
    "Skip",
    "authenticated",
    "caller",
    "code_only",
    "compile_expression",
    "developer_from_authorizer",
    "logger",
    "meter",
    "parse_sse",
    "response_status",
    "select_paths",
    "to_quantity",
]
