"""One hot developer under the partition simulator: throttled as a real partition would be,
counted exactly.

The simulator (usage_meter_local.partitions) refuses any write that would take one item past
its WCU ceiling in a rolling second, with DynamoDB's own throttling answers, in every
container at once (the ledger is shared). The ceiling is scaled down (10 WCU/s: 5
transactions a second on one counter) so that this machine, whose DynamoDB Local takes a few
transactions a second from a single developer's clients, saturates it in a few seconds:
single events are throttled, the service retries, clients resend what comes back
temporarily_unavailable with the same key (as the SDK does), and every event is counted
exactly once. The SDK's background batching meets the same simulator through a container.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from usage_meter.store import dynamodb as store_db
from usage_meter_client import BatchOptions, UsageMeter
from usage_meter_local.partitions import Ledger, Partitions, shared_ledger

from engine.conftest import EngineStack
from engine.support import Container, as_json, run_threads, track
from helpers import SERVICE, counters, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]
CEILING = 10.0
DEVELOPER = "dev_hot"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with shared_ledger(CEILING) as shared:
        yield shared


def simulated(ledger: Ledger) -> Callable[[], None]:
    """A container setup: its DynamoDB client goes through the shared partition simulator."""
    return lambda: Partitions(ledger).install(store_db.client())


def month_total(engine: EngineStack) -> tuple[Decimal, int]:
    found = {
        sk: value
        for (pk, sk), value in counters(engine.dynamodb, engine.usage_table).items()
        if pk == f"DEV#{DEVELOPER}"
    }
    months = [value for sk, value in found.items() if sk.startswith("M#")]
    return sum((v[0] for v in months), Decimal(0)), sum(v[1] for v in months)


def resend_until_counted(container: Container, event: dict[str, Any]) -> str:
    """Send one keyed event, resending it unchanged while it is temporarily unavailable."""
    for attempt in range(40):
        answer = track(container, event, SERVICE)
        if answer.status == 200:
            status = str(answer.json()["results"][0]["status"])
            if status in ("recorded", "duplicate"):
                return status
        time.sleep(min(0.5, 0.02 * 2**attempt))
    raise AssertionError(f"{event['idempotencyKey']} never counted")


def test_single_events_are_throttled_and_counted_once(
    engine: EngineStack, ledger: Ledger, report: Report
) -> None:
    engine.add_developers([DEVELOPER], ["api_calls"])
    containers = engine.containers(4, simulated(ledger))
    sent = 40
    events = [
        {"developerId": DEVELOPER, "metric": "api_calls", "quantity": 1, "idempotencyKey": f"hot-{i:03d}"}
        for i in range(sent)
    ]
    statuses: list[str] = []

    def work(index: int, container: Container) -> None:
        statuses.extend(resend_until_counted(container, e) for e in events[index :: len(containers)])

    seconds = run_threads(containers, work)
    stats = ledger.stats()
    assert stats.get("throttled:TransactWriteItems", 0) > 0, stats  # the hot counter was throttled
    assert all(peak <= CEILING for _, peak in ledger.hottest())
    assert month_total(engine) == (Decimal(sent), sent)  # each event once, none lost
    assert len(table_items(engine.dynamodb, engine.idempotency_table)) == sent
    assert statuses.count("recorded") == sent
    report(
        f"{sent} single events in {seconds:.1f} s ({sent / seconds:.0f}/s) at a {CEILING:.0f} WCU/s "
        f"ceiling: {stats.get('throttled:TransactWriteItems', 0)} throttled transactions"
    )


def test_sdk_batching_meets_the_simulator_and_stays_exact(
    engine: EngineStack, ledger: Ledger, report: Report
) -> None:
    engine.add_developers([DEVELOPER], ["api_calls"])
    containers = engine.containers(2, simulated(ledger))
    per_client = 300
    futures: list[Any] = []

    def work(index: int, container: Container) -> None:
        def forward(request: httpx.Request) -> httpx.Response:
            answer = container.call(
                "POST", request.url.path, body=as_json(request.content.decode()), authorizer=SERVICE
            )
            return httpx.Response(answer.status, content=answer.body.encode(), headers=answer.headers)

        options = BatchOptions(flush_interval=0.05, max_pending=200)  # a small queue: back-pressure too
        with UsageMeter(
            api_key="um_live_" + "e" * 32,
            base_url="http://engine.test",
            transport=httpx.MockTransport(forward),
            batching=options,
            backoff=0.05,
        ) as client:
            futures.extend(
                client.usage.submit("api_calls", 1, developer_id=DEVELOPER) for _ in range(per_client)
            )

    seconds = run_threads(containers, work)
    sent = per_client * len(containers)
    assert {f.result(0).status for f in futures} == {"recorded"}
    assert month_total(engine) == (Decimal(sent), sent)
    assert all(peak <= CEILING for _, peak in ledger.hottest())
    report(
        f"{sent} events through SDK batching in {seconds:.1f} s ({sent / seconds:.0f}/s) at {CEILING:.0f} WCU/s"
    )
