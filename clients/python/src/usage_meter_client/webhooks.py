"""Verify Usage Meter webhook deliveries.

```python
from usage_meter_client import webhooks

event = webhooks.verify(request_body, request.headers["Usage-Meter-Signature"], "whsec_...")
```

The header is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. `verify` compares
in constant time, refuses a timestamp further than `tolerance` seconds from now (a replayed
delivery) and answers the parsed event (`id`, `type`, `createdAt`, `data`). Use the raw body
bytes as received: a re-serialized body does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "Usage-Meter-Signature"
DEFAULT_TOLERANCE_S = 300

__all__ = ["DEFAULT_TOLERANCE_S", "SIGNATURE_HEADER", "WebhookVerificationError", "sign", "verify"]


class WebhookVerificationError(ValueError):
    """The payload is not a delivery signed with this secret, or it is too old."""


def sign(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The header value for `payload` (what the service sends; for testing receivers)."""
    body = payload.encode() if isinstance(payload, str) else payload
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={mac}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError("malformed signature header: expected t=<unix>,v1=<hex>")
    return timestamp, signatures


def verify(
    payload: bytes | str,
    header: str,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The event of a genuine, fresh delivery; WebhookVerificationError otherwise."""
    body = payload.encode() if isinstance(payload, str) else payload
    timestamp, signatures = _parse(header or "")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("signature does not match (wrong secret, or the body was changed)")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError(f"timestamp outside the tolerance of {tolerance} s (a replay?)")
    event: dict[str, Any] = json.loads(body)
    return event
