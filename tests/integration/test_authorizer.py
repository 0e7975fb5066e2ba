"""The Lambda authorizer, run as API Gateway runs it and called directly with payload-2.0 events.

Covers: header parsing (both styles, malformed keys refused before any DynamoDB call), unknown
and revoked keys, the in-container cache and its bound, both roles, lastUsedAt, and that the
key never reaches the logs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import logging
import random
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from usage_meter.domain import accounts, auth
from usage_meter.settings import settings
from usage_meter.store import dynamodb as store_db
from usage_meter_local.events import LambdaContext
from usage_meter_local.handlers import load_handler
from usage_meter_local.invoke import Answer
from usage_meter_local.template import function_environment, resources

from helpers import counters, summed, table_items
from integration.conftest import TABLES, Stack

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
BASE62 = string.digits + string.ascii_letters
MESSAGES = {
    "missing_key": "missing API key",
    "malformed_key": "malformed API key",
    "unknown_key": "unknown API key",
    "revoked_key": "revoked API key",
}


def well_formed_key(rng: random.Random | None = None) -> str:
    """A key of the right shape that was never issued."""
    rng = rng or random.Random()
    return "um_live_" + "".join(rng.choice(BASE62) for _ in range(32))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def api_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def assert_unauthorized(answer: Answer, reason: str) -> None:
    assert answer.status == 401, answer.body
    assert answer.json() == {"error": {"code": "unauthorized", "message": MESSAGES[reason]}}


@dataclass
class DynamoCalls:
    """Every DynamoDB operation the service's client makes (a before-call hook)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        self.calls.append((model.name, json.loads(body)))

    @property
    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()


def key_lookups(recorder: DynamoCalls) -> list[str]:
    """Operations on key items (pk KEY#<hash>), leaving out the handlers' own reads."""
    return [
        name
        for name, request in recorder.calls
        if request.get("Key", {}).get("pk", {}).get("S", "").startswith("KEY#")
    ]


class FakeMonotonic:
    """Stands in for `time` in usage_meter.auth: the cache clock moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _authorizer_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The authorizer's own environment from the template, and an empty cache around each test."""
    for name, value in function_environment("AuthorizerFunction", TABLES).items():
        monkeypatch.setenv(name, value)
    auth.clear_cache()
    yield
    auth.clear_cache()


@pytest.fixture
def db_calls(stack: Stack) -> Iterator[DynamoCalls]:
    recorder = DynamoCalls()
    client = store_db.client()
    client.meta.events.register("before-call.dynamodb.*", recorder)
    yield recorder
    client.meta.events.unregister("before-call.dynamodb.*", recorder)


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def authorizer_event(
    headers: dict[str, str] | None, method: str = "GET", path: str = "/v1/usage"
) -> dict[str, Any]:
    """A payload-2.0 REQUEST authorizer event as API Gateway sends it (no identity source)."""
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:abcdef123/$default/{method}{path}",
        "identitySource": [],
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef123",
            "domainName": "abcdef123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "10/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1794312000000,
        },
    }
    if headers is not None:
        event["headers"] = headers
    return event


Authorize = Callable[[dict[str, str] | None], dict[str, Any]]


@pytest.fixture
def authorize(stack: Stack) -> Authorize:
    """The authorizer function of the template, loaded from its folder like Lambda does."""
    handler = load_handler("functions/authorizer/")

    def _call(headers: dict[str, str] | None) -> dict[str, Any]:
        return handler(authorizer_event(headers), LambdaContext("AuthorizerFunction"))

    return _call


def get_usage(stack: Stack, headers: dict[str, str], **query: str) -> Answer:
    return stack.api.call("GET", "/v1/usage", headers=headers, query=query or None, run_authorizer=True)


def get_history(stack: Stack, headers: dict[str, str], **query: str) -> Answer:
    return stack.api.call(
        "GET", "/v1/usage/history", headers=headers, query=query or None, run_authorizer=True
    )


def track(stack: Stack, headers: dict[str, str], body: Any) -> Answer:
    return stack.api.call("POST", "/v1/usage/events", headers=headers, body=body, run_authorizer=True)


# ---- missing and malformed keys: 401 before any DynamoDB call --------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/usage", None),
        ("GET", "/v1/usage/history", None),
        ("POST", "/v1/usage/events", {"metric": "api_calls", "quantity": 1}),
    ],
)
def test_missing_key_is_401_without_touching_dynamodb(
    stack: Stack, db_calls: DynamoCalls, method: str, path: str, body: Any
) -> None:
    answer = stack.api.call(method, path, body=body, run_authorizer=True)
    assert_unauthorized(answer, "missing_key")
    assert answer.headers["content-type"] == "application/json"
    assert db_calls.operations == []
    assert table_items(stack.dynamodb, stack.usage_table) == []


BODY_31 = "A" * 31
BODY_33 = "A" * 33

# Each case builds the request headers from two real, active keys (alice's and bob's), so a
# refusal can only come from the shape of the header, never from an unknown key.
MALFORMED: dict[str, Callable[[str, str], dict[str, str]]] = {
    "test prefix": lambda k1, k2: api_key("um_test_" + k1[8:]),
    "upper-case prefix": lambda k1, k2: api_key("UM_LIVE_" + k1[8:]),
    "no prefix": lambda k1, k2: api_key(k1[8:]),
    "31 body chars": lambda k1, k2: api_key("um_live_" + BODY_31),
    "33 body chars": lambda k1, k2: api_key("um_live_" + BODY_33),
    "valid key plus one char": lambda k1, k2: api_key(k1 + "A"),
    "valid key minus one char": lambda k1, k2: api_key(k1[:-1]),
    "dash in body": lambda k1, k2: api_key(k1[:-1] + "-"),
    "underscore in body": lambda k1, k2: api_key(k1[:-1] + "_"),
    "accented letter in body": lambda k1, k2: api_key(k1[:-1] + "é"),
    "arabic-indic digit in body": lambda k1, k2: api_key(k1[:-1] + "\u0663"),
    "fullwidth letter in body": lambda k1, k2: api_key(k1[:-1] + "\uff21"),
    "space inside the key": lambda k1, k2: api_key(k1[:20] + " " + k1[21:]),
    "empty x-api-key": lambda k1, k2: api_key(""),
    "empty bearer": lambda k1, k2: {"Authorization": "Bearer "},
    "bare bearer": lambda k1, k2: {"Authorization": "Bearer"},
    "basic scheme": lambda k1, k2: {"Authorization": "Basic xxx"},
    "basic scheme with a valid key": lambda k1, k2: {"Authorization": f"Basic {k1}"},
    "token scheme with a valid key": lambda k1, k2: {"Authorization": f"Token {k1}"},
    "key without a scheme": lambda k1, k2: {"Authorization": k1},
    "empty authorization": lambda k1, k2: {"Authorization": ""},
    "two keys in bearer": lambda k1, k2: bearer(f"{k1} {k2}"),
    "same key twice in bearer": lambda k1, k2: bearer(f"{k1} {k1}"),
    "comma-joined keys in x-api-key": lambda k1, k2: api_key(f"{k1},{k2}"),
    "comma-joined keys in bearer": lambda k1, k2: bearer(f"{k1},{k2}"),
    "both headers, different keys": lambda k1, k2: {**bearer(k1), **api_key(k2)},
    "valid x-api-key, bad authorization": lambda k1, k2: {"Authorization": "Basic xxx", **api_key(k1)},
    "valid bearer, empty x-api-key": lambda k1, k2: {**bearer(k1), **api_key("")},
}


@pytest.fixture
def two_keys(stack: Stack) -> tuple[str, str]:
    return accounts.create_key("dev_alice").key, accounts.create_key("dev_bob").key


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_key_is_401_without_any_dynamodb_call(
    stack: Stack, authorize: Authorize, two_keys: tuple[str, str], db_calls: DynamoCalls, case: str
) -> None:
    headers = MALFORMED[case](*two_keys)
    # the authorizer on its own (the gateway hands payload-2.0 header names in lower case)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert authorize(lowered) == {"isAuthorized": True, "context": {"authError": "malformed_key"}}
    # and the whole request, as the gateway runs it
    for answer in (
        get_usage(stack, headers),
        track(stack, headers, {"metric": "api_calls", "quantity": 1}),
    ):
        assert_unauthorized(answer, "malformed_key")
    assert db_calls.operations == []
    assert table_items(stack.dynamodb, stack.usage_table) == []


@pytest.mark.parametrize("headers", [None, {}, {"content-type": "application/json", "x-api-keys": "x"}])
def test_no_key_header_in_the_authorizer_event(
    authorize: Authorize, db_calls: DynamoCalls, headers: dict[str, str] | None
) -> None:
    assert authorize(headers) == {"isAuthorized": True, "context": {"authError": "missing_key"}}
    assert db_calls.operations == []


def test_unknown_well_formed_key_is_401_after_exactly_one_get_item(
    stack: Stack, db_calls: DynamoCalls
) -> None:
    key = well_formed_key()

    assert_unauthorized(get_usage(stack, bearer(key)), "unknown_key")

    assert db_calls.operations == ["GetItem"]
    request = db_calls.calls[0][1]
    assert request["TableName"] == stack.accounts_table
    assert request["Key"] == {"pk": {"S": f"KEY#{sha256(key)}"}, "sk": {"S": "KEY"}}

    # the miss is cached too: retrying the same unknown key does not hammer the table
    db_calls.clear()
    assert_unauthorized(track(stack, api_key(key), {"metric": "api_calls", "quantity": 1}), "unknown_key")
    assert db_calls.operations == []


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "headers"),
    [
        ("GET", "/v1/usage", {"period": "year"}, None, {}),
        ("GET", "/v1/usage", {"developerId": "not valid!"}, None, {}),
        ("GET", "/v1/usage/history", {"days": "0"}, None, {}),
        ("POST", "/v1/usage/events", None, {}, {}),
        ("POST", "/v1/usage/events", None, "{not json", {}),
        ("POST", "/v1/usage/events", None, "metric=api_calls", {"content-type": "text/plain"}),
    ],
    ids=["bad-period", "bad-developer-id", "bad-days", "empty-body", "not-json", "not-json-content-type"],
)
def test_missing_key_is_401_even_when_the_request_is_also_invalid(
    stack: Stack,
    method: str,
    path: str,
    query: dict[str, str] | None,
    body: Any,
    headers: dict[str, str],
) -> None:
    """Design: a missing key is 401. An anonymous caller must not get the API's validation
    answers (422/400/415): authentication comes before request validation."""
    answer = stack.api.call(method, path, query=query, body=body, headers=headers, run_authorizer=True)
    assert_unauthorized(answer, "missing_key")


# ---- header styles and roles -------------------------------------------------------------------


@pytest.mark.parametrize(
    "style",
    [
        lambda key: bearer(key),
        lambda key: {"Authorization": f"bearer {key}"},
        lambda key: {"Authorization": f"BEARER  {key} "},
        lambda key: api_key(key),
        lambda key: {"X-Api-Key": f" {key}"},
        lambda key: {**bearer(key), **api_key(key)},
    ],
    ids=[
        "bearer",
        "lower-case-scheme",
        "upper-case-scheme-extra-spaces",
        "x-api-key",
        "x-api-key-padded",
        "both-same-key",
    ],
)
def test_both_header_styles_are_accepted(stack: Stack, style: Callable[[str], dict[str, str]]) -> None:
    key = accounts.create_key("dev_alice").key
    answer = get_usage(stack, style(key))
    assert answer.status == 200, answer.body
    assert answer.json()["developerId"] == "dev_alice"


@pytest.mark.parametrize(
    "headers",
    [
        lambda key: {"Authorization": f"Bearer {key}"},
        lambda key: {"authorization": f"Bearer {key}"},
        lambda key: {"X-API-Key": key},
        lambda key: {"x-api-key": key},
        lambda key: {"X-Api-Key": key, "AUTHORIZATION": f"Bearer {key}"},
    ],
    ids=["Authorization", "authorization", "X-API-Key", "x-api-key", "mixed-case-both"],
)
def test_authorizer_resolves_developer_and_role(
    authorize: Authorize, headers: Callable[[str], dict[str, str]]
) -> None:
    developer = accounts.create_key("dev_bob").key
    service = accounts.create_key("dev_provider", "service").key
    assert authorize(headers(developer)) == {
        "isAuthorized": True,
        "context": {"developerId": "dev_bob", "role": "developer"},
    }
    assert authorize(headers(service)) == {
        "isAuthorized": True,
        "context": {"developerId": "dev_provider", "role": "service"},
    }


def test_developer_key_reads_its_own_usage_and_cannot_track(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    key = accounts.create_key("dev_alice").key
    service = accounts.create_key("dev_provider", "service").key

    for refused in (
        track(stack, bearer(key), {"metric": "api_calls", "quantity": 3, "idempotencyKey": "e1"}),
        track(stack, api_key(key), {"metric": "api_calls", "quantity": 2, "developerId": "dev_alice"}),
    ):
        assert refused.status == 403, refused.body
        assert refused.json() == {"error": {"code": "forbidden", "message": "tracking needs a service key"}}
    assert table_items(stack.dynamodb, stack.usage_table) == []

    tracked = track(
        stack,
        bearer(service),
        {"metric": "api_calls", "quantity": 3, "idempotencyKey": "e1", "developerId": "dev_alice"},
    )
    assert tracked.status == 200, tracked.body
    assert tracked.json()["results"][0]["status"] == "recorded"
    named = track(stack, api_key(service), {"metric": "api_calls", "quantity": 2, "developerId": "dev_alice"})
    assert named.status == 200, named.body

    usage = get_usage(stack, bearer(key))
    assert usage.status == 200
    body = usage.json()
    assert (body["developerId"], body["plan"]) == ("dev_alice", "pro")
    assert body["metrics"]["api_calls"]["consumed"] == 5
    assert body["totalRequests"] == 2
    assert get_usage(stack, api_key(key), developerId="dev_alice").json()["developerId"] == "dev_alice"

    history = get_history(stack, bearer(key), days="2")
    assert history.status == 200
    assert history.json()["developerId"] == "dev_alice"
    assert [e["date"] for e in history.json()["entries"]] == ["2026-11-09", "2026-11-10"]
    assert history.json()["entries"][-1]["metrics"] == {"api_calls": 5}

    assert counters(stack.dynamodb, stack.usage_table) == {
        ("DEV#dev_alice", "D#2026-11-10#api_calls"): (Decimal(5), 2),
        ("DEV#dev_alice", "M#2026-11#api_calls"): (Decimal(5), 2),
    }


def test_service_key_must_name_a_developer(stack: Stack) -> None:
    key = accounts.create_key("dev_provider", "service").key
    for answer in (
        get_usage(stack, bearer(key)),
        get_history(stack, bearer(key)),
        track(stack, bearer(key), {"metric": "api_calls", "quantity": 1}),
    ):
        assert answer.status == 422, answer.body
        assert answer.json()["error"]["code"] == "developer_id_required"
    assert table_items(stack.dynamodb, stack.usage_table) == []


def test_service_key_acts_for_any_existing_developer(stack: Stack, freeze: Freeze) -> None:
    freeze(NOON)
    key = accounts.create_key("dev_provider", "service").key
    batch = {
        "events": [
            {"metric": "api_calls", "quantity": 5, "developerId": "dev_bob"},
            {"metric": "api_calls", "quantity": 2, "developerId": "dev_alice"},
        ]
    }
    answer = track(stack, api_key(key), batch)
    assert answer.status == 200, answer.body
    assert answer.json()["recorded"] == 2
    single = track(stack, bearer(key), {"metric": "tokens", "quantity": 7, "developerId": "dev_bob"})
    assert single.status == 200
    assert single.json()["usage"]["consumed"] == 7

    bob = get_usage(stack, bearer(key), developerId="dev_bob").json()
    alice = get_usage(stack, bearer(key), developerId="dev_alice").json()
    assert (
        bob["developerId"],
        bob["metrics"]["api_calls"]["consumed"],
        bob["metrics"]["tokens"]["consumed"],
    ) == (
        "dev_bob",
        5,
        7,
    )
    assert (alice["developerId"], alice["metrics"]) == (
        "dev_alice",
        {
            "api_calls": summed(
                {"consumed": 2, "limit": 100000, "remaining": 99998, "percentageUsed": 0}, 1, 2
            ),
            "tokens": summed(
                {"consumed": 0, "limit": 10000000, "remaining": 10000000, "percentageUsed": 0}, 0
            ),
        },
    )
    history = get_history(stack, bearer(key), developerId="dev_bob", days="1").json()
    assert history["entries"] == [
        {"date": "2026-11-10", "metrics": {"api_calls": 5, "tokens": 7}, "totalRequests": 2}
    ]
    # nothing was counted for the service's own developer
    assert not any(pk == "DEV#dev_provider" for pk, _ in counters(stack.dynamodb, stack.usage_table))


def test_service_key_naming_an_unknown_developer_is_404(stack: Stack) -> None:
    key = accounts.create_key("dev_provider", "service").key
    expected = {"error": {"code": "developer_not_found", "message": "no developer dev_nobody"}}
    for answer in (
        get_usage(stack, bearer(key), developerId="dev_nobody"),
        get_history(stack, bearer(key), developerId="dev_nobody"),
        track(stack, bearer(key), {"metric": "api_calls", "quantity": 1, "developerId": "dev_nobody"}),
    ):
        assert answer.status == 404, answer.body
        assert answer.json() == expected

    batch = track(
        stack,
        bearer(key),
        {
            "events": [
                {"metric": "api_calls", "quantity": 1, "developerId": "dev_nobody"},
                {"metric": "api_calls", "quantity": 1, "developerId": "dev_bob"},
            ]
        },
    )
    assert batch.status == 200
    assert batch.json()["results"][0] == {"index": 0, "status": "rejected", "error": expected["error"]}
    assert batch.json()["results"][1]["status"] == "recorded"
    assert {pk for pk, _ in counters(stack.dynamodb, stack.usage_table)} == {"DEV#dev_bob"}


def test_handlers_refuse_an_authorizer_context_without_a_valid_identity(stack: Stack) -> None:
    for context in (
        {"developerId": "dev_alice", "role": "admin"},
        {"developerId": "", "role": "developer"},
        {"role": "service"},
        {"authError": "something_new"},
    ):
        answer = stack.api.call("GET", "/v1/usage", authorizer=context)
        assert answer.status == 401, context
        assert answer.json()["error"]["code"] == "unauthorized"


# ---- revocation and the in-container cache ------------------------------------------------------


def test_revoked_key_is_401_once_the_cache_is_cleared(stack: Stack) -> None:
    created = accounts.create_key("dev_alice")
    assert get_usage(stack, bearer(created.key)).status == 200

    revoked = accounts.revoke_key("dev_alice", created.record.key_id)
    assert revoked.status == "revoked"
    assert get_usage(stack, bearer(created.key)).status == 200  # still cached in this container

    auth.clear_cache()
    assert_unauthorized(get_usage(stack, bearer(created.key)), "revoked_key")
    assert_unauthorized(
        track(stack, api_key(created.key), {"metric": "api_calls", "quantity": 1}), "revoked_key"
    )
    assert table_items(stack.dynamodb, stack.usage_table) == []


def test_revoked_key_is_401_at_once_without_a_cache(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_CACHE_SECONDS", "0")
    settings.cache_clear()  # settings are read once per container
    created = accounts.create_key("dev_alice")
    assert get_usage(stack, bearer(created.key)).status == 200

    accounts.revoke_key("dev_alice", created.record.key_id)

    assert_unauthorized(get_usage(stack, bearer(created.key)), "revoked_key")


def test_cached_key_keeps_working_until_the_cache_expires(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, monotonic: FakeMonotonic, db_calls: DynamoCalls
) -> None:
    monkeypatch.setenv("KEY_CACHE_SECONDS", "30")
    settings.cache_clear()  # settings are read once per container
    created = accounts.create_key("dev_alice")
    db_calls.clear()
    assert get_usage(stack, bearer(created.key)).status == 200
    accounts.revoke_key("dev_alice", created.record.key_id)

    start = monotonic.now  # the cache entry was filled at this instant
    monotonic.now = start + 29.75
    db_calls.clear()
    assert get_usage(stack, bearer(created.key)).status == 200
    assert key_lookups(db_calls) == []  # served from the cache (the handler reads the profile)

    monotonic.now = start + 30
    db_calls.clear()
    assert_unauthorized(get_usage(stack, bearer(created.key)), "revoked_key")
    assert db_calls.operations == ["GetItem"]  # the lookup, and no lastUsedAt for a revoked key


@pytest.mark.parametrize(
    ("configured", "effective"),
    [
        (None, 60.0),
        ("60", 60.0),
        ("30", 30.0),
        ("3600", 60.0),
        ("not-a-number", 60.0),
        ("0", 0.0),
        ("-5", 0.0),
    ],
)
def test_cache_lifetime_is_bounded_by_60_seconds(
    authorize: Authorize,
    monkeypatch: pytest.MonkeyPatch,
    monotonic: FakeMonotonic,
    configured: str | None,
    effective: float,
) -> None:
    if configured is None:
        monkeypatch.delenv("KEY_CACHE_SECONDS", raising=False)
        settings.cache_clear()  # settings are read once per container
    else:
        monkeypatch.setenv("KEY_CACHE_SECONDS", configured)
        settings.cache_clear()  # settings are read once per container
    created = accounts.create_key("dev_alice")
    headers = {"x-api-key": created.key}
    start = monotonic.now
    assert authorize(headers)["context"] == {"developerId": "dev_alice", "role": "developer"}
    accounts.revoke_key("dev_alice", created.record.key_id)

    if effective > 0:
        monotonic.now = start + effective - 0.25
        assert authorize(headers)["context"] == {"developerId": "dev_alice", "role": "developer"}
        monotonic.now = start + effective
    assert authorize(headers)["context"] == {"authError": "revoked_key"}


def test_authorizer_caches_lookups(authorize: Authorize, db_calls: DynamoCalls) -> None:
    first = accounts.create_key("dev_alice").key
    second = accounts.create_key("dev_bob").key
    db_calls.clear()

    assert authorize({"authorization": f"Bearer {first}"})["context"]["developerId"] == "dev_alice"
    assert db_calls.operations == ["GetItem", "UpdateItem"]  # lookup + lastUsedAt on the lookup item

    db_calls.clear()
    for headers in ({"authorization": f"Bearer {first}"}, {"x-api-key": first}):
        assert authorize(headers)["context"]["developerId"] == "dev_alice"
    assert db_calls.operations == []

    assert authorize({"x-api-key": second})["context"]["developerId"] == "dev_bob"
    assert db_calls.operations == ["GetItem", "UpdateItem"]
    assert db_calls.calls[0][1]["Key"]["pk"] == {"S": f"KEY#{sha256(second)}"}


def key_items(
    stack: Stack, key_hash: str, developer_id: str, key_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(stack.dynamodb, stack.accounts_table)}
    return items[(f"KEY#{key_hash}", "KEY")], items[(f"DEV#{developer_id}", f"KEY#{key_id}")]


def test_last_used_at_is_set_on_the_lookup_item_and_listed(
    stack: Stack, freeze: Freeze, monotonic: FakeMonotonic
) -> None:
    """The authorizer writes lastUsedAt on the key's lookup item only (its IAM allows no other
    item); listing a developer's keys reads it from there."""
    freeze(NOON)
    created = accounts.create_key("dev_bob")
    record = created.record
    lookup, listing = key_items(stack, record.key_hash, "dev_bob", record.key_id)
    assert "lastUsedAt" not in lookup
    assert [k.last_used_at for k in accounts.list_keys("dev_bob")] == [None]

    freeze(datetime(2026, 11, 10, 12, 30, 15, 250_000, tzinfo=UTC))
    assert get_usage(stack, bearer(created.key)).status == 200

    lookup, listing_after = key_items(stack, record.key_hash, "dev_bob", record.key_id)
    assert lookup["lastUsedAt"] == {"S": "2026-11-10T12:30:15.250Z"}
    assert listing_after == listing  # the developer's item is never written by the authorizer
    assert [k.last_used_at for k in accounts.list_keys("dev_bob")] == ["2026-11-10T12:30:15.250Z"]

    # a later call served from the cache does not write; the next lookup does
    freeze(datetime(2026, 11, 10, 12, 30, 30, tzinfo=UTC))
    assert get_usage(stack, bearer(created.key)).status == 200
    assert key_items(stack, record.key_hash, "dev_bob", record.key_id)[0]["lastUsedAt"] == {
        "S": "2026-11-10T12:30:15.250Z"
    }
    monotonic.now += 61
    assert get_usage(stack, bearer(created.key)).status == 200
    lookup, _ = key_items(stack, record.key_hash, "dev_bob", record.key_id)
    assert lookup["lastUsedAt"] == {"S": "2026-11-10T12:30:30.000Z"}
    assert [k.last_used_at for k in accounts.list_keys("dev_bob")] == ["2026-11-10T12:30:30.000Z"]


def _policy_conditions() -> dict[str, dict[str, Any]]:
    """The authorizer's DynamoDB conditions from template.yaml, by action."""
    properties = resources("AWS::Serverless::Function")["AuthorizerFunction"]["Properties"]
    return {
        action: statement.get("Condition", {})
        for policy in properties["Policies"]
        for statement in policy["Statement"]
        for action in statement["Action"]
    }


def _attribute_names(request: dict[str, Any]) -> set[str]:
    """Every attribute a request names: its key, and the names in its expressions."""
    names = set(request.get("Key", {}))
    aliases = request.get("ExpressionAttributeNames", {})
    for field_name in ("UpdateExpression", "ConditionExpression", "ProjectionExpression"):
        expression = re.sub(r"[A-Za-z_]+\(|:\w+", " ", request.get(field_name, ""))  # functions, values
        for word in re.findall(r"#?\w+", expression):
            if word.startswith("#"):
                names.add(aliases[word])
            elif word not in {"SET", "REMOVE", "AND", "OR", "NOT"}:
                names.add(word)
    return names


def test_every_authorizer_call_fits_its_least_privilege_policy(
    authorize: Authorize, db_calls: DynamoCalls, stack: Stack, monotonic: FakeMonotonic
) -> None:
    """What the authorizer does is what its IAM allows: items whose partition key matches
    dynamodb:LeadingKeys, and for writes only the attributes dynamodb:Attributes lists."""
    conditions = _policy_conditions()
    keys = [accounts.create_key("dev_alice"), accounts.create_key("dev_provider", "service")]
    accounts.revoke_key("dev_alice", accounts.create_key("dev_alice").record.key_id)
    db_calls.clear()
    for created in keys:
        authorize({"x-api-key": created.key})
    authorize({"x-api-key": well_formed_key()})
    monotonic.now += 61
    authorize({"x-api-key": keys[0].key})

    assert sorted(set(db_calls.operations)) == ["GetItem", "UpdateItem"]
    for operation, request in db_calls.calls:
        condition = conditions[f"dynamodb:{operation}"]
        (leading,) = condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert fnmatch.fnmatchcase(request["Key"]["pk"]["S"], leading), request
        if operation == "UpdateItem":
            allowed = set(condition["ForAllValues:StringEquals"]["dynamodb:Attributes"])
            assert _attribute_names(request) <= allowed, request
            assert (
                request.get("ReturnValues", "NONE")
                in condition["StringEqualsIfExists"]["dynamodb:ReturnValues"]
            )


def test_a_failed_last_used_write_does_not_refuse_the_key(authorize: Authorize, stack: Stack) -> None:
    created = accounts.create_key("dev_alice")

    def refuse_updates(model: Any, **_: Any) -> None:
        if model.name == "UpdateItem":
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "UpdateItem")

    client = store_db.client()
    client.meta.events.register("before-call.dynamodb.UpdateItem", refuse_updates)
    try:
        outcome = authorize({"x-api-key": created.key})
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", refuse_updates)

    assert outcome == {"isAuthorized": True, "context": {"developerId": "dev_alice", "role": "developer"}}
    lookup, _ = key_items(stack, created.record.key_hash, "dev_alice", created.record.key_id)
    assert "lastUsedAt" not in lookup


# ---- the key never reaches the logs ---------------------------------------------------------------


@dataclass
class LogCapture:
    stream: io.StringIO
    records: list[str]

    def text(self) -> str:
        return self.stream.getvalue() + "\n".join(self.records)


@pytest.fixture
def service_logs(stack: Stack, caplog: pytest.LogCaptureFixture) -> Iterator[LogCapture]:
    """Everything the service's loggers emit, at DEBUG: the formatted JSON lines and each raw
    record (message, args and extra fields)."""
    load_handler("functions/authorizer/")  # its Logger owns the service's log handler
    captured = LogCapture(io.StringIO(), [])

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.records.append(f"{record.getMessage()} {record.__dict__!r}")

    service = logging.getLogger("usage-meter")
    recorder = Recorder(logging.DEBUG)
    service.addHandler(recorder)
    swapped = [
        (h, h.setStream(captured.stream)) for h in service.handlers if isinstance(h, logging.StreamHandler)
    ]
    names = [
        n for n in logging.Logger.manager.loggerDict if n == "usage-meter" or n.startswith("usage-meter.")
    ]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.INFO)
    try:
        yield captured
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for handler, old in swapped:
            handler.setStream(old)
        service.removeHandler(recorder)


def test_authorizer_never_logs_the_key_or_its_hash(
    stack: Stack,
    authorize: Authorize,
    service_logs: LogCapture,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    active = accounts.create_key("dev_alice")
    service = accounts.create_key("dev_provider", "service")
    revoked = accounts.create_key("dev_bob")
    accounts.revoke_key("dev_bob", revoked.record.key_id)
    unknown = well_formed_key()
    malformed = active.key + "Z"
    secrets = [active.key, service.key, revoked.key, unknown, malformed]

    outcomes = [
        authorize({"authorization": f"Bearer {active.key}"}),
        authorize({"x-api-key": service.key}),
        authorize({"x-api-key": revoked.key}),
        authorize({"authorization": f"Bearer {unknown}"}),
        authorize({"x-api-key": malformed}),
        authorize({"authorization": f"Basic {active.key}"}),
        authorize({"authorization": f"Bearer {active.key}", "x-api-key": unknown}),
    ]
    auth.clear_cache()
    for key in secrets:  # the whole request path too: authorizer and handler
        get_usage(stack, bearer(key))
        track(stack, api_key(key), {"metric": "api_calls", "quantity": 1, "developerId": "dev_alice"})

    assert [o["context"].get("authError") for o in outcomes] == [
        None,
        None,
        "revoked_key",
        "unknown_key",
        "malformed_key",
        "malformed_key",
        "malformed_key",
    ]
    out, err = capsys.readouterr()
    logged = "\n".join([service_logs.text(), caplog.text, out, err])
    # the capture works: the authorizer's own lines are in it
    assert '"message":"authorized"' in service_logs.stream.getvalue()
    assert '"reason":"unknown_key"' in service_logs.stream.getvalue()
    assert '"reason":"revoked_key"' in service_logs.stream.getvalue()
    for secret in secrets:
        assert secret not in logged
        assert secret[8:] not in logged  # the key body without its prefix
        assert sha256(secret) not in logged
