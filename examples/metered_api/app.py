"""An example provider API metered with `usage_meter_metering.meter`.

Two handlers behind an HTTP API guarded by the Usage Meter authorizer, which puts the calling
developer in the authorizer context (`developerId`), or `authError` for a missing, unknown or
revoked key: `@meter` answers those 401 before the handler runs, so the handlers below only
ever serve a developer with a valid key. The developer is never taken from the request itself.

- `lambda_handler` (POST /v1/completions): a stand-in text completion. Every successful call
  counts 1 `api_calls`, and `tokens` weighted by model: the large model counts double.
- `stream_handler` (POST /v1/completions/stream): the same answer as server-sent events,
  one event per word; each event counts 1 `stream_events`.

The "model" is deliberately trivial (it echoes the prompt): the point is the decorators.
Each decorator records after the handler returned, through the same exactly-once path as
POST /v1/usage/events, with the API Gateway request id as idempotency key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from usage_meter_metering import meter

MODELS = ("small", "large")
WEIGHTED_TOKENS = "respBody.model == 'large' ? respBody.tokens * 2 : respBody.tokens"


def _answer(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
        "isBase64Encoded": False,
    }


def _request(event: dict[str, Any]) -> tuple[str, str] | dict[str, Any]:
    """(prompt, model) from the JSON body, or a 400 answer."""
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return _answer(400, {"error": {"code": "invalid_request", "message": 'send {"prompt": "..."}'}})
    model = body.get("model", "small")
    if model not in MODELS:
        return _answer(400, {"error": {"code": "unknown_model", "message": f"model is one of {MODELS}"}})
    return body["prompt"], model


def _complete(prompt: str) -> list[str]:
    """The completion's words (here: the prompt's words, echoed)."""
    return prompt.split()


@meter(metric="api_calls")
@meter(metric="tokens", mode="custom", expression=WEIGHTED_TOKENS)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = _request(event)
    if isinstance(request, dict):
        return request
    prompt, model = request
    words = _complete(prompt)
    prompt_tokens, completion_tokens = len(prompt.split()), len(words)
    return _answer(
        200,
        {
            "model": model,
            "output": " ".join(words),
            "tokens": completion_tokens,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


@meter(metric="stream_events", mode="sse")
def stream_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = _request(event)
    if isinstance(request, dict):
        return request
    prompt, _model = request
    events = [f"data: {json.dumps({'text': word})}\n\n" for word in _complete(prompt)]
    return {
        "statusCode": 200,
        "headers": {"content-type": "text/event-stream", "cache-control": "no-cache"},
        "body": "".join(events) + ": end of stream\n\n",
        "isBase64Encoded": False,
    }
