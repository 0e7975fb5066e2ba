"""Alert claims, hard-limit refusal flags, webhook endpoints and their delivery records.

Every write here is conditional where it must happen once: a claim or a flag is put only if
absent, a delivery is leased only if not delivered and not leased by someone else.
"""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import ClientError

from usage_meter import jsonutil
from usage_meter.models.alerts import Attempt, Envelope, Webhook
from usage_meter.store import dynamodb, keys
from usage_meter.store.accounts import by_kind
from usage_meter.store.dynamodb import from_av, number, text, to_av

ClaimState = Literal["new", "pending", "published"]


def _put_once(item: dict[str, Any]) -> bool:
    """Put `item` only if its key is absent in the usage table; False when it was there."""
    try:
        dynamodb.usage_call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            return False
        raise
    return True


def flag_refusal(developer_id: str, month: str, metric: str, limit: str, at: str, expires_at: int) -> bool:
    """The period's first hard-limit refusal of a metric (True when this call wrote it)."""
    return _put_once(
        {
            "pk": text(keys.developer_pk(developer_id)),
            "sk": text(keys.refusal_sk(month, metric)),
            "developerId": text(developer_id),
            "metric": text(metric),
            "period": text(month),
            "limit": text(limit),
            "refusedAt": text(at),
            "expiresAt": number(expires_at),
        }
    )


def _claim_key(developer_id: str, sk: str) -> dict[str, Any]:
    return {"pk": text(keys.developer_pk(developer_id)), "sk": text(sk)}


def claim(developer_id: str, sk: str, envelope: Envelope, expires_at: int) -> tuple[ClaimState, Envelope]:
    """Claim an alert: "new" (this call owns it), "pending" (claimed, maybe never published: the
    stored event is published again) or "published"; with the event that holds the claim."""
    item = _claim_key(developer_id, sk) | {
        "event": text(jsonutil.dumps(envelope.wire())),
        "state": text("pending"),
        "expiresAt": number(expires_at),
    }
    if _put_once(item):
        return "new", envelope
    stored = dynamodb.usage_call("get_item", Key=_claim_key(developer_id, sk), ConsistentRead=True).get(
        "Item"
    )
    if stored is None:  # TTL-deleted meanwhile: the alert belongs to a window long gone
        return "published", envelope
    held = Envelope.model_validate(jsonutil.loads(stored["event"]["S"]))
    return ("published" if stored["state"]["S"] == "published" else "pending"), held


def mark_published(developer_id: str, sk: str) -> None:
    dynamodb.usage_call(
        "update_item",
        Key=_claim_key(developer_id, sk),
        UpdateExpression="SET #s = :p",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":p": text("published")},
    )


def claims(developer_id: str, period: str) -> list[dict[str, Any]]:
    """The claims of a developer's period (for reads and tests)."""
    low, high = f"A#{period}#", f"A#{period}#~"
    return [{k: from_av(v) for k, v in i.items()} for i in dynamodb.query_range(developer_id, low, high)]


# ---- webhooks (accounts table) ---------------------------------------------------------------


def _webhook_item(hook: Webhook) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": text(keys.webhook_pk(hook.webhook_id)),
        "sk": text(keys.WEBHOOK_SK),
        "kind": text("webhook"),
        "webhookId": text(hook.webhook_id),
        "url": text(hook.url),
        "events": to_av(list(hook.events)),
        "salt": text(hook.salt),
        "createdAt": text(hook.created_at),
    }
    if hook.developer_id is not None:
        item["developerId"] = text(hook.developer_id)
    return item


def _webhook(item: dict[str, Any]) -> Webhook:
    plain = {k: from_av(v) for k, v in item.items()}
    return Webhook(
        webhook_id=plain["webhookId"],
        url=plain["url"],
        developer_id=plain.get("developerId"),
        events=plain.get("events", []),
        salt=plain["salt"],
        created_at=plain["createdAt"],
    )


def put_webhook(hook: Webhook) -> None:
    dynamodb.accounts_call(
        "put_item", Item=_webhook_item(hook), ConditionExpression="attribute_not_exists(pk)"
    )


def get_webhook(webhook_id: str) -> Webhook | None:
    answer = dynamodb.accounts_call(
        "get_item",
        Key={"pk": text(keys.webhook_pk(webhook_id)), "sk": text(keys.WEBHOOK_SK)},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return _webhook(item) if item else None


def list_webhooks() -> list[Webhook]:
    return [_webhook(item) for item in by_kind("webhook")]


def delete_webhook(webhook_id: str) -> None:
    dynamodb.accounts_call(
        "delete_item", Key={"pk": text(keys.webhook_pk(webhook_id)), "sk": text(keys.WEBHOOK_SK)}
    )


# ---- deliveries (usage table, pk HOOK#<id>) ----------------------------------------------------

LeaseState = Literal["go", "delivered", "busy"]


def _delivery_key(webhook_id: str, event_id: str) -> dict[str, Any]:
    return {"pk": text(keys.hook_pk(webhook_id)), "sk": text(keys.delivery_sk(event_id))}


def lease(webhook_id: str, event_id: str, now_epoch: int, lease_s: int, expires_at: int) -> LeaseState:
    """Take the delivery of an event to one endpoint for `lease_s` seconds: "go" when taken,
    "delivered" when a 2xx was already recorded, "busy" while another attempt holds it."""
    try:
        dynamodb.usage_call(
            "update_item",
            Key=_delivery_key(webhook_id, event_id),
            UpdateExpression="SET leaseUntil = :until, expiresAt = :x ADD attempts :one",
            ConditionExpression="attribute_not_exists(deliveredAt) AND "
            "(attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
            ExpressionAttributeValues={
                ":until": number(now_epoch + lease_s),
                ":now": number(now_epoch),
                ":x": number(expires_at),
                ":one": number(1),
            },
        )
    except ClientError as exc:
        if not dynamodb.is_condition_failure(exc):
            raise
        stored = dynamodb.usage_call(
            "get_item", Key=_delivery_key(webhook_id, event_id), ConsistentRead=True
        ).get("Item", {})
        return "delivered" if "deliveredAt" in stored else "busy"
    return "go"


def finish(webhook_id: str, event_id: str, delivered_at: str | None) -> None:
    """Release the lease: delivered (never attempted again) or free for the next attempt."""
    if delivered_at is None:
        update, values = "REMOVE leaseUntil", None
    else:
        update, values = "SET deliveredAt = :d REMOVE leaseUntil", {":d": text(delivered_at)}
    kwargs: dict[str, Any] = {"Key": _delivery_key(webhook_id, event_id), "UpdateExpression": update}
    if values:
        kwargs["ExpressionAttributeValues"] = values
    dynamodb.usage_call("update_item", **kwargs)


def record_attempt(attempt: Attempt, expires_at: int) -> None:
    item = {
        "pk": text(keys.hook_pk(attempt.webhook_id)),
        "sk": text(keys.attempt_sk(attempt.attempted_at, attempt.event_id)),
        "expiresAt": number(expires_at),
    } | {k: to_av(v) for k, v in attempt.model_dump(mode="json", by_alias=False).items() if v is not None}
    dynamodb.usage_call("put_item", Item=item)


def attempts(webhook_id: str, limit: int) -> list[Attempt]:
    """The latest `limit` attempts of an endpoint, newest first (one Query)."""
    low, high = keys.attempt_range()
    answer = dynamodb.usage_call(
        "query",
        KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
        ExpressionAttributeValues={
            ":pk": text(keys.hook_pk(webhook_id)),
            ":lo": text(low),
            ":hi": text(high),
        },
        ScanIndexForward=False,
        Limit=limit,
    )
    fields = set(Attempt.model_fields)
    return [
        Attempt.model_validate({k: from_av(v) for k, v in i.items() if k in fields})
        for i in answer.get("Items", [])
    ]
