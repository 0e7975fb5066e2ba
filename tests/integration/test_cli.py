"""The admin CLI through its real entry point (`usage_meter_admin.cli.main`) against moto, checked
against what lands in DynamoDB and against the API (keys it prints authenticate, plans it
sets are what GET /v1/usage reports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from usage_meter.domain import accounts, auth
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter_local.handlers import load_handler
from usage_meter_local.invoke import Answer

from helpers import table_items
from integration.conftest import Run, Stack

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOON_TEXT = "2026-11-10T12:00:00.000Z"
KEY_RE = re.compile(r"um_live_[0-9A-Za-z]{32}")


@pytest.fixture(scope="module", autouse=True)
def _handlers_loaded() -> None:
    """Load the functions the tests call before capsys swaps stdout: their Loggers keep the
    stream they find at creation."""
    load_handler("functions/authorizer/")
    load_handler("functions/current/")


@pytest.fixture(autouse=True)
def _empty_key_cache() -> Iterator[None]:
    auth.clear_cache()
    yield
    auth.clear_cache()


def accounts_items(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(stack.dynamodb, stack.accounts_table)}


def profile(stack: Stack, developer_id: str) -> dict[str, Any] | None:
    """A developer's stored profile without its `revision` (a random token each write renews,
    which a container's copy of the profile is checked against), which it must have."""
    item = accounts_items(stack).get((f"DEV#{developer_id}", "PROFILE"))
    if item is not None:
        assert "S" in item.pop("revision")
    return item


def get_usage(stack: Stack, key: str, **query: str) -> Answer:
    return stack.api.call(
        "GET",
        "/v1/usage",
        headers={"Authorization": f"Bearer {key}"},
        query=query or None,
        run_authorizer=True,
    )


# ---- developers -------------------------------------------------------------------------------------


def test_developers_create_generates_an_id(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run("developers", "create", "--name", "Carol")

    assert (code, err) == (0, "")
    match = re.fullmatch(r"created developer (dev_[0-9A-Za-z]{16}) \(free\)\n", out)
    assert match, out
    developer_id = match.group(1)
    assert profile(stack, developer_id) == {
        "pk": {"S": f"DEV#{developer_id}"},
        "sk": {"S": "PROFILE"},
        "kind": {"S": "developer"},
        "developerId": {"S": developer_id},
        "name": {"S": "Carol"},
        "plan": {"S": "free"},
        "createdAt": {"S": NOON_TEXT},
        "planHistory": {"L": [{"M": {"plan": {"S": "free"}, "since": {"S": NOON_TEXT}}}]},
    }
    # two generated ids differ
    code, again, _ = run("developers", "create", "--name", "Carol")
    assert code == 0
    assert again != out


def test_developers_create_with_id_and_plan_as_json(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run(
        "--json", "developers", "create", "--name", "Carol Jones", "--id", "dev_carol", "--plan", "enterprise"
    )

    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "developerId": "dev_carol",
        "name": "Carol Jones",
        "plan": "enterprise",
        "createdAt": NOON_TEXT,
        "planHistory": [{"plan": "enterprise", "since": NOON_TEXT}],
    }
    assert profile(stack, "dev_carol") is not None
    assert profile(stack, "dev_carol")["plan"] == {"S": "enterprise"}  # type: ignore[index]
    # the service can act for the new developer right away
    service = accounts.create_key("dev_provider", "service").key
    usage = get_usage(stack, service, developerId="dev_carol")
    assert usage.status == 200
    assert (usage.json()["developerId"], usage.json()["plan"]) == ("dev_carol", "enterprise")


def test_developers_list(stack: Stack, run: Run) -> None:
    run("developers", "create", "--name", "Zed Z.", "--id", "dev_zed", "--plan", "free")
    seeded = {d.developer_id: d for d in account_store.list_developers()}

    code, out, err = run("developers", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "developer\tplan\tcreated\tname",  # a header line, then tab-separated rows: a pipe's table
        f"dev_alice\tpro\t{seeded['dev_alice'].created_at}\tdev_alice",
        f"dev_bob\tpro\t{seeded['dev_bob'].created_at}\tdev_bob",
        f"dev_provider\tpro\t{seeded['dev_provider'].created_at}\tdev_provider",
        f"dev_zed\tfree\t{seeded['dev_zed'].created_at}\tZed Z.",
    ]

    code, out, _ = run("--json", "developers", "list")
    assert code == 0
    listed = json.loads(out)
    assert [d["developerId"] for d in listed] == ["dev_alice", "dev_bob", "dev_provider", "dev_zed"]
    assert listed[3] == {
        "developerId": "dev_zed",
        "name": "Zed Z.",
        "plan": "free",
        "createdAt": seeded["dev_zed"].created_at,
        "planHistory": [{"plan": "free", "since": seeded["dev_zed"].created_at}],
    }


def test_developers_show_lists_keys_without_secrets(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, _ = run("keys", "create", "dev_alice")
    assert code == 0
    plaintext = out.splitlines()[0]
    service = accounts.create_key("dev_alice", "service")
    assert get_usage(stack, plaintext).status == 200  # sets lastUsedAt on the first key
    first, second = sorted(accounts.list_keys("dev_alice"), key=lambda k: k.role)
    developer = accounts.get_developer("dev_alice")

    code, out, err = run("developers", "show", "dev_alice")
    assert (code, err) == (0, "")
    key_lines = {
        first.key_id: f"{first.key_id}\t{plaintext[:12]}…\tdeveloper\tactive\t{NOON_TEXT}\t{NOON_TEXT}",
        second.key_id: f"{second.key_id}\t{service.key[:12]}…\tservice\tactive\t{NOON_TEXT}\t-",
    }
    assert out.splitlines() == [
        "developer\tplan\tcreated\tname",
        f"dev_alice\tpro\t{developer.created_at}\tdev_alice",
        "",
        "key\tprefix\trole\tstatus\tcreated\tlast used",
        *(key_lines[key_id] for key_id in sorted(key_lines)),  # listed in key id order
    ]

    code, out, err = run("--json", "developers", "show", "dev_alice")
    assert (code, err) == (0, "")
    shown = json.loads(out)
    assert {k: v for k, v in shown.items() if k != "keys"} == {
        "developerId": "dev_alice",
        "name": "dev_alice",
        "plan": "pro",
        "createdAt": developer.created_at,
        "planHistory": [{"plan": h.plan, "since": h.since} for h in developer.plan_history],
    }
    assert sorted(shown["keys"], key=lambda k: k["role"]) == [
        {
            "keyId": first.key_id,
            "prefix": plaintext[:12],
            "developerId": "dev_alice",
            "role": "developer",
            "status": "active",
            "createdAt": NOON_TEXT,
            "lastUsedAt": NOON_TEXT,
        },
        {
            "keyId": second.key_id,
            "prefix": service.key[:12],
            "developerId": "dev_alice",
            "role": "service",
            "status": "active",
            "createdAt": NOON_TEXT,
            "lastUsedAt": None,
        },
    ]
    for text in (out, run("developers", "show", "dev_alice")[1]):
        for secret in (plaintext, service.key):
            assert secret not in text
            assert secret[12:] not in text
            assert accounts.hash_key(secret) not in text


# ---- keys ----------------------------------------------------------------------------------------------


def test_keys_create_prints_a_working_key_once(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run("keys", "create", "dev_bob")

    assert (code, err) == (0, "")
    key, note = out.splitlines()
    assert KEY_RE.fullmatch(key)
    match = re.fullmatch(
        r"\(key (key_[0-9A-Za-z]{12}), role developer, developer dev_bob: store it now, it is not shown again\)",
        note,
    )
    assert match, note
    key_id = match.group(1)

    usage = get_usage(stack, key)
    assert usage.status == 200
    assert usage.json()["developerId"] == "dev_bob"

    items = accounts_items(stack)
    assert items[(f"KEY#{accounts.hash_key(key)}", "KEY")]["keyId"] == {"S": key_id}
    assert items[("DEV#dev_bob", f"KEY#{key_id}")]["prefix"] == {"S": key[:12]}

    code, listed, _ = run("keys", "list", "dev_bob")
    assert code == 0
    assert key not in listed
    assert key[12:] not in listed
    assert f"{key_id}\t{key[:12]}…\tdeveloper\tactive\t{NOON_TEXT}\t{NOON_TEXT}" in listed.splitlines()


def test_keys_create_service_key_as_json(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run("--json", "keys", "create", "dev_provider", "--role", "service")

    assert (code, err) == (0, "")
    created = json.loads(out)
    assert KEY_RE.fullmatch(created["key"])
    assert created == {
        "key": created["key"],
        "keyId": created["keyId"],
        "prefix": created["key"][:12],
        "developerId": "dev_provider",
        "role": "service",
        "status": "active",
        "createdAt": NOON_TEXT,
        "lastUsedAt": None,
    }
    usage = get_usage(stack, created["key"], developerId="dev_bob")
    assert usage.status == 200
    assert usage.json()["developerId"] == "dev_bob"

    code, listed, _ = run("--json", "keys", "list", "dev_provider")
    assert code == 0
    assert json.loads(listed) == [
        {k: v for k, v in created.items() if k != "key"} | {"lastUsedAt": NOON_TEXT},
    ]
    assert created["key"] not in listed


def test_keys_list(stack: Stack, run: Run, freeze: Freeze) -> None:
    code, out, err = run("keys", "list", "dev_bob")
    assert (code, out, err) == (0, "(none)\n", "")
    code, out, _ = run("--json", "keys", "list", "dev_bob")
    assert (code, json.loads(out)) == (0, [])

    freeze(NOON)
    one = accounts.create_key("dev_bob")
    two = accounts.create_key("dev_bob", "service")
    accounts.create_key("dev_alice")  # someone else's key is not listed
    code, out, err = run("keys", "list", "dev_bob")
    assert (code, err) == (0, "")
    expected = {
        f"{one.record.key_id}\t{one.key[:12]}…\tdeveloper\tactive\t{NOON_TEXT}\t-",
        f"{two.record.key_id}\t{two.key[:12]}…\tservice\tactive\t{NOON_TEXT}\t-",
    }
    assert out.splitlines()[0] == "key\tprefix\trole\tstatus\tcreated\tlast used"
    assert set(out.splitlines()[1:]) == expected
    assert len(out.splitlines()) == 3


def test_keys_revoke(stack: Stack, run: Run) -> None:
    code, out, _ = run("keys", "create", "dev_alice")
    assert code == 0
    key = out.splitlines()[0]
    key_id = re.search(r"\(key (key_\w+),", out).group(1)  # type: ignore[union-attr]
    assert get_usage(stack, key).status == 200

    code, out, err = run("keys", "revoke", "dev_alice", key_id)

    assert (code, err) == (0, "")
    assert out == f"revoked {key_id} ({key[:12]}…); it stops working within 60 seconds\n"
    items = accounts_items(stack)
    assert items[(f"KEY#{accounts.hash_key(key)}", "KEY")]["status"] == {"S": "revoked"}
    assert items[("DEV#dev_alice", f"KEY#{key_id}")]["status"] == {"S": "revoked"}
    code, listed, _ = run("--json", "keys", "list", "dev_alice")
    assert [k["status"] for k in json.loads(listed)] == ["revoked"]

    assert get_usage(stack, key).status == 200  # this container's cache still holds it
    auth.clear_cache()
    revoked = get_usage(stack, key)
    assert revoked.status == 401
    assert revoked.json() == {"error": {"code": "unauthorized", "message": "revoked API key"}}


def test_keys_revoke_only_within_the_named_developer(stack: Stack, run: Run) -> None:
    alice = accounts.create_key("dev_alice")
    before = accounts_items(stack)

    code, out, err = run("keys", "revoke", "dev_bob", alice.record.key_id)

    assert (code, out) == (1, "")
    assert err == f"error: developer dev_bob has no key {alice.record.key_id}\n"
    assert accounts_items(stack) == before
    assert get_usage(stack, alice.key).status == 200


# ---- plans ---------------------------------------------------------------------------------------------

DEFAULT_PLAN_LINES = [
    "plan\trate\tlimits",
    "enterprise\t10000/min\tapi_calls=unlimited (soft), tokens=unlimited (soft)",
    "free\t60/min\tapi_calls=1000 (hard), tokens=100000 (hard)",
    "pro\t1000/min\tapi_calls=100000 (hard), tokens=10000000 (soft)",
]


def test_plans_list_shows_the_defaults(stack: Stack, run: Run) -> None:
    assert not any(pk.startswith("PLAN#") for pk, _ in accounts_items(stack))  # nothing stored yet

    code, out, err = run("plans", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == DEFAULT_PLAN_LINES

    code, out, _ = run("--json", "plans", "list")
    assert code == 0
    assert json.loads(out) == [
        {
            "name": "enterprise",
            "metrics": {
                "api_calls": {"limit": None, "enforcement": "soft", "alerts": None},
                "tokens": {"limit": None, "enforcement": "soft", "alerts": None},
            },
            "requestsPerMinute": 10000,
            "rateEnforcement": "soft",
        },
        {
            "name": "free",
            "metrics": {
                "api_calls": {"limit": 1000, "enforcement": "hard", "alerts": None},
                "tokens": {"limit": 100000, "enforcement": "hard", "alerts": None},
            },
            "requestsPerMinute": 60,
            "rateEnforcement": "soft",
        },
        {
            "name": "pro",
            "metrics": {
                "api_calls": {"limit": 100000, "enforcement": "hard", "alerts": None},
                "tokens": {"limit": 10000000, "enforcement": "soft", "alerts": None},
            },
            "requestsPerMinute": 1000,
            "rateEnforcement": "soft",
        },
    ]


def test_plans_set_applies_to_the_next_request(stack: Stack, run: Run) -> None:
    key = accounts.create_key("dev_alice").key
    assert get_usage(stack, key).json()["plan"] == "pro"

    code, out, err = run("plans", "set", "dev_alice", "enterprise")

    assert (code, err) == (0, "")
    assert out == "dev_alice is now on plan enterprise\n"
    assert profile(stack, "dev_alice")["plan"] == {"S": "enterprise"}  # type: ignore[index]
    assert get_usage(stack, key).json()["plan"] == "enterprise"
    assert profile(stack, "dev_bob")["plan"] == {"S": "pro"}  # type: ignore[index]

    code, out, _ = run("--json", "plans", "set", "dev_alice", "free")
    assert code == 0
    assert json.loads(out)["plan"] == "free"
    assert json.loads(out)["developerId"] == "dev_alice"
    assert get_usage(stack, key).json()["plan"] == "free"


def test_plans_set_to_a_stored_custom_plan(stack: Stack, run: Run) -> None:
    account_store.put_plan(
        Plan(name="startup", metrics={"api_calls": MetricLimit(limit=Decimal("5000.5"), enforcement="soft")})
    )

    code, out, err = run("plans", "set", "dev_bob", "startup")
    assert (code, out, err) == (0, "dev_bob is now on plan startup\n", "")
    code, out, _ = run("plans", "list")
    assert "startup\t-/min\tapi_calls=5000.5 (soft)" in out.splitlines()


def test_plans_seed_stores_missing_defaults_and_never_overwrites(stack: Stack, run: Run) -> None:
    code, out, err = run("--json", "plans", "seed")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "catalog": "default",
        "metersCreated": ["api_calls", "tokens"],
        "metersUnchanged": [],
        "plansStored": ["free", "pro", "enterprise"],
        "plansUnchanged": [],
        "plansKept": [],
    }
    stored = {pk: item for (pk, sk), item in accounts_items(stack).items() if sk == "PLAN"}
    assert sorted(stored) == ["PLAN#enterprise", "PLAN#free", "PLAN#pro"]
    assert stored["PLAN#free"]["kind"] == {"S": "plan"}
    assert stored["PLAN#free"]["metrics"]["M"]["api_calls"]["M"]["limit"] == {"N": "1000"}
    assert stored["PLAN#enterprise"]["metrics"]["M"]["api_calls"]["M"]["limit"] == {"NULL": True}

    account_store.put_plan(
        Plan(name="free", metrics={"api_calls": MetricLimit(limit=Decimal(50), enforcement="hard")})
    )
    code, out, err = run("plans", "seed")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "catalog default: created 0 meter(s) (2 already there), stored 0 plan(s) (2 unchanged)",
        "kept plan free: the stored one differs (--replace stores the catalog's)",
    ]
    code, out, _ = run("plans", "list")
    assert out.splitlines() == [
        *DEFAULT_PLAN_LINES[:2],
        "free\t-/min\tapi_calls=50 (hard)",
        DEFAULT_PLAN_LINES[3],
    ]


# ---- errors: exit code 1, one line on stderr, nothing written -----------------------------------------

UNKNOWN_PLAN = "error: no plan 'gold' (known plans: enterprise, free, pro)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["developers", "create", "--name", "X", "--plan", "gold"], UNKNOWN_PLAN),
        (["plans", "set", "dev_alice", "gold"], UNKNOWN_PLAN),
        (["keys", "create", "dev_nobody"], "error: no developer dev_nobody"),
        (["keys", "create", "dev_nobody", "--role", "service"], "error: no developer dev_nobody"),
        (["keys", "list", "dev_nobody"], "error: no developer dev_nobody"),
        (["developers", "show", "dev_nobody"], "error: no developer dev_nobody"),
        (["plans", "set", "dev_nobody", "pro"], "error: no developer dev_nobody"),
        (["keys", "revoke", "dev_alice", "key_nope"], "error: developer dev_alice has no key key_nope"),
        (["keys", "revoke", "dev_nobody", "key_nope"], "error: developer dev_nobody has no key key_nope"),
        (
            ["developers", "create", "--name", "X", "--id", "dev_alice"],
            "error: developer dev_alice already exists",
        ),
        (
            ["--json", "developers", "create", "--name", "X", "--id", "dev_bob", "--plan", "free"],
            "error: developer dev_bob already exists",
        ),
        (["developers", "create", "--name", "X", "--id", "bad id!"], "error: invalid developer id 'bad id!'"),
        (["developers", "create", "--name", "X", "--id", "dev#x"], "error: invalid developer id 'dev#x'"),
    ],
    ids=[
        "create-unknown-plan",
        "set-unknown-plan",
        "keys-create-unknown-developer",
        "service-key-unknown-developer",
        "keys-list-unknown-developer",
        "show-unknown-developer",
        "set-plan-unknown-developer",
        "revoke-unknown-key",
        "revoke-unknown-developer",
        "duplicate-id",
        "duplicate-id-json",
        "invalid-id",
        "id-with-separator",
    ],
)
def test_errors_exit_1_with_one_line_and_change_nothing(
    stack: Stack, run: Run, argv: list[str], message: str
) -> None:
    before = accounts_items(stack)

    code, out, err = run(*argv)

    assert (code, out) == (1, "")
    assert err == message + "\n"
    assert "Traceback" not in err
    assert accounts_items(stack) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["developers", "create", "--name", ""],
        ["developers", "create", "--name", "x" * 201],
        ["developers", "create", "--name", "X", "--id", "dev_x\n"],
    ],
    ids=["empty-name", "name-too-long", "id-with-trailing-newline"],
)
def test_invalid_developer_input_is_a_one_line_error(stack: Stack, run: Run, argv: list[str]) -> None:
    before = accounts_items(stack)

    code, out, err = run(*argv)

    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert accounts_items(stack) == before


# ---- the module entry point -----------------------------------------------------------------------------


def test_module_entry_point_runs_without_aws(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "usage_meter_admin.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("usage: usage-meter ")
    assert "{developers,keys,plans,meters,rollup,usage,webhooks,events}" in result.stdout
    for option in ("--endpoint-url", "--region", "--stack-name", "--json"):
        assert option in result.stdout
