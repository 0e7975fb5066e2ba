"""Tenant isolation through real keys and the real authorizer: a developer key never reads,
writes or replays another developer's data, whatever developerId it names, and never tracks
(only the provider's service key does)."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import accounts, auth
from usage_meter.models.wire import DEVELOPER_ID_PATTERN
from usage_meter_local.invoke import Answer

from helpers import counters, naming, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)

# Bob's usage is distinctive: if any of it shows up in an answer to Alice, it leaked.
BOB_METRIC = "bob_secret_metric"
BOB_QUANTITY = "4242.424242424"
FORBIDDEN = {"error": {"code": "forbidden", "message": "a developer key can only act for its own developer"}}
NO_TRACKING = {"error": {"code": "forbidden", "message": "tracking needs a service key"}}


@pytest.fixture(autouse=True)
def _empty_key_cache() -> Iterator[None]:
    auth.clear_cache()
    yield
    auth.clear_cache()


class Tenants:
    """Alice and Bob, each with a developer key, the provider's service key, and some
    distinctive usage of Bob's."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.alice = accounts.create_key("dev_alice").key
        self.bob = accounts.create_key("dev_bob").key
        self.service = accounts.create_key("dev_provider", "service").key

    def call(self, key: str, method: str, path: str, **kwargs: Any) -> Answer:
        return self.stack.api.call(
            method, path, headers={"Authorization": f"Bearer {key}"}, run_authorizer=True, **kwargs
        )

    def track(self, key: str, body: Any) -> Answer:
        return self.call(key, "POST", "/v1/usage/events", body=body)

    def track_for(self, developer_id: str, body: Any) -> Answer:
        """What the provider's backend tracks for a developer, with the service key."""
        return self.track(self.service, naming(developer_id, body))

    def usage(self, key: str, **query: str) -> Answer:
        return self.call(key, "GET", "/v1/usage", query=query or None)

    def history(self, key: str, **query: str) -> Answer:
        return self.call(key, "GET", "/v1/usage/history", query=query or None)

    def counters_of(self, developer_id: str) -> dict[tuple[str, str], tuple[Decimal, int]]:
        return {
            key: value
            for key, value in counters(self.stack.dynamodb, self.stack.usage_table).items()
            if key[0] == f"DEV#{developer_id}"
        }


@pytest.fixture
def tenants(stack: Stack, freeze: Freeze) -> Tenants:
    freeze(NOON)
    t = Tenants(stack)
    bob = t.track(
        t.service,
        f'{{"developerId": "dev_bob", "metric": "{BOB_METRIC}", "quantity": {BOB_QUANTITY}, "idempotencyKey": "b-1"}}',
    )
    assert bob.status == 200, bob.body
    alice = t.track_for("dev_alice", {"metric": "api_calls", "quantity": 1})
    assert alice.status == 200, alice.body
    t.alice_made = (
        f"dev_alice#{alice.json()['results'][0]['idempotencyKey']}"  # the record of a keyless event
    )
    return t


def test_setup_bob_has_distinctive_usage(tenants: Tenants) -> None:
    assert tenants.counters_of("dev_bob") == {
        ("DEV#dev_bob", f"D#2026-11-10#{BOB_METRIC}"): (Decimal(BOB_QUANTITY), 1),
        ("DEV#dev_bob", f"M#2026-11#{BOB_METRIC}"): (Decimal(BOB_QUANTITY), 1),
    }
    own = tenants.usage(tenants.bob).json()
    assert own["metrics"][BOB_METRIC]["consumed"] == Decimal(BOB_QUANTITY)
    assert BOB_QUANTITY in tenants.usage(tenants.bob).body


@pytest.mark.parametrize(
    "query",
    [
        {"developerId": "dev_bob"},
        {"developerId": "dev_bob", "metric": BOB_METRIC},
        {"developerId": "dev_bob", "period": "day"},
        {"developerId": "dev_bob", "startDate": "2026-11-01", "endDate": "2026-11-10"},
    ],
)
def test_developer_key_cannot_read_another_developers_usage(tenants: Tenants, query: dict[str, str]) -> None:
    answer = tenants.usage(tenants.alice, **query)
    assert answer.status == 403
    assert answer.json() == FORBIDDEN


@pytest.mark.parametrize(
    "query",
    [
        {"developerId": "dev_bob"},
        {"developerId": "dev_bob", "days": "366"},
        {"developerId": "dev_bob", "granularity": "month"},
        {"developerId": "dev_bob", "metric": BOB_METRIC, "startDate": "2026-11-10"},
    ],
)
def test_developer_key_cannot_read_another_developers_history(
    tenants: Tenants, query: dict[str, str]
) -> None:
    answer = tenants.history(tenants.alice, **query)
    assert answer.status == 403
    assert answer.json() == FORBIDDEN


@pytest.mark.parametrize(
    "body",
    [
        {"metric": "api_calls", "quantity": 5},
        {"metric": "api_calls", "quantity": 5, "developerId": "dev_alice", "idempotencyKey": "a-1"},
        {"metric": BOB_METRIC, "quantity": 5, "developerId": "dev_bob", "idempotencyKey": "x-1"},
        {
            "events": [
                {"metric": "api_calls", "quantity": 2, "idempotencyKey": "mine-1"},
                {"metric": BOB_METRIC, "quantity": 7, "developerId": "dev_bob", "idempotencyKey": "theirs"},
                {"metric": "api_calls", "quantity": 3, "developerId": "dev_alice"},
            ]
        },
    ],
    ids=["own", "own-named", "another-developer", "batch"],
)
def test_developer_key_cannot_track(stack: Stack, tenants: Tenants, body: dict[str, Any]) -> None:
    """Developer keys only read: any track is 403 as a whole, for herself or anyone else, single
    or batch, and nothing lands (never silently rewritten to Alice, never partly recorded)."""
    before = counters(stack.dynamodb, stack.usage_table)
    records_before = table_items(stack.dynamodb, stack.idempotency_table)

    answer = tenants.track(tenants.alice, body)

    assert answer.status == 403
    assert answer.json() == NO_TRACKING
    assert counters(stack.dynamodb, stack.usage_table) == before
    assert table_items(stack.dynamodb, stack.idempotency_table) == records_before


def test_developer_key_cannot_pre_claim_the_providers_idempotency_key(stack: Stack, tenants: Tenants) -> None:
    """The billing bypass: Alice, with her own key, used to take the key of the provider's next
    event first ("invoice-42", 1 token), so that the provider's 90,000 tokens were answered 409
    and never counted."""
    claim = tenants.track(tenants.alice, {"metric": "tokens", "quantity": 1, "idempotencyKey": "invoice-42"})
    assert claim.status == 403
    assert claim.json() == NO_TRACKING

    billed = tenants.track_for(
        "dev_alice", {"metric": "tokens", "quantity": 90_000, "idempotencyKey": "invoice-42"}
    )

    assert billed.status == 200, billed.body
    assert billed.json()["results"][0]["status"] == "recorded"
    assert billed.json()["usage"]["consumed"] == 90_000
    assert tenants.counters_of("dev_alice")[("DEV#dev_alice", "M#2026-11#tokens")] == (Decimal(90_000), 1)
    record = next(
        i
        for i in table_items(stack.dynamodb, stack.idempotency_table)
        if i["pk"]["S"] == "dev_alice#invoice-42"
    )
    assert record["quantity"]["N"] == "90000"


def test_idempotency_keys_are_scoped_per_developer(stack: Stack, tenants: Tenants) -> None:
    event = {"metric": "api_calls", "quantity": 2, "idempotencyKey": "abc"}

    alice_first = tenants.track_for("dev_alice", event)
    bob_first = tenants.track_for("dev_bob", event)  # the very same payload and key: not Alice's replay
    bob_other = tenants.track_for("dev_bob", {**event, "quantity": 9, "idempotencyKey": "b-1x"})

    assert alice_first.json()["results"][0]["status"] == "recorded"
    assert bob_first.status == 200
    assert bob_first.json()["results"][0]["status"] == "recorded"
    assert bob_first.json()["usage"]["consumed"] == 2  # Bob's own counter, not Alice's 1 + 2
    assert bob_other.json()["results"][0]["status"] == "recorded"

    alice_again = tenants.track_for("dev_alice", event)
    bob_again = tenants.track_for("dev_bob", event)
    assert alice_again.json()["results"][0]["status"] == "duplicate"
    assert alice_again.json()["usage"]["consumed"] == 3
    assert bob_again.json()["results"][0]["status"] == "duplicate"
    assert bob_again.json()["usage"]["consumed"] == 11

    # Bob's own key "b-1" (used for his distinctive event) means nothing for Alice
    alice_b1 = tenants.track_for("dev_alice", {"metric": "api_calls", "quantity": 4, "idempotencyKey": "b-1"})
    assert alice_b1.status == 200
    assert alice_b1.json()["results"][0]["status"] == "recorded"
    assert BOB_QUANTITY not in alice_b1.body
    assert BOB_METRIC not in alice_b1.body

    assert tenants.counters_of("dev_alice")[("DEV#dev_alice", "M#2026-11#api_calls")] == (Decimal(7), 3)
    assert tenants.counters_of("dev_bob")[("DEV#dev_bob", "M#2026-11#api_calls")] == (Decimal(11), 2)
    assert sorted(i["pk"]["S"] for i in table_items(stack.dynamodb, stack.idempotency_table)) == sorted(
        ["dev_alice#abc", "dev_alice#b-1", tenants.alice_made, "dev_bob#abc", "dev_bob#b-1", "dev_bob#b-1x"]
    )


TRICKY_IDS = [
    "dev_alice",
    "dev_bob",
    "DEV_BOB",
    "Dev_Bob",
    "dev_bob ",
    " dev_bob",
    "dev_bob\n",
    "dev_bob\t",
    "dev_bob\x00",
    "dev_bob#x",
    "dev_bob#",
    "#dev_bob",
    "DEV#dev_bob",
    "dev_alice#dev_bob",
    "../dev_bob",
    "dev_alice/../dev_bob",
    "dev_bob%00",
    "dev%5Fbob",
    "dev_bob,dev_alice",
    "dev_alice,dev_bob",
    "dev_bob;dev_alice",
    "*",
    "dev_*",
    "",
    " ",
    "null",
    "None",
    "undefined",
    "dev_alice ",
    "dev_alice\n",
    "DEV_ALICE",
    "dev_alicE",
    "dev_alice_",
    "dev_alic",
    "dev_provider",
    "dev_nobody",
    "a" * 64,
    "a" * 65,
    "dev_" + "b" * 60,
    "x" * 10_000,
    "dév_bob",
    "dev_b\u043eb",  # Cyrillic o
    "dev_bob\u200b",
    "\uff44\uff45\uff56\uff3f\uff42\uff4f\uff42",  # fullwidth
    "🙂",
    "dev_bob' OR '1'='1",
    '{"S": "dev_bob"}',
]


def fuzz_ids(count: int, seed: int = 20261110) -> list[str]:
    """The tricky ids, then random ones from several alphabets and lengths (fixed seed)."""
    rng = random.Random(seed)
    alphabets = [
        string.ascii_letters + string.digits + "_-",
        string.ascii_lowercase + "_",
        string.printable,
        "dev_bobalice#/.:% ",
        "éüßøДЖ中文🙂\u200b\u0663",
    ]
    ids = list(TRICKY_IDS)
    while len(ids) < count:
        alphabet = rng.choice(alphabets)
        length = rng.choice([1, 2, 7, 12, 16, 63, 64, 65, 200])
        text = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.3:
            text = rng.choice(["dev_", "dev_bob", "dev_alice", "DEV_"]) + text
        ids.append(text)
    return ids


def test_fuzzed_developer_ids_never_reach_another_developers_data(tenants: Tenants) -> None:
    pattern = re.compile(DEVELOPER_ID_PATTERN.replace("$", r"\Z"))
    ids = fuzz_ids(1_000)
    assert len(ids) == 1_000
    statuses: dict[int, int] = {}
    for developer_id in ids:
        for answer in (
            tenants.usage(tenants.alice, developerId=developer_id),
            tenants.history(tenants.alice, developerId=developer_id, days="3"),
        ):
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            assert BOB_QUANTITY not in answer.body, developer_id
            assert BOB_METRIC not in answer.body, developer_id
            assert "dev_bob" not in answer.body, developer_id
            body = answer.json()
            if developer_id == "dev_alice":
                assert answer.status == 200, (developer_id, answer.body)
                assert body["developerId"] == "dev_alice"
            elif pattern.match(developer_id):
                assert answer.status == 403, (developer_id, answer.body)
                assert body == FORBIDDEN
            else:
                assert answer.status == 422, (developer_id, answer.body)
                assert body["error"]["code"] == "validation_error"
                assert body["error"]["details"][0]["field"] == "query.developerId"
    # the fuzz reached every branch
    assert statuses[200] >= 2
    assert statuses[403] > 100
    assert statuses[422] > 100


def test_no_plaintext_key_is_stored_anywhere(stack: Stack) -> None:
    created = [
        accounts.create_key("dev_alice"),
        accounts.create_key("dev_alice"),
        accounts.create_key("dev_bob"),
        accounts.create_key("dev_provider", "service"),
    ]
    api = stack.api
    for c in created[:3]:  # used (lastUsedAt written) and one revoked
        assert api.call("GET", "/v1/usage", headers={"X-API-Key": c.key}, run_authorizer=True).status == 200
    accounts.revoke_key("dev_alice", created[1].record.key_id)

    items = table_items(stack.dynamodb, stack.accounts_table)
    strings = list(_strings(items))
    assert len(items) == 3 + 2 * len(created)  # three profiles, two items per key
    for c in created:
        body = c.key.removeprefix("um_live_")
        for text in strings:
            assert c.key not in text
            assert body not in text
            assert body[4:] not in text  # anything beyond the short display prefix
        # what is stored instead: the sha256 and the display prefix
        lookup = next(i for i in items if i["pk"]["S"] == f"KEY#{c.record.key_hash}")
        assert lookup["prefix"]["S"] == c.key[:12]
        assert lookup["keyHash"]["S"] == c.record.key_hash == accounts.hash_key(c.key)
    for table in (stack.usage_table, stack.idempotency_table):
        for text in _strings(table_items(stack.dynamodb, table)):
            assert not any(c.key.removeprefix("um_live_")[4:] in text for c in created)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside DynamoDB items: names, S, N, SS, NS, lists and maps, decoded bytes."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for name, inner in value.items():
            yield str(name)
            yield from _strings(inner)
    elif isinstance(value, list | tuple | set):
        for inner in value:
            yield from _strings(inner)
