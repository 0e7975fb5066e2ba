"""Webhook endpoints: registered with a secret shown once, delivered signed, retried for a day.

The secret is never stored: an endpoint keeps a random salt, and its secret is
HMAC(stack key, id + salt), the stack key being a KMS HMAC key that never leaves KMS (locally
a key file). Whoever reads the tables alone cannot sign. Deliveries carry
`Usage-Meter-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from usage_meter import jsonutil
from usage_meter.domain import alerts, clock
from usage_meter.errors import NotFound, ValidationFailed
from usage_meter.models.alerts import (
    MAX_URL,
    Attempt,
    AttemptOutcome,
    CreatedWebhook,
    Delivery,
    EventType,
    Webhook,
)
from usage_meter.models.timestamps import format_timestamp
from usage_meter.settings import settings
from usage_meter.store import alerts as alert_store
from usage_meter.store import endpoints, outbox

logger = Logger(child=True)
metrics = Metrics()

SIGNATURE_HEADER = "Usage-Meter-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_WEBHOOKS = 100
RETRY_DELAYS_S = (30, 120, 600, 1800, 3600, 7200, 14400, 21600, 28800, 43200, 43200)
"""Seconds before each next attempt: 12 attempts over ~45.7 hours (SQS hides a message at
most 12 h at a time); the 12th failure leaves the message to the dead-letter queue."""
MAX_ATTEMPTS = len(RETRY_DELAYS_S) + 1
BUSY_RETRY_S = 30
LEASE_S = 60
KEPT = timedelta(days=30)


class DeliveryFailed(Exception):
    """This attempt did not deliver; the message comes back after its backoff."""


def secret_for(hook: Webhook) -> str:
    digest = outbox.mac(f"usage-meter webhook\x1f{hook.webhook_id}\x1f{hook.salt}".encode())
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def check_url(url: str) -> None:
    """Refuse what we never deliver to: over 2,048 characters, not https (the local stack also
    takes http://127.0.0.1), credentials in it, or a host that resolves to an inner address."""
    if len(url) > MAX_URL:
        raise ValidationFailed(f"the URL has {len(url)} characters; at most {MAX_URL}", code="url_too_long")
    parts = urlsplit(url)
    local = (
        settings().webhook_allow_local and parts.scheme == "http" and parts.hostname == endpoints.LOCAL_HOST
    )
    if parts.scheme != "https" and not local:
        allowed = (
            "https:// (or http://127.0.0.1 on the local stack)"
            if settings().webhook_allow_local
            else "https://"
        )
        raise ValidationFailed(f"{url[:80]} is not an {allowed} URL", code="url_not_https")
    if not parts.hostname or parts.username or parts.password:
        raise ValidationFailed("the URL needs a host and no credentials", code="invalid_url")
    try:
        endpoints.safe_address(parts.hostname, parts.port or 443, allow_local=local)
    except endpoints.Unsafe as exc:
        raise ValidationFailed(f"refused: {exc}", code="url_not_public") from None
    except ValueError:
        raise ValidationFailed("the URL's port is not a number", code="invalid_url") from None


def add(url: str, developer_id: str | None = None, events: list[EventType] | None = None) -> CreatedWebhook:
    check_url(url)
    if len(alert_store.list_webhooks()) >= MAX_WEBHOOKS:
        raise ValidationFailed(f"at most {MAX_WEBHOOKS} webhooks; remove one first", code="too_many_webhooks")
    hook = Webhook(
        webhook_id="wh_" + secrets.token_hex(8),
        url=url,
        developer_id=developer_id,
        events=list(events or []),
        salt=secrets.token_hex(16),
        created_at=format_timestamp(clock.now()),
    )
    alert_store.put_webhook(hook)
    return CreatedWebhook(webhook=hook, secret=secret_for(hook))


def get(webhook_id: str) -> Webhook:
    hook = alert_store.get_webhook(webhook_id)
    if hook is None:
        raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
    return hook


def remove(webhook_id: str) -> Webhook:
    hook = get(webhook_id)
    alert_store.delete_webhook(webhook_id)
    return hook


def test(webhook_id: str) -> str:
    """Queue a webhook.test event for one endpoint; its event id."""
    hook = get(webhook_id)
    event = alerts.envelope("webhook.test", {"webhookId": hook.webhook_id, "developerId": hook.developer_id})
    outbox.send_deliveries([Delivery(webhook_id=hook.webhook_id, event=event)])
    return event.id


def deliveries(webhook_id: str, limit: int = 20) -> list[Attempt]:
    get(webhook_id)
    return alert_store.attempts(webhook_id, limit)


def _attempt(hook: Webhook, delivery: Delivery, number: int) -> tuple[AttemptOutcome, int | None, str | None]:
    body = jsonutil.dumps(delivery.event.wire()).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "usage-meter-webhooks",
        SIGNATURE_HEADER: sign(secret_for(hook), int(time.time()), body),
        "Usage-Meter-Event-Id": delivery.event.id,
        "Usage-Meter-Attempt": str(number),
    }
    try:
        status = endpoints.post(hook.url, body, headers, allow_local=settings().webhook_allow_local)
    except endpoints.Unsafe as exc:
        return "refused", None, str(exc)
    except OSError as exc:  # timeouts, refused connections, TLS failures
        return "failed", None, f"{type(exc).__name__}: {exc}"[:300]
    except Exception as exc:  # a malformed answer
        return "failed", None, f"{type(exc).__name__}: {exc}"[:300]
    if 200 <= status < 300:
        return "delivered", status, None
    return "failed", status, "redirect not followed" if 300 <= status < 400 else None


def deliver(delivery: Delivery, receives: int, receipt: str | None) -> AttemptOutcome:
    """One delivery attempt (an SQS message's `receives`-th receipt). Raises DeliveryFailed after
    hiding the message until its next attempt; returns when there is nothing more to do."""
    hook = alert_store.get_webhook(delivery.webhook_id)
    log = {"webhook_id": delivery.webhook_id, "event_id": delivery.event.id, "attempt": receives}
    if hook is None:
        logger.info("webhook removed: delivery dropped", extra=log)
        return "skipped"
    now = int(time.time())
    expires = now + int(KEPT.total_seconds())
    state = alert_store.lease(hook.webhook_id, delivery.event.id, now, LEASE_S, expires)
    if state == "delivered":
        return "skipped"
    if state == "busy":
        _later(receipt, BUSY_RETRY_S)
        raise DeliveryFailed("another attempt holds this delivery")
    started = time.monotonic()
    outcome, status, error = _attempt(hook, delivery, receives)
    attempted_at = format_timestamp(clock.now())
    attempt = Attempt(
        webhook_id=hook.webhook_id,
        event_id=delivery.event.id,
        event_type=delivery.event.type,
        attempt=receives,
        outcome=outcome,
        status_code=status,
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
        attempted_at=attempted_at,
    )
    alert_store.record_attempt(attempt, expires)
    alert_store.finish(hook.webhook_id, delivery.event.id, attempted_at if outcome == "delivered" else None)
    metrics.add_metric(name=f"Webhook{outcome.capitalize()}", unit=MetricUnit.Count, value=1)
    if outcome == "delivered":
        logger.info("webhook delivered", extra=log | {"status": status})
        return outcome
    logger.warning(
        "webhook attempt failed", extra=log | {"status": status, "error": error, "outcome": outcome}
    )
    _later(receipt, RETRY_DELAYS_S[min(receives, MAX_ATTEMPTS - 1) - 1])
    raise DeliveryFailed(error or f"answered {status}")


def _later(receipt: str | None, seconds: int) -> None:
    if receipt is not None:
        outbox.retry_later(receipt, seconds)
