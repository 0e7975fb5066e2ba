"""At most 100 metrics per developer that its plan does not declare (422 `too_many_metrics`
beyond): what bounds every read answer (README, "Answer sizes").

Each new undeclared metric enters the developer's catalog (an item per metric and a size item
whose condition keeps it at most 100) in the transaction of its first event; a metric already
in the catalog, or one the plan declares, is never refused. The assertions read the catalog,
the counters and the idempotency records that landed in DynamoDB.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.store import dynamodb as store_db
from usage_meter.store import keys

from helpers import MADE_KEY, catalogs_in, counters, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ALICE = "dev_alice"  # on pro: api_calls and tokens declared
NAMES = [f"m{i:03d}".ljust(64, "x") for i in range(300)]  # 64-character metric names
TOO_MANY = "too_many_metrics"


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    return stack


def batch(api: Stack, metrics: list[str], developer: str = ALICE, key: str = "") -> list[dict[str, Any]]:
    events = [
        {"metric": m, "quantity": 1, **({"idempotencyKey": f"{key}{i}"} if key else {})}
        for i, m in enumerate(metrics)
    ]
    answer = api.track({"events": events}, developer=developer)
    assert answer.status == 200, answer.body
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def seed_catalog(api: Stack, metrics: list[str], developer: str = ALICE) -> None:
    """A catalog as the track pipeline leaves it (an item per metric, the size item), written
    directly: filling one through the API takes moto seconds per 100 events."""
    pk = {"S": keys.developer_pk(developer)}
    items = [
        {"pk": pk, "sk": {"S": keys.catalog_sk(m)}, "developerId": {"S": developer}, "metric": {"S": m}}
        for m in metrics
    ]
    items.append(
        {
            "pk": pk,
            "sk": {"S": keys.CATALOG_SIZE_SK},
            "developerId": {"S": developer},
            "metrics": {"N": str(len(metrics))},
        }
    )
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        api.dynamodb.batch_write_item(RequestItems={api.usage_table: requests})


def catalog(api: Stack, developer: str = ALICE) -> tuple[set[str], int]:
    return catalogs_in(table_items(api.dynamodb, api.usage_table)).get(developer, (set(), 0))


def month_metrics(api: Stack, developer: str = ALICE) -> set[str]:
    return {
        sk.split("#", 2)[2]
        for pk, sk in counters(api.dynamodb, api.usage_table)
        if pk == f"DEV#{developer}" and sk.startswith("M#")
    }


def test_the_101st_undeclared_metric_is_refused_and_nothing_of_it_lands(api: Stack) -> None:
    """Batches of 100 distinct 64-character names (the attack that made a year's history answer
    7.6 MB): the first 100 are recorded, the next 100 refused per item, and a year's history
    holds exactly the 100."""
    results = [r for start in (0, 100) for r in batch(api, NAMES[start : start + 100])]

    assert [r["status"] for r in results] == ["recorded"] * 100 + ["rejected"] * 100
    refused = results[100]
    assert refused["error"]["code"] == TOO_MANY
    assert refused["error"]["message"] == (
        f"dev_alice already uses 100 metrics its plan does not declare; {NAMES[100]} would be one more "
        "(declare it in the plan, or use a metric already in use)"
    )
    assert MADE_KEY.fullmatch(refused["idempotencyKey"])
    assert catalog(api) == (set(NAMES[:100]), 100)
    assert month_metrics(api) == set(NAMES[:100])
    records = table_items(api.dynamodb, api.idempotency_table)
    assert sorted(r["metric"]["S"] for r in records) == NAMES[:100]

    single = api.track({"metric": NAMES[250], "quantity": 1})
    assert single.status == 422
    assert single.json()["error"]["code"] == TOO_MANY
    assert catalog(api) == (set(NAMES[:100]), 100)
    assert len(table_items(api.dynamodb, api.idempotency_table)) == 100

    history = api.history(days="366")
    assert history.status == 200
    entries = history.json()["entries"]
    assert len(entries) == 366
    assert set(entries[-1]["metrics"]) == set(NAMES[:100])


def test_a_full_catalog_still_takes_its_own_and_the_plans_metrics(api: Stack) -> None:
    seed_catalog(api, NAMES[:100])
    results = batch(api, [NAMES[7], "api_calls", NAMES[100], "tokens", NAMES[99]])

    assert [r["status"] for r in results] == ["recorded", "recorded", "rejected", "recorded", "recorded"]
    assert catalog(api) == (set(NAMES[:100]), 100)  # declared metrics never enter it
    usage = api.current().json()["metrics"]
    assert (usage[NAMES[7]]["consumed"], usage["api_calls"]["consumed"], usage["tokens"]["consumed"]) == (
        1,
        1,
        1,
    )
    assert NAMES[100] not in usage


def test_a_batch_that_crosses_the_bound_records_exactly_what_fits(api: Stack) -> None:
    """98 in the catalog; a batch repeats old metrics and brings 5 new ones, twice each:
    the first 2 new metrics (all their events) fit, the other 3 are refused."""
    seed_catalog(api, NAMES[:98])
    metrics = [NAMES[0], NAMES[200], NAMES[201], NAMES[1], NAMES[202], NAMES[203], NAMES[204]]
    results = batch(api, metrics + metrics)

    statuses = [r["status"] for r in results]
    assert (
        statuses == ["recorded", "recorded", "recorded", "recorded", "rejected", "rejected", "rejected"] * 2
    )
    assert catalog(api) == ({*NAMES[:98], NAMES[200], NAMES[201]}, 100)
    usage = api.current().json()["metrics"]
    assert (usage[NAMES[0]]["consumed"], usage[NAMES[200]]["consumed"]) == (2, 2)


def test_the_bound_is_per_developer(api: Stack) -> None:
    seed_catalog(api, NAMES[:100])
    assert [r["status"] for r in batch(api, NAMES[100:103], developer="dev_bob")] == ["recorded"] * 3
    assert catalog(api, "dev_bob") == (set(NAMES[100:103]), 3)
    assert catalog(api) == (set(NAMES[:100]), 100)


def test_a_container_that_does_not_know_the_catalog_learns_it(api: Stack) -> None:
    """A container that read the catalog before another one added a metric (its cache lacks
    it) and then sends that metric: its claim fails on the metric's item, the event is
    recorded, the catalog's size does not move."""
    seed_catalog(api, NAMES[:59])
    assert batch(api, [NAMES[3]])[0]["status"] == "recorded"  # this container reads the catalog: 59
    seed_catalog(api, NAMES[:60])  # another container adds NAMES[59]
    assert [r["status"] for r in batch(api, [NAMES[59], NAMES[60]])] == ["recorded", "recorded"]
    assert catalog(api) == (set(NAMES[:61]), 61)
    store_db.reset()  # a new container: reads the catalog afresh
    assert batch(api, [NAMES[60]])[0]["status"] == "recorded"
    assert catalog(api) == (set(NAMES[:61]), 61)
    assert api.current().json()["metrics"][NAMES[60]]["consumed"] == 2


def test_a_duplicate_of_a_recorded_event_stays_a_duplicate_when_the_catalog_is_full(api: Stack) -> None:
    seed_catalog(api, NAMES[:98])
    first = batch(api, [NAMES[200], NAMES[201]], key="k")
    assert [r["status"] for r in first] == ["recorded", "recorded"]
    assert catalog(api) == ({*NAMES[:98], NAMES[200], NAMES[201]}, 100)
    replay = batch(api, [NAMES[200], NAMES[201], NAMES[202]], key="k")
    assert [r["status"] for r in replay] == ["duplicate", "duplicate", "rejected"]
    assert replay[2]["error"]["code"] == TOO_MANY
    assert counters(api.dynamodb, api.usage_table)[(f"DEV#{ALICE}", f"M#2026-11#{NAMES[200]}")] == (
        Decimal(1),
        1,
    )
