"""A developer's metric catalog: the metrics its plans do not declare that it has used.

Each metric is an item, and the catalog's size is an item whose condition keeps it at most a
ceiling; both commit in the transaction of the first event that uses the metric, so the bound
holds however many requests race. What a container knows of a catalog is cached: an entry
never leaves a catalog, so the cache can only lack entries, and a claim of a metric that is
already there fails on its item and teaches the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from usage_meter.models.records import MetricClaim
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

MAX_CACHED_DEVELOPERS = 10_000
SIZE_ATTRIBUTE = "metrics"

_known: dict[str, set[str]] = {}
dynamodb.on_reset(_known.clear)

CatalogSlot = tuple[str, str | None]
"""What a claim item of a transaction is about: (developer, metric), or (developer, None) for
the catalog's size."""


def load(developer_id: str) -> set[str]:
    """Read a developer's catalog into the cache: one Query of at most the ceiling's items."""
    metrics = {item["metric"]["S"] for item in dynamodb.query_range(developer_id, *keys.catalog_range())}
    if developer_id not in _known and len(_known) >= MAX_CACHED_DEVELOPERS:
        _known.pop(next(iter(_known)))  # the oldest: the cache stays bounded
    _known[developer_id] = metrics
    return metrics


def catalogued(developer_id: str, metric: str) -> bool:
    """Whether `metric` is in the developer's catalog, as far as this container knows (the
    catalog is read once per developer and container)."""
    known = _known.get(developer_id)
    return metric in (known if known is not None else load(developer_id))


def learn(developer_id: str, metrics: Iterable[str]) -> None:
    """Metrics found in a developer's catalog (a claim of them failed: they are there)."""
    if developer_id in _known:
        _known[developer_id].update(metrics)


def slots(claims: Iterable[MetricClaim]) -> list[CatalogSlot]:
    """What each item of `claim_items(claims)` is about, in the same order."""
    return [
        slot for c in claims for slot in [*((c.developer_id, m) for m in c.metrics), (c.developer_id, None)]
    ]


def claim_items(claims: Iterable[MetricClaim], created_at: str) -> list[TransactWriteItemTypeDef]:
    """The Puts of new catalog entries (each only if absent) and the Update of each catalog's
    size (only while it stays at most its ceiling), to commit with the events using them."""
    table = settings().usage_table
    items: list[TransactWriteItemTypeDef] = []
    for claim in claims:
        pk = text(keys.developer_pk(claim.developer_id))
        items.extend(
            {
                "Put": {
                    "TableName": table,
                    "Item": {
                        "pk": pk,
                        "sk": text(keys.catalog_sk(metric)),
                        "developerId": text(claim.developer_id),
                        "metric": text(metric),
                        "createdAt": text(created_at),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for metric in claim.metrics
        )
        size: Any = {
            "TableName": table,
            "Key": {"pk": pk, "sk": text(keys.CATALOG_SIZE_SK)},
            "UpdateExpression": "ADD #n :k SET #d = :d",
            "ConditionExpression": "attribute_not_exists(#n) OR #n <= :room",
            "ExpressionAttributeNames": {"#n": SIZE_ATTRIBUTE, "#d": "developerId"},
            "ExpressionAttributeValues": {
                ":k": number(len(claim.metrics)),
                ":room": number(claim.ceiling - len(claim.metrics)),
                ":d": text(claim.developer_id),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        items.append({"Update": size})
    return items


def size_of(item: dict[str, Any]) -> int | None:
    """The catalog size an item returned by a failed condition holds (None if it has none)."""
    value = item.get(SIZE_ATTRIBUTE)
    return int(value["N"]) if value else None
