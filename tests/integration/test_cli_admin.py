"""The admin CLI as an operator meets it (issue 21): --json on either side of the subcommand in
the API's camelCase, tables with headers, plan input refused with one line, deleting
developers and plans (and what deletion keeps), and errors naming the missing table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from rich.console import Console

from usage_meter.domain import accounts, auth
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter_admin import views as cli_views
from usage_meter_local.handlers import load_handler

from helpers import table_items
from integration.conftest import Run, Stack, accounts_items, refused

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOON_TEXT = "2026-11-10T12:00:00.000Z"


@pytest.fixture(scope="module", autouse=True)
def _handlers_loaded() -> None:
    """Load the functions the tests call before capsys swaps stdout: their Loggers keep the
    stream they find at creation."""
    load_handler("functions/authorizer/")
    load_handler("functions/current/")


# ---- --json: either place, one casing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["developers", "list"],
        ["developers", "show", "dev_alice"],
        ["keys", "list", "dev_alice"],
        ["plans", "list"],
        ["meters", "list"],
        ["usage", "show", "--developer", "dev_alice"],
        ["usage", "history", "--developer", "dev_alice", "--days", "3"],
    ],
    ids=lambda argv: "-".join(argv[:2]),
)
def test_json_before_or_after_the_subcommand(stack: Stack, run: Run, freeze: Freeze, argv: list[str]) -> None:
    freeze(NOON)
    accounts.create_key("dev_alice")
    before = run("--json", *argv)
    after = run(*argv, "--json")

    assert before[0] == 0, before
    assert after == before
    json.loads(after[1])


def test_admin_json_speaks_the_apis_camel_case(stack: Stack, run: Run, freeze: Freeze) -> None:
    """Developers, keys, plans and meters print their fields as the API names them
    (developerId, createdAt…); metric names inside a plan stay as they are."""
    freeze(NOON)
    run("meters", "create", "api_calls_v2")
    code, out, err = run(
        "plans", "put", "gold", "--metric", "api_calls_v2=5:soft", "--requests-per-minute", "9", "--json"
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "name": "gold",
        "metrics": {"api_calls_v2": {"limit": 5, "enforcement": "soft", "alerts": None}},
        "requestsPerMinute": 9,
        "rateEnforcement": "soft",
    }
    code, out, _ = run("keys", "create", "dev_bob", "--json")
    assert sorted(json.loads(out)) == [
        "createdAt",
        "developerId",
        "key",
        "keyId",
        "lastUsedAt",
        "prefix",
        "role",
        "status",
    ]
    code, out, _ = run("usage", "show", "--developer", "dev_bob", "--json")
    assert {"developerId", "totalRequests", "resetsInDays", "rateLimit"} <= set(json.loads(out))


# ---- tables -------------------------------------------------------------------------------------------


def test_listings_are_tables_with_headers_on_a_terminal(
    stack: Stack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli_views, "make_console", lambda: Console(width=100, force_terminal=True, color_system=None)
    )
    created = {d.developer_id: d.created_at for d in account_store.list_developers()}

    code, out, err = run("developers", "list")

    assert (code, err) == (0, "")
    assert [line.rstrip() for line in out.splitlines()] == [
        "developer     plan  created                   name",
        "──────────────────────────────────────────────────────────",
        f"dev_alice     pro   {created['dev_alice']}  dev_alice",
        f"dev_bob       pro   {created['dev_bob']}  dev_bob",
        f"dev_provider  pro   {created['dev_provider']}  dev_provider",
    ]


def test_an_empty_listing_says_none(stack: Stack, run: Run) -> None:
    assert run("keys", "list", "dev_bob") == (0, "(none)\n", "")
    assert run("meters", "list") == (0, "(none)\n", "")


# ---- plan input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--requests-per-minute", "-1", "--metric", "api_calls=10"],
            "error: --requests-per-minute -1: it must be at least 1\n",
        ),
        (
            ["--requests-per-minute", "0", "--metric", "api_calls=10"],
            "error: --requests-per-minute 0: it must be at least 1\n",
        ),
        (
            ["--metric", "api_calls=10", "--metric", "api_calls=20"],
            "error: --metric api_calls is given twice: give each metric once\n",
        ),
        (
            [],
            "error: plan gold would be empty: give at least one --metric METRIC=LIMIT[:soft|hard] "
            "or --requests-per-minute N\n",
        ),
        (["--metric", "api_calls=-5"], "error: --metric 'api_calls=-5': the limit must be a number >= 0\n"),
    ],
    ids=["negative-rate", "zero-rate", "metric-twice", "empty-plan", "negative-limit"],
)
def test_plans_put_refuses_bad_input_with_one_line(
    stack: Stack, run: Run, argv: list[str], message: str
) -> None:
    assert refused(stack, run, "plans", "put", "gold", *argv) == message
    assert account_store.get_plan("gold") is None


# ---- deleting developers ------------------------------------------------------------------------------


def test_developers_delete_removes_profile_and_keys_and_keeps_usage(
    stack: Stack, run: Run, freeze: Freeze
) -> None:
    freeze(NOON)
    key = accounts.create_key("dev_bob").key
    assert stack.track({"metric": "api_calls", "quantity": 3}, developer="dev_bob").status == 200
    usage_before = table_items(stack.dynamodb, stack.usage_table)
    idempotency_before = table_items(stack.dynamodb, stack.idempotency_table)

    message = refused(stack, run, "developers", "delete", "dev_bob")
    assert message == (
        "error: developer dev_bob has usage in the open period 2026-11 (1 events): --force deletes it "
        "anyway (its keys stop working; its usage history stays for billing)\n"
    )

    code, out, err = run("developers", "delete", "dev_bob", "--force")

    assert (code, err) == (0, "")
    assert out == (
        "deleted developer dev_bob and its 1 key(s) (they stop working within 60 seconds); its usage "
        "history stays for billing (2026-11: api_calls 3)\n"
    )
    left = [
        pk_sk for pk_sk, item in accounts_items(stack).items() if item.get("developerId") == {"S": "dev_bob"}
    ]
    assert left == []  # profile, key listing and key lookup items are gone
    assert table_items(stack.dynamodb, stack.usage_table) == usage_before  # history kept
    assert table_items(stack.dynamodb, stack.idempotency_table) == idempotency_before
    auth.clear_cache()
    answer = stack.api.call(
        "GET", "/v1/usage", headers={"Authorization": f"Bearer {key}"}, run_authorizer=True
    )
    assert answer.status == 401
    assert run("developers", "show", "dev_bob") == (1, "", "error: no developer dev_bob\n")


def test_developers_delete_without_usage_needs_no_force(stack: Stack, run: Run) -> None:
    code, out, err = run("--json", "developers", "delete", "dev_alice")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"developerId": "dev_alice", "keyIds": []}
    assert ("DEV#dev_alice", "PROFILE") not in accounts_items(stack)
    assert refused(stack, run, "developers", "delete", "dev_alice") == "error: no developer dev_alice\n"


# ---- deleting plans -----------------------------------------------------------------------------------


def test_plans_delete_is_refused_while_a_developer_is_on_it(stack: Stack, run: Run) -> None:
    account_store.put_plan(Plan(name="gold", metrics={"api_calls": MetricLimit(limit=None)}))
    accounts.set_plan("dev_bob", "gold")

    assert refused(stack, run, "plans", "delete", "gold") == (
        "error: plan gold is in use by dev_bob: move them with `plans set` first\n"
    )
    accounts.set_plan("dev_bob", "pro")
    assert run("plans", "delete", "gold") == (0, "deleted plan gold\n", "")
    assert ("PLAN#gold", "PLAN") not in accounts_items(stack)
    assert refused(stack, run, "plans", "delete", "gold") == "error: no stored plan 'gold'\n"


def test_plans_delete_of_a_stored_default_gives_the_default_back(stack: Stack, run: Run) -> None:
    assert refused(stack, run, "plans", "delete", "enterprise") == (
        "error: no stored plan 'enterprise' (a default plan: stored only once edited or seeded)\n"
    )
    account_store.put_plan(Plan(name="enterprise", metrics={"api_calls": MetricLimit(limit=5)}))
    assert run("plans", "delete", "enterprise") == (
        0,
        "deleted plan enterprise; the default plan of that name applies again\n",
        "",
    )
    assert accounts.plans()[0].metrics["api_calls"].limit is None


# ---- a missing table is named -------------------------------------------------------------------------


def test_a_missing_table_is_named_with_how_to_supply_it(
    stack: Stack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCOUNTS_TABLE", "no-such-table")
    code, out, err = run("developers", "list")
    assert (code, out) == (1, "")
    assert err == (
        f"error: no such table in region us-east-1 (USAGE_TABLE={stack.usage_table}, "
        f"IDEMPOTENCY_TABLE={stack.idempotency_table}, ACCOUNTS_TABLE=no-such-table): pass "
        "--stack-name NAME (a deployed stack) or --local (the `make dev` stack), or set them to the "
        "stack's table names\n"
    )
