"""Developers, API keys and plans in the accounts table."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from usage_meter.errors import Busy, Conflict, NotFound
from usage_meter.models.accounts import ApiKeyRecord, Developer, MetricLimit, Plan, PlanAssignment
from usage_meter.models.records import AccountCheck
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import Item, number, text, to_av

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef


REVISION = "revision"
T = TypeVar("T")
Revised = tuple[T, str | None]
"""An accounts item and its revision (None: written before revisions)."""


def revision_of(item: dict[str, Any]) -> str | None:
    value = item.get(REVISION, {}).get("S")
    return str(value) if value is not None else None


def _account_key(check: AccountCheck) -> Item:
    if check.stamp is not None:
        pk = keys.plan_pk(check.name) if check.kind == "plan" else keys.meter_pk(check.name)
        return {"pk": text(pk), "sk": text(keys.stamp_sk(check.stamp))}
    if check.kind == "developer":
        return {"pk": text(keys.developer_pk(check.name)), "sk": text(keys.PROFILE_SK)}
    if check.kind == "plan":
        return {"pk": text(keys.plan_pk(check.name)), "sk": text(keys.PLAN_SK)}
    return {"pk": text(keys.meter_pk(check.name)), "sk": text(keys.METER_SK)}


def check_item(check: AccountCheck) -> TransactWriteItemTypeDef:
    """A ConditionCheck that the accounts item is still as the request used it: its revision
    unchanged (or still none), or still absent. A check with a `stamp` is made on that stamp
    copy of the item's revision instead (written with the item; deleted with it), so the hot
    plan and meter items are not checked by every event."""
    body: Any = {"TableName": settings().accounts_table, "Key": _account_key(check)}
    if not check.exists:
        body["ConditionExpression"] = "attribute_not_exists(pk)"
    elif check.revision is None:
        body["ConditionExpression"] = "attribute_exists(pk) AND attribute_not_exists(#r)"
        body["ExpressionAttributeNames"] = {"#r": REVISION}
    else:
        body["ConditionExpression"] = "#r = :r"
        body["ExpressionAttributeNames"] = {"#r": REVISION}
        body["ExpressionAttributeValues"] = {":r": text(check.revision)}
    return {"ConditionCheck": body}


def stamp_puts(pk: str, revision: AttributeValueTypeDef) -> list[TransactWriteItemTypeDef]:
    """Every stamp copy of an item's new (stamped) revision, for the item's own transaction."""
    table = settings().accounts_table
    return [
        {
            "Put": {
                "TableName": table,
                "Item": {"pk": text(pk), "sk": text(keys.stamp_sk(k)), REVISION: revision},
            }
        }
        for k in range(keys.STAMP_COPIES)
    ]


def stamp_deletes(pk: str) -> list[TransactWriteItemTypeDef]:
    """Every stamp copy of a deleted item: a copy checked against one fails, as the item's would."""
    table = settings().accounts_table
    return [
        {"Delete": {"TableName": table, "Key": {"pk": text(pk), "sk": text(keys.stamp_sk(k))}}}
        for k in range(keys.STAMP_COPIES)
    ]


def _assignment(assignment: PlanAssignment) -> AttributeValueTypeDef:
    return {"M": {"plan": text(assignment.plan), "since": text(assignment.since)}}


def _developer_item(developer: Developer) -> Item:
    return {
        "pk": text(keys.developer_pk(developer.developer_id)),
        "sk": text(keys.PROFILE_SK),
        "kind": text("developer"),
        "developerId": text(developer.developer_id),
        "name": text(developer.name),
        "plan": text(developer.plan),
        "createdAt": text(developer.created_at),
        "planHistory": {"L": [_assignment(a) for a in developer.plan_history]},
        "revision": dynamodb.new_revision(),
    }


def _developer(item: dict[str, Any]) -> Developer:
    history = [
        PlanAssignment(plan=entry["M"]["plan"]["S"], since=entry["M"]["since"]["S"])
        for entry in item.get("planHistory", {}).get("L", [])
    ]
    return Developer(
        developer_id=item["developerId"]["S"],
        name=item["name"]["S"],
        plan=item["plan"]["S"],
        created_at=item["createdAt"]["S"],
        plan_history=history,
    )


def put_developer(developer: Developer) -> None:
    """Create a developer; refuses to overwrite an existing id."""
    try:
        dynamodb.client().put_item(
            TableName=settings().accounts_table,
            Item=_developer_item(developer),
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            raise Conflict(
                f"developer {developer.developer_id} already exists", code="developer_exists"
            ) from exc
        raise


def get_developer(developer_id: str) -> Developer | None:
    """A developer's profile, strongly consistent (a plan change applies to the next request)."""
    read = read_developer(developer_id)
    return read[0] if read else None


def read_developer(developer_id: str) -> Revised[Developer] | None:
    """A developer's profile and its revision, strongly consistent."""
    answer = dynamodb.accounts_call(
        "get_item",
        Key={"pk": text(keys.developer_pk(developer_id)), "sk": text(keys.PROFILE_SK)},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return (_developer(item), revision_of(item)) if item else None


def by_kind(kind: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every item of a kind, in pk order, a page (of at most `page_size` items) at a time."""
    kwargs: dict[str, Any] = {
        "IndexName": "KindIndex",
        "KeyConditionExpression": "kind = :k",
        "ExpressionAttributeValues": {":k": text(kind)},
    }
    if page_size is not None:
        kwargs["Limit"] = page_size
    while True:
        page = dynamodb.accounts_call("query", **kwargs)
        yield from page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def list_developers() -> list[Developer]:
    return [_developer(item) for item in by_kind("developer")]


def set_developer_plan(developer_id: str, assignment: PlanAssignment) -> None:
    """Move a developer to a plan from `assignment.since` on: the current plan and the history
    change in one write, so the two never disagree."""
    try:
        dynamodb.client().update_item(
            TableName=settings().accounts_table,
            Key={"pk": text(keys.developer_pk(developer_id)), "sk": text(keys.PROFILE_SK)},
            UpdateExpression="SET #p = :p, #h = list_append(if_not_exists(#h, :none), :entry), #r = :r",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#p": "plan", "#h": "planHistory", "#r": REVISION},
            ExpressionAttributeValues={
                ":r": dynamodb.new_revision(),
                ":p": text(assignment.plan),
                ":none": {"L": []},
                ":entry": {"L": [_assignment(assignment)]},
            },
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            raise NotFound(f"no developer {developer_id}", code="developer_not_found") from exc
        raise


def _key_attributes(key: ApiKeyRecord) -> Item:
    item: Item = {
        "keyId": text(key.key_id),
        "keyHash": text(key.key_hash),
        "prefix": text(key.prefix),
        "developerId": text(key.developer_id),
        "role": text(key.role),
        "status": text(key.status),
        "createdAt": text(key.created_at),
    }
    if key.last_used_at:
        item["lastUsedAt"] = text(key.last_used_at)
    return item


def _key(item: dict[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=item["keyId"]["S"],
        key_hash=item["keyHash"]["S"],
        prefix=item["prefix"]["S"],
        developer_id=item["developerId"]["S"],
        role=item["role"]["S"],
        status=item["status"]["S"],
        created_at=item["createdAt"]["S"],
        last_used_at=item.get("lastUsedAt", {}).get("S"),
    )


def put_key(key: ApiKeyRecord) -> None:
    """Store a new key: its lookup item and its listing item together, only for an existing developer."""
    cfg = settings()
    attributes = _key_attributes(key)
    try:
        dynamodb.client().transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": cfg.accounts_table,
                        "Key": {"pk": text(keys.developer_pk(key.developer_id)), "sk": text(keys.PROFILE_SK)},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": cfg.accounts_table,
                        "Item": {
                            "pk": text(keys.key_lookup_pk(key.key_hash)),
                            "sk": text(keys.KEY_SK),
                            **attributes,
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": cfg.accounts_table,
                        "Item": {
                            "pk": text(keys.developer_pk(key.developer_id)),
                            "sk": text(keys.key_listing_sk(key.key_id)),
                            **attributes,
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except ClientError as exc:
        if dynamodb.error_code(exc) == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise NotFound(f"no developer {key.developer_id}", code="developer_not_found") from exc
            raise Busy("could not store the key; try again") from exc
        raise


def get_key(key_hash: str) -> ApiKeyRecord | None:
    """The key whose sha256 is `key_hash` (the authorizer's one lookup)."""
    answer = dynamodb.accounts_call(
        "get_item", Key={"pk": text(keys.key_lookup_pk(key_hash)), "sk": text(keys.KEY_SK)}
    )
    item = answer.get("Item")
    return _key(item) if item else None


def list_keys(developer_id: str) -> list[ApiKeyRecord]:
    """A developer's keys, each with its last use (kept on the lookup item only: see touch_key)."""
    answer = dynamodb.accounts_call(
        "query",
        KeyConditionExpression="pk = :pk AND begins_with(sk, :k)",
        ExpressionAttributeValues={
            ":pk": text(keys.developer_pk(developer_id)),
            ":k": text(keys.KEY_LISTING_PREFIX),
        },
        ConsistentRead=True,
    )
    listed = [_key(item) for item in answer.get("Items", [])]
    return [key.model_copy(update={"last_used_at": _last_used(key.key_hash)}) for key in listed]


def _last_used(key_hash: str) -> str | None:
    """When the key was last used, from its lookup item (one GetItem: a developer has few keys)."""
    answer = dynamodb.accounts_call(
        "get_item",
        Key={"pk": text(keys.key_lookup_pk(key_hash)), "sk": text(keys.KEY_SK)},
        ProjectionExpression="lastUsedAt",
        ConsistentRead=True,
    )
    value = answer.get("Item", {}).get("lastUsedAt", {}).get("S")
    return str(value) if value else None


def revoke_key(developer_id: str, key_id: str) -> ApiKeyRecord:
    """Mark a key revoked in both of its items at once."""
    listing_key = {"pk": text(keys.developer_pk(developer_id)), "sk": text(keys.key_listing_sk(key_id))}
    item = dynamodb.accounts_call("get_item", Key=listing_key, ConsistentRead=True).get("Item")
    if not item:
        raise NotFound(f"developer {developer_id} has no key {key_id}", code="key_not_found")
    key = _key(item)
    cfg = settings()
    items: list[TransactWriteItemTypeDef] = [
        {
            "Update": {
                "TableName": cfg.accounts_table,
                "Key": key_of_item,
                "UpdateExpression": "SET #s = :revoked",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":revoked": text("revoked")},
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        for key_of_item in (
            listing_key,
            {"pk": text(keys.key_lookup_pk(key.key_hash)), "sk": text(keys.KEY_SK)},
        )
    ]
    dynamodb.client().transact_write_items(TransactItems=items)
    return key.model_copy(update={"status": "revoked"})


def delete_key(key: ApiKeyRecord) -> None:
    """Delete a key's lookup item and its listing item together (the key stops authenticating
    once the authorizer's cache expires)."""
    cfg = settings()
    dynamodb.client().transact_write_items(
        TransactItems=[
            {"Delete": {"TableName": cfg.accounts_table, "Key": item_key}}
            for item_key in (
                {
                    "pk": text(keys.developer_pk(key.developer_id)),
                    "sk": text(keys.key_listing_sk(key.key_id)),
                },
                {"pk": text(keys.key_lookup_pk(key.key_hash)), "sk": text(keys.KEY_SK)},
            )
        ]
    )


def delete_developer(developer_id: str) -> None:
    """Delete a developer's profile; its usage (another table) is kept."""
    try:
        dynamodb.accounts_call(
            "delete_item",
            Key={"pk": text(keys.developer_pk(developer_id)), "sk": text(keys.PROFILE_SK)},
            ConditionExpression="attribute_exists(pk)",
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            raise NotFound(f"no developer {developer_id}", code="developer_not_found") from exc
        raise


def touch_key(key: ApiKeyRecord, when: str) -> None:
    """Record when a key was last used, on its lookup item only (best effort; the authorizer
    calls it once per cache fill). The authorizer's role may write nothing else: no other
    item (its IAM allows only `KEY#` partitions) and no other attribute."""
    dynamodb.accounts_call(
        "update_item",
        Key={"pk": text(keys.key_lookup_pk(key.key_hash)), "sk": text(keys.KEY_SK)},
        UpdateExpression="SET lastUsedAt = :t",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeValues={":t": text(when)},
    )


def _plan_item(plan: Plan, revision: AttributeValueTypeDef) -> Item:
    metrics: dict[str, Any] = {
        name: {"limit": limit.limit, "enforcement": limit.enforcement}
        | ({"alerts": list(limit.alerts)} if limit.alerts is not None else {})
        for name, limit in plan.metrics.items()
    }
    item: Item = {
        "pk": text(keys.plan_pk(plan.name)),
        "sk": text(keys.PLAN_SK),
        "kind": text("plan"),
        "name": text(plan.name),
        "metrics": to_av(metrics),
        REVISION: revision,
    }
    if plan.requests_per_minute is not None:
        item["requestsPerMinute"] = number(plan.requests_per_minute)
    item["rateEnforcement"] = text(plan.rate_enforcement)
    return item


def _plan(item: dict[str, Any]) -> Plan:
    metrics = {
        name: MetricLimit(
            limit=Decimal(value["M"]["limit"]["N"]) if "N" in value["M"]["limit"] else None,
            enforcement=value["M"]["enforcement"]["S"],
            alerts=[int(a["N"]) for a in value["M"]["alerts"]["L"]] if "alerts" in value["M"] else None,
        )
        for name, value in item.get("metrics", {"M": {}})["M"].items()
    }
    rpm = item.get("requestsPerMinute")
    return Plan(
        name=item["name"]["S"],
        metrics=metrics,
        requests_per_minute=int(rpm["N"]) if rpm else None,
        rate_enforcement=item.get("rateEnforcement", {"S": "soft"})["S"],
    )


def put_plan(plan: Plan) -> None:
    """Store a plan with its revision stamps, in one transaction (the next event sees it)."""
    revision = dynamodb.new_revision(stamped=True)
    item: TransactWriteItemTypeDef = {
        "Put": {"TableName": settings().accounts_table, "Item": _plan_item(plan, revision)}
    }
    dynamodb.client_call(
        "transact_write_items", TransactItems=[item, *stamp_puts(keys.plan_pk(plan.name), revision)]
    )


def get_plan(name: str) -> Plan | None:
    read = read_plan(name)
    return read[0] if read else None


def read_plan(name: str) -> Revised[Plan] | None:
    """A stored plan and its revision, strongly consistent."""
    answer = dynamodb.accounts_call(
        "get_item", Key={"pk": text(keys.plan_pk(name)), "sk": text(keys.PLAN_SK)}, ConsistentRead=True
    )
    item = answer.get("Item")
    return (_plan(item), revision_of(item)) if item else None


def list_plans() -> list[Plan]:
    return [_plan(item) for item in by_kind("plan")]


def delete_plan(name: str) -> None:
    """Delete a plan and its revision stamps, in one transaction."""
    pk = keys.plan_pk(name)
    item: TransactWriteItemTypeDef = {
        "Delete": {"TableName": settings().accounts_table, "Key": {"pk": text(pk), "sk": text(keys.PLAN_SK)}}
    }
    dynamodb.client_call("transact_write_items", TransactItems=[item, *stamp_deletes(pk)])
