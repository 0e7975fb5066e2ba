"""Handlers against moto's DynamoDB, tables created from template.yaml."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from usage_meter.domain import accounts, clock
from usage_meter.store import dynamodb as store_db
from usage_meter_admin import cli
from usage_meter_local.invoke import Answer, LocalApi
from usage_meter_local.template import create_tables, function_environment, table_logical_ids

from helpers import DEV_A, DEV_B, SERVICE, naming, table_items

TABLES = {logical_id: f"test-{logical_id}" for logical_id in table_logical_ids()}
SERVICE_LOGGER = function_environment("TrackFunction", TABLES)["POWERTOOLS_SERVICE_NAME"]
# moto copies a table for every item of a transaction: a 100-event batch can take seconds on a
# busy machine, which must not decide outcomes here (the deadline is tested on DynamoDB Local)
MOTO_TIMEOUT_S = 900


@pytest.fixture(autouse=True)
def _service_logs_to_this_test() -> None:
    """The service's log handler writes to the stdout of the test running now: made during an
    earlier test (a handler module's first import), it holds that test's captured stream,
    which a capsys test reads as its own output or which is closed once that test ends."""
    for handler in logging.getLogger(SERVICE_LOGGER).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stdout  # not setStream: it flushes the old stream, maybe closed


@dataclass
class Stack:
    """The API plus direct access to its tables, for asserting what landed."""

    api: LocalApi
    dynamodb: Any
    usage_table: str
    idempotency_table: str
    accounts_table: str

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
        return self.call("POST", "/v1/usage/events", body=body, auth=auth, **kwargs)

    def current(self, *, auth: dict[str, Any] | None = DEV_A, **query: str) -> Answer:
        return self.call("GET", "/v1/usage", query=query or None, auth=auth)

    def history(self, *, auth: dict[str, Any] | None = DEV_A, **query: str) -> Answer:
        return self.call("GET", "/v1/usage/history", query=query or None, auth=auth)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in function_environment("TrackFunction", TABLES).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("ROLLUP_WORKERS", "1")  # moto is not thread-safe: the rollup runs in turn
    with mock_aws():
        store_db.reset()
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, TABLES)
        for identity in (DEV_A, DEV_B, SERVICE):
            accounts.create_developer(identity["developerId"], "pro", identity["developerId"])
        yield Stack(
            LocalApi(timeout_s=MOTO_TIMEOUT_S),
            dynamodb,
            TABLES["UsageTable"],
            TABLES["IdempotencyTable"],
            TABLES["AccountsTable"],
        )
    store_db.reset()


@pytest.fixture
def freeze(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the service's clock to a fixed instant."""

    def _set(moment: datetime) -> None:
        fixed = moment.astimezone(UTC)
        monkeypatch.setattr(clock, "now", lambda: fixed)

    return _set


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(stack: Stack, capsys: pytest.CaptureFixture[str]) -> Run:
    """`usage-meter <argv>` in-process: (exit code, stdout, stderr). An exception escaping
    main() is what a user would see as a traceback: it fails the test."""

    def _run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli.main(list(argv))
        except Exception as exc:
            pytest.fail(f"usage-meter {' '.join(argv)!r} raised {exc!r} instead of exiting with 'error: ...'")
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return _run


def accounts_items(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item of the accounts table, by (pk, sk)."""
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(stack.dynamodb, stack.accounts_table)}


def refused(stack: Stack, run: Run, *argv: str) -> str:
    """Run a command the CLI must refuse: exit code 1, nothing on stdout, nothing written to
    the accounts table; the one line it printed on stderr."""
    before = accounts_items(stack)
    code, out, err = run(*argv)
    assert (code, out) == (1, ""), err
    assert err.count("\n") == 1, err
    assert accounts_items(stack) == before
    return err
