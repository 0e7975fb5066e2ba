"""Settings and the store's client: a missing variable, region or credential is said as such."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.exceptions import NoRegionError

from usage_meter.errors import Busy
from usage_meter.settings import MissingSetting, settings
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db

TABLES = {"USAGE_TABLE": "u", "IDEMPOTENCY_TABLE": "i", "ACCOUNTS_TABLE": "a"}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "DYNAMODB_ENDPOINT_URL", *TABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    store_db.reset()
    yield
    store_db.reset()


def test_missing_tables_are_named() -> None:
    with pytest.raises(MissingSetting) as caught:
        settings()
    assert caught.value.variables == ["USAGE_TABLE", "IDEMPOTENCY_TABLE", "ACCOUNTS_TABLE"]
    assert "USAGE_TABLE, IDEMPOTENCY_TABLE, ACCOUNTS_TABLE not set" in str(caught.value)


def test_one_missing_table_is_named_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACCOUNTS_TABLE")
    with pytest.raises(MissingSetting) as caught:
        settings()
    assert caught.value.variables == ["ACCOUNTS_TABLE"]


def test_no_region_is_said_as_such_not_as_an_unreachable_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TABLES.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(NoRegionError):
        account_store.get_developer("dev_alice")


def test_busy_is_only_for_dynamodb_itself() -> None:
    assert not issubclass(NoRegionError, Busy)
    assert NoRegionError in store_db.NOT_CONFIGURED


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("KEY_CACHE_SECONDS", "30", "key_cache_seconds", 30.0),
        ("KEY_CACHE_SECONDS", "3600", "key_cache_seconds", 60.0),
        ("KEY_CACHE_SECONDS", "junk", "key_cache_seconds", 60.0),
        ("ROLLUP_WORKERS", "3", "rollup_workers", 3),
        ("ROLLUP_LOOKBACK_DAYS", "40", "rollup_lookback_days", 40),
        ("GLYPHNET_REQUESTS_METER", "requests", "glyphnet_requests_meter", "requests"),
        ("GLYPHNET_REQUESTS_METER", " ", "glyphnet_requests_meter", "api_calls"),
    ],
)
def test_tunables(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    for name, table in TABLES.items():
        monkeypatch.setenv(name, table)
    monkeypatch.setenv(variable, value)
    assert getattr(settings(), field) == expected
