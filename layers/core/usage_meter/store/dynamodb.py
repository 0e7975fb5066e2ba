"""The only module that talks to DynamoDB: key layout, (de)serialization, ClientError -> domain errors.

Key layout (UsageTable, pk/sk strings):
    pk = "DEV#<developerId>"
    sk = "D#<YYYY-MM-DD>#<metric>"   day counter; carries activeDay = "<day>#<shard>" (ActivityIndex)
    sk = "M#<YYYY-MM>#<metric>"      billing-period (calendar month) counter
    sk = "R#<YYYY-MM-DDTHH:MM>#*"    events recorded in one minute (rate reporting; TTL-deleted)
    sk = "S#<YYYY-MM>#<metric>"      month summary written by the rollup (SET, never ADD): the sum
                                     of the month's day counters (consumed, events, days with
                                     usage), closed (the month has ended), rolledUpAt
IdempotencyTable: pk = "<developerId>#<idempotencyKey>" (developer ids never contain "#").
AccountsTable:
    pk = "DEV#<developerId>", sk = "PROFILE"       developer profile (kind = "developer")
    pk = "DEV#<developerId>", sk = "KEY#<keyId>"   a key as its developer lists it (no plaintext)
    pk = "KEY#<sha256(key)>", sk = "KEY"           the authorizer's lookup item
    pk = "PLAN#<name>",       sk = "PLAN"          a plan (kind = "plan")
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from usage_meter import jsonutil
from usage_meter.config import settings
from usage_meter.errors import Busy, Conflict, NotFound
from usage_meter.jsonutil import number_text
from usage_meter.models import (
    ApiKeyRecord,
    Counter,
    CounterIncrement,
    CounterScope,
    Developer,
    IdempotencyRecord,
    MetricLimit,
    MonthSummary,
    Plan,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )

Item = dict[str, "AttributeValueTypeDef"]

_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
_RETRYABLE_ERRORS = {
    "TransactionInProgressException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


class CommitCancelled(Exception):
    """A TransactWriteItems was cancelled; nothing of it was applied.

    `duplicates` maps the position of an idempotency record in the commit to the record that
    already holds the key; `retryable` is true when contention or throttling took part.
    `over_limit` maps the position of a ceiling-conditioned increment that would have passed
    its ceiling to the counter's value at that moment.
    """

    def __init__(
        self,
        duplicates: dict[int, IdempotencyRecord],
        retryable: bool,
        over_limit: dict[int, Decimal] | None = None,
    ) -> None:
        super().__init__(f"transaction cancelled: {len(duplicates)} duplicate(s), retryable={retryable}")
        self.duplicates = duplicates
        self.retryable = retryable
        self.over_limit = over_limit or {}


@lru_cache(maxsize=1)
def client() -> DynamoDBClient:
    """One client per container; botocore's standard retry mode retries throttles and 5xx."""
    cfg = settings()
    return boto3.client(
        "dynamodb",
        region_name=cfg.region,
        endpoint_url=cfg.endpoint_url,
        # at most 3 tries of at most 1 + 2 s: a stuck call gives up (503) inside the 10 s
        # function timeout instead of being killed by it
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=1,
            read_timeout=2,
            tcp_keepalive=True,
        ),
    )


def reset() -> None:
    """Forget the cached client and settings (tests switch endpoints and tables)."""
    client.cache_clear()
    settings.cache_clear()


# ---- keys and attribute values ------------------------------------------------------------


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: Decimal | int) -> AttributeValueTypeDef:
    """Numbers in plain notation (1E-9 -> 0.000000001): exact, and understood by every engine."""
    return {"N": number_text(value) if isinstance(value, Decimal) else str(value)}


def developer_pk(developer_id: str) -> str:
    return f"DEV#{developer_id}"


_SCOPE_PREFIX = {"day": "D", "month": "M", "minute": "R"}
ACTIVITY_SHARDS = 8


def counter_sk(scope: CounterScope, key: str, metric: str) -> str:
    return f"{_SCOPE_PREFIX[scope]}#{key}#{metric}"


def activity_shard(developer_id: str) -> int:
    """Which of the ActivityIndex shards of a day a developer is listed under (stable, spread)."""
    return int(hashlib.sha256(developer_id.encode()).hexdigest()[:8], 16) % ACTIVITY_SHARDS


def activity_key(day: str, developer_id: str) -> str:
    return f"{day}#{activity_shard(developer_id)}"


def idempotency_pk(developer_id: str, idempotency_key: str) -> str:
    return f"{developer_id}#{idempotency_key}"


def _to_av(value: Any) -> AttributeValueTypeDef:
    """Plain JSON-ish Python (metadata) to an attribute value; Decimals stay exact."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return _n(value)
    if isinstance(value, dict):
        return {"M": {str(k): _to_av(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [_to_av(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def _from_av(value: Any) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        number = Decimal(inner)
        return int(number) if number == number.to_integral_value() and "." not in inner else number
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _from_av(v) for k, v in inner.items()}
    if kind == "L":
        return [_from_av(v) for v in inner]
    raise TypeError(f"unexpected attribute type {kind}")


def _record_item(record: IdempotencyRecord) -> Item:
    item: Item = {
        "pk": _s(idempotency_pk(record.developer_id, record.idempotency_key)),
        "developerId": _s(record.developer_id),
        "idempotencyKey": _s(record.idempotency_key),
        "payloadHash": _s(record.payload_hash),
        "metric": _s(record.metric),
        "quantity": _n(record.quantity),
        "eventTime": _s(record.event_time),
        "day": _s(record.day),
        "period": _s(record.period),
        "recordedAt": _s(record.recorded_at),
        "expiresAt": _n(record.expires_at),
    }
    if record.metadata is not None:
        # kept as JSON text: any JSON the API accepts is storable (DynamoDB's number range,
        # empty keys and nesting limits do not apply to a string)
        item["metadata"] = _s(jsonutil.dumps(record.metadata))
    return item


def _metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if "S" in value:
        parsed: dict[str, Any] = jsonutil.loads(value["S"])
        return parsed
    return dict(_from_av(value))  # records written before metadata was kept as text


def _record_from_item(item: dict[str, Any]) -> IdempotencyRecord:
    plain = {k: _from_av(v) for k, v in item.items()}
    return IdempotencyRecord(
        developer_id=plain["developerId"],
        idempotency_key=plain["idempotencyKey"],
        payload_hash=plain["payloadHash"],
        metric=plain["metric"],
        quantity=Decimal(item["quantity"]["N"]),
        event_time=plain["eventTime"],
        day=plain["day"],
        period=plain["period"],
        recorded_at=plain["recordedAt"],
        expires_at=int(plain["expiresAt"]),
        metadata=_metadata(item.get("metadata")),
    )


# ---- writes -------------------------------------------------------------------------------


def commit_events(
    records: Sequence[IdempotencyRecord],
    increments: Sequence[CounterIncrement],
    *,
    now_epoch: int,
    updated_at: str,
) -> None:
    """Write idempotency records and counter increments in one TransactWriteItems: all or nothing.

    A record is put only if its key is new or its earlier record has expired (checked here,
    not left to TTL deletion). A fresh ClientRequestToken per call makes botocore's own
    retries of this call (timeouts, 5xx) idempotent on DynamoDB's side for ten minutes.
    """
    cfg = settings()
    items: list[TransactWriteItemTypeDef] = [
        {
            "Put": {
                "TableName": cfg.idempotency_table,
                "Item": _record_item(record),
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": _n(now_epoch)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        for record in records
    ]
    items.extend(_increment_item(inc, updated_at) for inc in increments)
    try:
        client().transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code == "TransactionCanceledException":
            raise _cancelled(exc, records, increments) from exc
        if code in _RETRYABLE_ERRORS:
            raise CommitCancelled({}, retryable=True) from exc
        raise
    except BotoCoreError as exc:  # connection errors after botocore's own retries
        raise Busy("DynamoDB could not be reached; retry with the same idempotency key") from exc


def _increment_item(inc: CounterIncrement, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of one counter: ADD, plus the ceiling condition of a hard limit."""
    names: dict[str, str] = {
        "#c": "consumed",
        "#e": "events",
        "#d": "developerId",
        "#m": "metric",
        "#k": inc.scope,
        "#u": "updatedAt",
    }
    values: dict[str, AttributeValueTypeDef] = {
        ":q": _n(inc.quantity),
        ":e": _n(inc.events),
        ":d": _s(inc.developer_id),
        ":m": _s(inc.metric),
        ":k": _s(inc.key),
        ":u": _s(updated_at),
    }
    sets = "#d = :d, #m = :m, #k = :k, #u = :u"
    if inc.scope == "day":
        names["#a"] = "activeDay"
        values[":a"] = _s(activity_key(inc.key, inc.developer_id))
        sets += ", #a = :a"
    if inc.expires_at is not None:
        names["#x"] = "expiresAt"
        values[":x"] = _n(inc.expires_at)
        sets += ", #x = :x"
    update: Any = {
        "TableName": settings().usage_table,
        "Key": {
            "pk": _s(developer_pk(inc.developer_id)),
            "sk": _s(counter_sk(inc.scope, inc.key, inc.metric)),
        },
        "UpdateExpression": f"ADD #c :q, #e :e SET {sets}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if inc.ceiling is not None:
        # the limit check and the increment commit together: usage never passes the ceiling
        update["ConditionExpression"] = "attribute_not_exists(#c) OR #c <= :room"
        values[":room"] = _n(inc.ceiling - inc.quantity)
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": update}


def _cancelled(
    exc: ClientError, records: Sequence[IdempotencyRecord], increments: Sequence[CounterIncrement]
) -> CommitCancelled:
    """Read the per-item cancellation reasons: which keys exist already, which ceilings were hit,
    and was there contention."""
    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
    duplicates: dict[int, IdempotencyRecord] = {}
    over_limit: dict[int, Decimal] = {}
    retryable = not reasons  # no reasons at all: treat as contention
    for position, reason in enumerate(reasons):
        code = reason.get("Code", "None")
        if code == "ConditionalCheckFailed" and position >= len(records):
            index = position - len(records)
            item = reason.get("Item") or {}
            if "consumed" in item:
                over_limit[index] = Decimal(item["consumed"]["N"])
            else:  # no old value to judge by: read it again on the next attempt
                retryable = True
        elif code == "ConditionalCheckFailed" and position < len(records):
            held = (
                _record_from_item(reason["Item"])
                if reason.get("Item")
                else get_record(records[position].developer_id, records[position].idempotency_key)
            )
            if held is None:  # expired and deleted in between: simply try again
                retryable = True
            else:
                duplicates[position] = held
        elif code in _RETRYABLE_REASONS:
            retryable = True
        elif code not in ("None", ""):
            raise RuntimeError(f"transaction item {position} failed with {code}: {reason.get('Message')}")
    return CommitCancelled(duplicates, retryable, over_limit)


# ---- reads ----------------------------------------------------------------------------------


def _call(table: str, operation: str, **kwargs: Any) -> Any:
    """One DynamoDB call on a table: throttling and an unreachable DynamoDB (after botocore's
    own retries) become Busy, a 503 the client may retry; anything else is a bug and raises."""
    try:
        return getattr(client(), operation)(TableName=table, **kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _RETRYABLE_ERRORS:
            raise Busy("DynamoDB is throttling; retry shortly") from exc
        raise
    except BotoCoreError as exc:  # timeouts, connection errors
        raise Busy("DynamoDB could not be reached; retry shortly") from exc


def _usage_call(operation: str, **kwargs: Any) -> Any:
    return _call(settings().usage_table, operation, **kwargs)


def _accounts_call(operation: str, **kwargs: Any) -> Any:
    return _call(settings().accounts_table, operation, **kwargs)


def _query(developer_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {":pk": _s(developer_pk(developer_id)), ":lo": _s(low), ":hi": _s(high)},
        "ConsistentRead": True,
    }
    while True:
        page = _usage_call("query", **kwargs)
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def _counter(item: dict[str, Any]) -> Counter:
    prefix = item["sk"]["S"][0]
    scope: CounterScope = "day" if prefix == "D" else "month" if prefix == "M" else "minute"
    return Counter(
        developer_id=item["developerId"]["S"],
        scope=scope,
        key=item[scope]["S"],
        metric=item["metric"]["S"],
        consumed=Decimal(item["consumed"]["N"]),
        events=int(item["events"]["N"]),
    )


def day_counters(developer_id: str, first_day: str, last_day: str) -> list[Counter]:
    """Every day counter of a developer from first_day to last_day inclusive: one paginated Query."""
    return [_counter(i) for i in _query(developer_id, f"D#{first_day}#", f"D#{last_day}#~")]


def month_counters(developer_id: str, month: str) -> list[Counter]:
    """Every metric's billing-period counter of a developer for one month: one Query."""
    return [_counter(i) for i in _query(developer_id, f"M#{month}#", f"M#{month}#~")]


def minute_counter(developer_id: str, minute: str) -> Counter | None:
    """Events recorded for a developer in one minute (rate reporting)."""
    sk = counter_sk("minute", minute, "*")
    items = list(_query(developer_id, sk, sk))
    return _counter(items[0]) if items else None


def month_counter(developer_id: str, month: str, metric: str) -> Counter | None:
    """One metric's billing-period counter (strongly consistent)."""
    sk = counter_sk("month", month, metric)
    items = list(_query(developer_id, sk, sk))
    return _counter(items[0]) if items else None


def get_record(developer_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    """The idempotency record of a key (strongly consistent), or None."""
    answer = _call(
        settings().idempotency_table,
        "get_item",
        Key={"pk": _s(idempotency_pk(developer_id, idempotency_key))},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return _record_from_item(item) if item else None


# ---- accounts: developers, keys, plans ---------------------------------------------------------


def _developer_item(developer: Developer) -> Item:
    return {
        "pk": _s(developer_pk(developer.developer_id)),
        "sk": _s("PROFILE"),
        "kind": _s("developer"),
        "developerId": _s(developer.developer_id),
        "name": _s(developer.name),
        "plan": _s(developer.plan),
        "createdAt": _s(developer.created_at),
    }


def _developer(item: dict[str, Any]) -> Developer:
    return Developer(
        developer_id=item["developerId"]["S"],
        name=item["name"]["S"],
        plan=item["plan"]["S"],
        created_at=item["createdAt"]["S"],
    )


def put_developer(developer: Developer) -> None:
    """Create a developer; refuses to overwrite an existing id."""
    try:
        client().put_item(
            TableName=settings().accounts_table,
            Item=_developer_item(developer),
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise Conflict(
                f"developer {developer.developer_id} already exists", code="developer_exists"
            ) from exc
        raise


def get_developer(developer_id: str) -> Developer | None:
    """A developer's profile, strongly consistent (a plan change applies to the next request)."""
    answer = _accounts_call(
        "get_item", Key={"pk": _s(developer_pk(developer_id)), "sk": _s("PROFILE")}, ConsistentRead=True
    )
    item = answer.get("Item")
    return _developer(item) if item else None


def _by_kind(kind: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "IndexName": "KindIndex",
        "KeyConditionExpression": "kind = :k",
        "ExpressionAttributeValues": {":k": _s(kind)},
    }
    while True:
        page = _accounts_call("query", **kwargs)
        yield from page.get("Items", [])
        if not page.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def list_developers() -> list[Developer]:
    return [_developer(item) for item in _by_kind("developer")]


def set_developer_plan(developer_id: str, plan: str) -> None:
    try:
        client().update_item(
            TableName=settings().accounts_table,
            Key={"pk": _s(developer_pk(developer_id)), "sk": _s("PROFILE")},
            UpdateExpression="SET #p = :p",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#p": "plan"},
            ExpressionAttributeValues={":p": _s(plan)},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise NotFound(f"no developer {developer_id}", code="developer_not_found") from exc
        raise


def _key_lookup_pk(key_hash: str) -> str:
    return f"KEY#{key_hash}"


def _key_attributes(key: ApiKeyRecord) -> Item:
    item: Item = {
        "keyId": _s(key.key_id),
        "keyHash": _s(key.key_hash),
        "prefix": _s(key.prefix),
        "developerId": _s(key.developer_id),
        "role": _s(key.role),
        "status": _s(key.status),
        "createdAt": _s(key.created_at),
    }
    if key.last_used_at:
        item["lastUsedAt"] = _s(key.last_used_at)
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
        client().transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": cfg.accounts_table,
                        "Key": {"pk": _s(developer_pk(key.developer_id)), "sk": _s("PROFILE")},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": cfg.accounts_table,
                        "Item": {"pk": _s(_key_lookup_pk(key.key_hash)), "sk": _s("KEY"), **attributes},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": cfg.accounts_table,
                        "Item": {
                            "pk": _s(developer_pk(key.developer_id)),
                            "sk": _s(f"KEY#{key.key_id}"),
                            **attributes,
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons", [])
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise NotFound(f"no developer {key.developer_id}", code="developer_not_found") from exc
            raise Busy("could not store the key; try again") from exc
        raise


def get_key(key_hash: str) -> ApiKeyRecord | None:
    """The key whose sha256 is `key_hash` (the authorizer's one lookup)."""
    answer = _accounts_call("get_item", Key={"pk": _s(_key_lookup_pk(key_hash)), "sk": _s("KEY")})
    item = answer.get("Item")
    return _key(item) if item else None


def list_keys(developer_id: str) -> list[ApiKeyRecord]:
    answer = _accounts_call(
        "query",
        KeyConditionExpression="pk = :pk AND begins_with(sk, :k)",
        ExpressionAttributeValues={":pk": _s(developer_pk(developer_id)), ":k": _s("KEY#")},
        ConsistentRead=True,
    )
    return [_key(item) for item in answer.get("Items", [])]


def revoke_key(developer_id: str, key_id: str) -> ApiKeyRecord:
    """Mark a key revoked in both of its items at once."""
    listing_key = {"pk": _s(developer_pk(developer_id)), "sk": _s(f"KEY#{key_id}")}
    item = _accounts_call("get_item", Key=listing_key, ConsistentRead=True).get("Item")
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
                "ExpressionAttributeValues": {":revoked": _s("revoked")},
                "ConditionExpression": "attribute_exists(pk)",
            }
        }
        for key_of_item in (listing_key, {"pk": _s(_key_lookup_pk(key.key_hash)), "sk": _s("KEY")})
    ]
    client().transact_write_items(TransactItems=items)
    return key.model_copy(update={"status": "revoked"})


def touch_key(key: ApiKeyRecord, when: str) -> None:
    """Record when a key was last used (best effort; the authorizer calls it once per cache fill)."""
    for pk, sk in (
        (_key_lookup_pk(key.key_hash), "KEY"),
        (developer_pk(key.developer_id), f"KEY#{key.key_id}"),
    ):
        _accounts_call(
            "update_item",
            Key={"pk": _s(pk), "sk": _s(sk)},
            UpdateExpression="SET lastUsedAt = :t",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":t": _s(when)},
        )


def _plan_item(plan: Plan) -> Item:
    metrics: dict[str, Any] = {
        name: {"limit": limit.limit, "enforcement": limit.enforcement} for name, limit in plan.metrics.items()
    }
    item: Item = {
        "pk": _s(f"PLAN#{plan.name}"),
        "sk": _s("PLAN"),
        "kind": _s("plan"),
        "name": _s(plan.name),
        "metrics": _to_av(metrics),
    }
    if plan.requests_per_minute is not None:
        item["requestsPerMinute"] = _n(plan.requests_per_minute)
    return item


def _plan(item: dict[str, Any]) -> Plan:
    metrics = {
        name: MetricLimit(
            limit=Decimal(value["M"]["limit"]["N"]) if "N" in value["M"]["limit"] else None,
            enforcement=value["M"]["enforcement"]["S"],
        )
        for name, value in item.get("metrics", {"M": {}})["M"].items()
    }
    rpm = item.get("requestsPerMinute")
    return Plan(name=item["name"]["S"], metrics=metrics, requests_per_minute=int(rpm["N"]) if rpm else None)


def put_plan(plan: Plan) -> None:
    _accounts_call("put_item", Item=_plan_item(plan))


def get_plan(name: str) -> Plan | None:
    answer = _accounts_call("get_item", Key={"pk": _s(f"PLAN#{name}"), "sk": _s("PLAN")}, ConsistentRead=True)
    item = answer.get("Item")
    return _plan(item) if item else None


def list_plans() -> list[Plan]:
    return [_plan(item) for item in _by_kind("plan")]


def stack_outputs(stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs (the CLI reads table names from them)."""
    cfg = settings()
    cloudformation = boto3.client("cloudformation", region_name=cfg.region)
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}


# ---- rollup: the activity index and month summaries ------------------------------------------
#
# The rollup finds the developers active on a day through ActivityIndex (sparse, KEYS_ONLY:
# only day counters carry activeDay = "<day>#<shard>"), one Query per day and shard, and
# stores month summaries (sk "S#<YYYY-MM>#<metric>") as absolute values: an UpdateItem that
# SETs every attribute, never ADD, so writing a summary twice changes nothing.

ACTIVITY_INDEX = "ActivityIndex"


def active_developers(day: str, shard: int) -> Iterator[list[str]]:
    """Developers with a day counter on `day` listed under one ActivityIndex shard, a page at a time.

    A developer appears once per metric it used that day; each page is deduplicated, pages
    are not (the caller keeps what it has seen). The index is eventually consistent: a
    counter written a moment ago may be missing, and the next run finds it.
    """
    kwargs: dict[str, Any] = {
        "IndexName": ACTIVITY_INDEX,
        "KeyConditionExpression": "activeDay = :a",
        "ExpressionAttributeValues": {":a": _s(f"{day}#{shard}")},
        "ProjectionExpression": "pk",
    }
    while True:
        page = _usage_call("query", **kwargs)
        ids = dict.fromkeys(item["pk"]["S"].removeprefix("DEV#") for item in page.get("Items", []))
        if ids:
            yield list(ids)
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def summary_sk(month: str, metric: str) -> str:
    return f"S#{month}#{metric}"


def _summary(item: dict[str, Any]) -> MonthSummary:
    return MonthSummary(
        developer_id=item["developerId"]["S"],
        month=item["month"]["S"],
        metric=item["metric"]["S"],
        consumed=Decimal(item["consumed"]["N"]),
        events=int(item["events"]["N"]),
        days=int(item["days"]["N"]),
        closed=bool(item["closed"]["BOOL"]),
        rolled_up_at=item["rolledUpAt"]["S"],
    )


def month_summaries(developer_id: str, month: str) -> list[MonthSummary]:
    """Every metric's stored month summary of a developer for one month: one Query."""
    return [_summary(i) for i in _query(developer_id, f"S#{month}#", f"S#{month}#~")]


def put_summary(summary: MonthSummary) -> bool:
    """SET a month summary to absolute values, unless what is stored is as new or newer.

    Counters only grow, so a summary with more events was read later: the write is
    conditional on the stored one having fewer events (or as many, with a different sum or
    day count, or still open when this one is closed). A slower concurrent run therefore
    never puts an older sum back. Returns False when the condition kept what was stored.
    """
    values: dict[str, AttributeValueTypeDef] = {
        ":d": _s(summary.developer_id),
        ":k": _s(summary.month),
        ":m": _s(summary.metric),
        ":c": _n(summary.consumed),
        ":e": _n(summary.events),
        ":n": _n(summary.days),
        ":cl": {"BOOL": summary.closed},
        ":u": _s(summary.rolled_up_at),
    }
    same_events_but = "#c <> :c OR #n <> :n"
    if summary.closed:
        values[":open"] = {"BOOL": False}
        same_events_but += " OR #cl = :open"
    try:
        _usage_call(
            "update_item",
            Key={
                "pk": _s(developer_pk(summary.developer_id)),
                "sk": _s(summary_sk(summary.month, summary.metric)),
            },
            UpdateExpression="SET #d = :d, #k = :k, #m = :m, #c = :c, #e = :e, #n = :n, #cl = :cl, #u = :u",
            ConditionExpression=f"attribute_not_exists(#e) OR #e < :e OR (#e = :e AND ({same_events_but}))",
            ExpressionAttributeNames={
                "#d": "developerId",
                "#k": "month",
                "#m": "metric",
                "#c": "consumed",
                "#e": "events",
                "#n": "days",
                "#cl": "closed",
                "#u": "rolledUpAt",
            },
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True
