"""Engine tier: the real handlers against Amazon's DynamoDB Local, for what moto cannot show.

One DynamoDB Local per test (free port, in memory); fresh tables per test, created from
template.yaml under unique names. If the engine cannot start (no java, no npm, no jar), the
fixture fails: a missing engine is an error, never a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from usage_meter.domain import accounts, meters
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db
from usage_meter_local.dynamodb_local import DynamoDBLocal
from usage_meter_local.invoke import Answer, LocalApi
from usage_meter_local.template import create_tables, function_environment, table_logical_ids

from engine.support import Container, Setup, as_json
from helpers import DEV_A, SERVICE, naming

# Lines for the "engine numbers" section at the end of the run (conflicts, events/s, ...).
REPORT: list[str] = []
UNLIMITED_PLAN = "engine-unlimited"
# Lambda's longest timeout, for the containers of the concurrency tests: tens of them share two
# cores here, and a request waiting for the CPU must not run into the function's deadline (the
# deadline itself is tested in test_commit_outcomes.py, with the template's 10 s)
LOADED_MACHINE_TIMEOUT_S = 900


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("engine numbers")
        for line in REPORT:
            terminalreporter.write_line(line)


class _Spares:
    """Engines launched ahead, one at a time: the next test's engine starts while this one
    runs, so a test waits for its engine only as long as the rest of its start takes."""

    def __init__(self) -> None:
        self._next: DynamoDBLocal | None = None

    def take(self) -> DynamoDBLocal:
        engine = (self._next or _launch()).start()
        self._next = _launch()
        return engine

    def close(self) -> None:
        if self._next is not None:
            self._next.stop()


def _launch() -> DynamoDBLocal:
    return DynamoDBLocal(startup_timeout=120).launch()  # a free port, in memory


@pytest.fixture(scope="session")
def _spares() -> Iterator[_Spares]:
    spares = _Spares()
    yield spares
    spares.close()


@pytest.fixture
def dynamodb_local(_spares: _Spares) -> Iterator[DynamoDBLocal]:
    # one engine per test: DynamoDB Local, in memory with streams on, slowed to a crawl after
    # a few thousand transactions of earlier tests (their tables dropped), which a fresh
    # engine never is; the next one starts while this test runs
    engine = _spares.take()
    yield engine
    engine.stop()


@dataclass
class EngineStack:
    """The API (in-process, for sequential calls), containers for concurrent ones, and the tables."""

    api: LocalApi
    dynamodb: Any
    tables: dict[str, str]
    _containers: list[Container] = field(default_factory=list)

    @property
    def usage_table(self) -> str:
        return self.tables["UsageTable"]

    @property
    def idempotency_table(self) -> str:
        return self.tables["IdempotencyTable"]

    def call(self, method: str, path: str, *, auth: dict[str, Any] | None = DEV_A, **kwargs: Any) -> Answer:
        return self.api.call(method, path, authorizer=auth, **kwargs)

    def track(
        self,
        body: Any,
        *,
        developer: str | None = "dev_alice",
        auth: dict[str, Any] | None = SERVICE,
        **kwargs: Any,
    ) -> Answer:
        """Track as the provider's backend (the service key) for `developer`, named in every
        event that names none (see helpers.naming); developer=None sends the body as it is."""
        if developer is not None:
            body = naming(developer, body)
        return self.call("POST", "/v1/usage/events", body=as_json(body), auth=auth, **kwargs)

    def containers(
        self, count: int, setup: Setup | None = None, timeout_s: int = LOADED_MACHINE_TIMEOUT_S
    ) -> list[Container]:
        """`count` Lambda-like containers (forked now, before any client thread starts), each
        invocation given `timeout_s` (the function's timeout)."""
        started = [Container(setup, timeout_s) for _ in range(count)]
        self._containers.extend(started)
        return started

    def add_developers(
        self, developer_ids: Sequence[str], metrics: Sequence[str], sharded: Mapping[str, int] | None = None
    ) -> None:
        """Developers on a plan without limits, so that every event is counted; the metrics in
        `sharded` get a sum meter over that many shards."""
        for metric, shards in (sharded or {}).items():
            meters.create(meters.definition(name=metric, shards=shards))
        plan = Plan(name=UNLIMITED_PLAN, metrics={m: MetricLimit(limit=None) for m in metrics})
        account_store.put_plan(plan)
        for developer_id in developer_ids:
            accounts.create_developer(developer_id, UNLIMITED_PLAN, developer_id)


@pytest.fixture
def engine(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineStack]:
    suffix = uuid.uuid4().hex[:8]
    tables = {logical_id: f"{logical_id}-{suffix}" for logical_id in table_logical_ids()}
    dynamodb = dynamodb_local.client()
    create_tables(dynamodb, tables)
    for name, value in function_environment("TrackFunction", tables).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", dynamodb_local.endpoint_url)
    store_db.reset()
    api = LocalApi()
    for route in api.routes:  # imported once here, so forked containers start warm
        api.handler(route)
    stack = EngineStack(api, dynamodb, tables)
    yield stack
    for container in stack._containers:
        container.close()
    store_db.reset()
    for table in tables.values():  # keep the in-memory engine small across tests
        dynamodb.delete_table(TableName=table)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`report(text)` adds a line to the run's "engine numbers" section."""

    def add(text: str) -> None:
        REPORT.append(f"{request.node.name}: {text}")

    return add
