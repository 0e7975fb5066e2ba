"""The one DynamoDB client of a container and the translation of its errors.

Every call to DynamoDB goes through this module: throttling and an unreachable DynamoDB
(after botocore's own retries) become `Busy`, a 503 the client may retry with the same
idempotency keys; anything else is a bug and raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from usage_meter.errors import Busy
from usage_meter.jsonutil import number_text
from usage_meter.settings import region, settings
from usage_meter.store import keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
NOT_CONFIGURED = (NoRegionError, NoCredentialsError, PartialCredentialsError)
"""botocore errors that mean this process was never given a region or credentials: said as
such (they are not an unreachable DynamoDB, and retrying will not help)."""

RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


RETRYABLE_ERRORS = {
    "TransactionInProgressException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


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


def error_code(exc: ClientError) -> str:
    """The error code of a ClientError ("" when there is none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def text(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number(value: Decimal | int) -> AttributeValueTypeDef:
    """Numbers in plain notation (1E-9 -> 0.000000001): exact, and understood by every engine."""
    return {"N": number_text(value) if isinstance(value, Decimal) else str(value)}


def to_av(value: Any) -> AttributeValueTypeDef:
    """Plain JSON-ish Python (metadata) to an attribute value; Decimals stay exact."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return number(value)
    if isinstance(value, dict):
        return {"M": {str(k): to_av(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [to_av(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_av(value: Any) -> Any:
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
        return {k: from_av(v) for k, v in inner.items()}
    if kind == "L":
        return [from_av(v) for v in inner]
    raise TypeError(f"unexpected attribute type {kind}")


def call(table: str, operation: str, **kwargs: Any) -> Any:
    """One DynamoDB call on a table: throttling and an unreachable DynamoDB (after botocore's
    own retries) become Busy, a 503 the client may retry; anything else is a bug and raises."""
    try:
        return getattr(client(), operation)(TableName=table, **kwargs)
    except ClientError as exc:
        if error_code(exc) in RETRYABLE_ERRORS:
            raise Busy("DynamoDB is throttling; retry shortly") from exc
        raise
    except NOT_CONFIGURED:
        raise
    except BotoCoreError as exc:  # timeouts, connection errors
        raise Busy("DynamoDB could not be reached; retry shortly") from exc


def usage_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().usage_table, operation, **kwargs)


def accounts_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().accounts_table, operation, **kwargs)


def query_range(developer_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": text(keys.developer_pk(developer_id)),
            ":lo": text(low),
            ":hi": text(high),
        },
        "ConsistentRead": True,
    }
    while True:
        page = usage_call("query", **kwargs)
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def idempotency_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().idempotency_table, operation, **kwargs)


def stack_outputs(stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs (the admin CLI reads table names from them)."""
    cloudformation = boto3.client("cloudformation", region_name=region())
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}
