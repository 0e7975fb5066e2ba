"""Meters: the CLI (`usage-meter meters …`), GET /v1/meters, the plan catalogs and the plan
limits meters allow, checked against what lands in the accounts table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import accounts, auth, meters
from usage_meter.errors import Conflict
from usage_meter.models.accounts import Meter, MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter.store import meters as meter_store
from usage_meter_local.handlers import load_handler

from helpers import DEV_A, SERVICE
from integration.conftest import Run, Stack, accounts_items, refused

Freeze = Callable[[datetime], None]
NOON = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOON_TEXT = "2026-11-10T12:00:00.000Z"
LATER = datetime(2026, 11, 12, 8, 30, tzinfo=UTC)
LATER_TEXT = "2026-11-12T08:30:00.000Z"


@pytest.fixture(scope="module", autouse=True)
def _handlers_loaded() -> None:
    """Load the functions the tests call before capsys swaps stdout: their Loggers keep the
    stream they find at creation."""
    for function in ("authorizer", "meters"):
        load_handler(f"functions/{function}/")


def meter_items(stack: Stack) -> dict[str, dict[str, Any]]:
    """The stored meters, each without its `revision` (a random token every write renews: what
    a container's copy is checked against), which every one of them has."""
    found = {pk: item for (pk, sk), item in accounts_items(stack).items() if sk == "METER"}
    assert all("S" in item.pop("revision") for item in found.values())
    return found


def plan_items(stack: Stack) -> dict[str, dict[str, Any]]:
    return {pk: item for (pk, sk), item in accounts_items(stack).items() if sk == "PLAN"}


# ---- meters create | list | show | archive ------------------------------------------------------------


def test_create_stores_the_definition(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run(
        "meters",
        "create",
        "active_users",
        "--aggregation",
        "unique_count",
        "--unique-by",
        "user_id",
        "--unit",
        "users",
        "--description",
        "Distinct users in the period",
    )

    assert (code, err) == (0, "")
    assert out == (
        "created meter active_users\tunique_count(user_id)\tactive\t-\t1\tusers\tDistinct users in the period\n"
    )
    assert meter_items(stack) == {
        "METER#active_users": {
            "pk": {"S": "METER#active_users"},
            "sk": {"S": "METER"},
            "kind": {"S": "meter"},
            "name": {"S": "active_users"},
            "aggregation": {"S": "unique_count"},
            "uniqueBy": {"S": "user_id"},
            "dimensions": {"L": []},
            "unit": {"S": "users"},
            "description": {"S": "Distinct users in the period"},
            "status": {"S": "active"},
            "createdAt": {"S": NOON_TEXT},
        }
    }


def test_create_defaults_to_sum_and_answers_json(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    code, out, err = run("--json", "meters", "create", "requests")

    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "name": "requests",
        "aggregation": "sum",
        "uniqueBy": None,
        "dimensions": [],
        "unit": None,
        "description": None,
        "status": "active",
        "createdAt": NOON_TEXT,
        "archivedAt": None,
    }
    assert meter_items(stack) == {
        "METER#requests": {
            "pk": {"S": "METER#requests"},
            "sk": {"S": "METER"},
            "kind": {"S": "meter"},
            "name": {"S": "requests"},
            "aggregation": {"S": "sum"},
            "dimensions": {"L": []},
            "status": {"S": "active"},
            "createdAt": {"S": NOON_TEXT},
        }
    }


def test_list_show_and_archive(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    assert run("meters", "list") == (0, "(none)\n", "")
    assert run("meters", "create", "seats", "--aggregation", "level", "--unit", "seats")[0] == 0
    assert run("meters", "create", "peak_rps", "--aggregation", "max")[0] == 0
    assert run("meters", "create", "Images", "--aggregation", "count", "--dimensions", "model")[0] == 0

    code, out, err = run("meters", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [  # by name (code point order: capitals first)
        "meter\taggregation\tstatus\tdimensions\tshards\tunit\tdescription",
        "Images\tcount\tactive\tmodel\t1\t-\t",
        "peak_rps\tmax\tactive\t-\t1\t-\t",
        "seats\tlevel\tactive\t-\t1\tseats\t",
    ]

    freeze(LATER)
    code, out, err = run("meters", "archive", "seats")
    assert (code, err) == (0, "")
    assert out == (
        f"archived meter seats (since {LATER_TEXT}): it takes no new events; its usage stays readable\n"
    )
    item = meter_items(stack)["METER#seats"]
    assert (item["status"], item["archivedAt"], item["createdAt"]) == (
        {"S": "archived"},
        {"S": LATER_TEXT},
        {"S": NOON_TEXT},
    )

    code, out, err = run("meters", "show", "seats")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "name: seats",
        "aggregation: level",
        "uniqueBy: -",
        "dimensions: -",
        "unit: seats",
        "description: -",
        "status: archived",
        f"createdAt: {NOON_TEXT}",
        f"archivedAt: {LATER_TEXT}",
    ]

    # archiving again changes nothing (the first archive time stays)
    before = accounts_items(stack)
    freeze(datetime(2026, 11, 20, tzinfo=UTC))
    code, out, _ = run("--json", "meters", "archive", "seats")
    assert code == 0
    assert json.loads(out)["archivedAt"] == LATER_TEXT
    assert accounts_items(stack) == before

    code, out, _ = run("--json", "meters", "list")
    assert code == 0
    assert [(m["name"], m["status"]) for m in json.loads(out)] == [
        ("Images", "active"),
        ("peak_rps", "active"),
        ("seats", "archived"),
    ]


# ---- refusals: one line on stderr, exit code 1, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["meters", "create", "visitors", "--aggregation", "unique_count"],
            "error: invalid meter: a unique_count meter needs unique_by: the metadata property whose "
            "distinct values it counts",
        ),
        (
            ["meters", "create", "calls", "--unique-by", "user_id"],
            "error: invalid meter: unique_by applies only to unique_count meters, not to sum",
        ),
        (
            ["meters", "create", "calls", "--aggregation", "max", "--unique-by", "user_id"],
            "error: invalid meter: unique_by applies only to unique_count meters, not to max",
        ),
        (
            ["meters", "create", "calls", "--dimensions", "a,b,c,d"],
            "error: invalid meter: dimensions: List should have at most 3 items after validation, not 4",
        ),
        (
            ["meters", "create", "calls", "--dimensions", "endpoint,endpoint"],
            "error: invalid meter: dimensions: dimensions repeat endpoint",
        ),
        (
            ["meters", "create", "peak", "--aggregation", "max", "--dimensions", "region"],
            "error: invalid meter: dimensions apply to sum and count meters, not to max (their groups "
            "add up to the total; a peak, a last value, a distinct count or a level does not)",
        ),
        (
            ["meters", "create", "calls", "--dimensions", "end point"],
            'error: invalid meter: dimensions.0: String should match pattern "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"',
        ),
        (
            ["meters", "create", "calls", "--aggregation", "average"],
            'error: invalid meter: aggregation: Input should be "sum", "count", "max", "latest", '
            '"unique_count" or "level"',
        ),
        (
            ["meters", "create", "9lives"],
            'error: invalid meter: name: String should match pattern "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"',
        ),
        (
            ["meters", "create", "api#calls", "--aggregation", "count"],
            'error: invalid meter: name: String should match pattern "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"',
        ),
        (
            ["meters", "create", "calls", "--unit", "u" * 33],
            "error: invalid meter: unit: String should have at most 32 characters",
        ),
        (
            ["meters", "create", "calls", "--description", "d" * 257],
            "error: invalid meter: description: String should have at most 256 characters",
        ),
        (["meters", "show", "nothing"], "error: no meter nothing"),
        (["meters", "archive", "nothing"], "error: no meter nothing"),
    ],
    ids=[
        "unique-count-without-unique-by",
        "unique-by-on-sum",
        "unique-by-on-max",
        "four-dimensions",
        "repeated-dimension",
        "dimensions-on-max",
        "bad-dimension",
        "unknown-aggregation",
        "name-starts-with-digit",
        "name-with-separator",
        "unit-too-long",
        "description-too-long",
        "show-unknown",
        "archive-unknown",
    ],
)
def test_refusals_exit_1_with_one_line_and_write_nothing(
    stack: Stack, run: Run, argv: list[str], message: str
) -> None:
    assert refused(stack, run, *argv) == message + "\n"


def test_an_existing_name_is_refused_archived_or_not(stack: Stack, run: Run, freeze: Freeze) -> None:
    freeze(NOON)
    assert run("meters", "create", "calls", "--aggregation", "count")[0] == 0
    assert refused(stack, run, "meters", "create", "calls", "--aggregation", "max") == (
        "error: meter calls already exists (a meter's aggregation and unique_by never change: "
        "archive it and create another under a new name)\n"
    )

    assert run("meters", "archive", "calls")[0] == 0
    assert refused(stack, run, "meters", "create", "calls", "--aggregation", "count") == (
        "error: meter calls already exists (archived; a name is never reused: create the meter under a new name)\n"
    )


def test_create_is_conditional_when_another_create_wins_the_race(
    stack: Stack, freeze: Freeze, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two admins create the same name at once: both checks find nothing, the conditional put
    lets one win, the other is refused and the winner's definition stays."""
    freeze(NOON)
    first = meters.create(meters.definition(name="calls", aggregation="count"))
    stored = meter_items(stack)
    monkeypatch.setattr(meter_store, "get_meter", lambda name: None)  # the loser's check ran before

    with pytest.raises(Conflict) as refused:
        meters.create(meters.definition(name="calls", aggregation="max"))

    assert refused.value.code == "meter_exists"
    assert meter_items(stack) == stored
    assert stored["METER#calls"]["aggregation"] == {"S": "count"}
    monkeypatch.undo()
    assert meters.get("calls") == first


def test_the_store_never_overwrites_a_meter(stack: Stack) -> None:
    meter = Meter(name="calls", aggregation="count", created_at=NOON_TEXT)
    assert meter_store.put_new_meter(meter) is True
    other = Meter(name="calls", aggregation="latest", created_at=LATER_TEXT)
    assert meter_store.put_new_meter(other) is False
    assert meter_store.get_meter("calls") == meter


def test_at_most_max_meters(stack: Stack, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meters, "MAX_METERS", 2)
    assert run("meters", "create", "a1")[0] == 0
    assert run("meters", "create", "a2")[0] == 0
    assert (
        refused(stack, run, "meters", "create", "a3")
        == "error: there are 2 meters already, the most a stack holds\n"
    )


# ---- GET /v1/meters ---------------------------------------------------------------------------------


EXPECTED_METERS = {
    "meters": [
        {
            "name": "active_users",
            "aggregation": "unique_count",
            "uniqueBy": "user_id",
            "dimensions": [],
            "unit": "users",
            "description": None,
            "status": "active",
            "shards": 1,
        },
        {
            "name": "api_calls",
            "aggregation": "count",
            "uniqueBy": None,
            "dimensions": ["endpoint", "model"],
            "unit": None,
            "description": "Requests by endpoint and model",
            "status": "active",
            "shards": 1,
        },
        {
            "name": "seats",
            "aggregation": "level",
            "uniqueBy": None,
            "dimensions": [],
            "unit": None,
            "description": None,
            "status": "archived",
            "shards": 1,
        },
    ]
}


@pytest.fixture
def three_meters(stack: Stack) -> Stack:
    meters.create(meters.definition(name="seats", aggregation="level"))
    meters.create(
        meters.definition(
            name="api_calls",
            aggregation="count",
            dimensions=["endpoint", "model"],
            description="Requests by endpoint and model",
        )
    )
    meters.create(
        meters.definition(name="active_users", aggregation="unique_count", unique_by="user_id", unit="users")
    )
    meters.archive("seats")
    return stack


@pytest.mark.parametrize("auth", [DEV_A, SERVICE], ids=["developer", "service"])
def test_get_meters_with_any_key(three_meters: Stack, auth: dict[str, Any]) -> None:
    answer = three_meters.call("GET", "/v1/meters", auth=auth)
    assert answer.status == 200, answer.body
    assert answer.json() == EXPECTED_METERS
    assert not any(name.lower().startswith(("ratelimit", "x-ratelimit")) for name in answer.headers)


def test_get_meters_through_the_authorizer(three_meters: Stack) -> None:
    auth.clear_cache()
    for developer, role in (("dev_alice", "developer"), ("dev_provider", "service")):
        key = accounts.create_key(developer, role).key
        answer = three_meters.api.call(
            "GET", "/v1/meters", headers={"Authorization": f"Bearer {key}"}, run_authorizer=True
        )
        assert answer.status == 200, answer.body
        assert answer.json() == EXPECTED_METERS
    anonymous = three_meters.api.call("GET", "/v1/meters", run_authorizer=True)
    assert anonymous.status == 401
    auth.clear_cache()


def test_get_meters_without_meters(stack: Stack) -> None:
    answer = stack.call("GET", "/v1/meters", auth=DEV_A)
    assert answer.status == 200, answer.body
    assert answer.json() == {"meters": []}


def test_get_meters_is_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with more meters stored than the bound (written around the CLI), the answer holds
    MAX_METERS of them."""
    for name in ("m1", "m2", "m3"):
        meter_store.put_new_meter(Meter(name=name, created_at=NOON_TEXT))
    monkeypatch.setattr(meters, "MAX_METERS", 2)
    answer = stack.call("GET", "/v1/meters", auth=SERVICE)
    assert answer.status == 200, answer.body
    assert [m["name"] for m in answer.json()["meters"]] == ["m1", "m2"]


# ---- plans put: no limits on max or latest meters -----------------------------------------------------


@pytest.mark.parametrize("aggregation", ["max", "latest"])
def test_plans_put_refuses_a_limit_on_max_or_latest(stack: Stack, run: Run, aggregation: str) -> None:
    meters.create(meters.definition(name="peak", aggregation=aggregation))
    assert refused(
        stack, run, "plans", "put", "gold", "--metric", "api_calls=100", "--metric", "peak=10"
    ) == (
        f"error: plan gold puts a limit on peak, a {aggregation} meter: max and latest meters take no limits\n"
    )

    # unlimited is no limit: allowed
    code, _, err = run("plans", "put", "gold", "--metric", "peak=unlimited")
    assert (code, err) == (0, "")
    assert plan_items(stack)["PLAN#gold"]["metrics"]["M"]["peak"]["M"]["limit"] == {"NULL": True}


@pytest.mark.parametrize("aggregation", ["sum", "count", "unique_count", "level"])
def test_plans_put_limits_other_meters(stack: Stack, run: Run, aggregation: str) -> None:
    unique_by = {"unique_by": "user_id"} if aggregation == "unique_count" else {}
    meters.create(meters.definition(name="things", aggregation=aggregation, **unique_by))

    code, out, err = run("plans", "put", "gold", "--metric", "things=10")
    assert out.startswith("stored plan gold")

    assert (code, err) == (0, "")
    assert account_store.get_plan("gold") == Plan(
        name="gold", metrics={"things": MetricLimit(limit=Decimal(10), enforcement="hard")}
    )


# ---- plan catalogs -----------------------------------------------------------------------------------

LEVEL_METERS = ("agents", "grants", "policies", "webhooks")
COUNT_METERS = ("audit_entries", "token_exchanges", "authorizations", "verifications")


def _meter_summary(stack: Stack) -> dict[str, tuple[str, list[str], str | None]]:
    return {
        pk.removeprefix("METER#"): (
            item["aggregation"]["S"],
            [d["S"] for d in item["dimensions"]["L"]],
            item["status"]["S"],
        )
        for pk, item in meter_items(stack).items()
    }


def _limits(stack: Stack) -> dict[str, dict[str, tuple[str | None, str]]]:
    """Each stored plan's metrics as {plan: {metric: (limit or None, enforcement)}}."""
    return {
        pk.removeprefix("PLAN#"): {
            metric: (value["M"]["limit"].get("N"), value["M"]["enforcement"]["S"])
            for metric, value in item["metrics"]["M"].items()
        }
        for pk, item in plan_items(stack).items()
    }


def test_seed_grantex(stack: Stack, run: Run) -> None:
    code, out, err = run("--json", "plans", "seed", "--catalog", "grantex")

    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "catalog": "grantex",
        "metersCreated": [*LEVEL_METERS, *COUNT_METERS],
        "metersUnchanged": [],
        "plansStored": ["free", "pro", "enterprise"],
        "plansUnchanged": [],
        "plansKept": [],
    }
    assert _meter_summary(stack) == {
        **{name: ("level", [], "active") for name in LEVEL_METERS},
        **{name: ("count", [], "active") for name in COUNT_METERS},
    }
    free = {"agents": "500", "grants": "1000", "policies": "50", "audit_entries": "20000"}
    free |= {"token_exchanges": "50000", "authorizations": "50000", "webhooks": "30"}
    pro = {"agents": "5000", "grants": "50000", "policies": "500", "audit_entries": "1000000"}
    pro |= {"token_exchanges": "5000000", "authorizations": "5000000", "webhooks": "200"}
    assert _limits(stack) == {
        "free": {metric: (limit, "hard") for metric, limit in free.items()},
        "pro": {metric: (limit, "hard") for metric, limit in pro.items()},
        "enterprise": dict.fromkeys(free, (None, "soft")),
    }
    assert all("requestsPerMinute" not in item for item in plan_items(stack).values())


def test_seed_glyphnet(stack: Stack, run: Run) -> None:
    code, out, err = run("plans", "seed", "--catalog", "glyphnet")

    assert (code, err) == (0, "")
    assert out == "catalog glyphnet: created 3 meter(s) (0 already there), stored 4 plan(s) (0 unchanged)\n"
    assert _meter_summary(stack) == {
        "api_calls": ("count", ["endpoint"], "active"),
        "verified_claims": ("sum", [], "active"),
        "confidence": ("sum", [], "active"),
    }
    assert _limits(stack) == {
        "free": {"api_calls": ("1000", "hard")},
        "starter": {"api_calls": ("50000", "hard")},
        "professional": {"api_calls": ("500000", "hard")},
        "enterprise": {"api_calls": ("10000000", "hard")},
    }
    rates = {
        pk.removeprefix("PLAN#"): (int(item["requestsPerMinute"]["N"]), item["rateEnforcement"]["S"])
        for pk, item in plan_items(stack).items()
    }
    assert rates == {
        "free": (60, "hard"),
        "starter": (200, "hard"),
        "professional": (500, "hard"),
        "enterprise": (2000, "hard"),
    }


def test_seeding_again_changes_nothing(stack: Stack, run: Run) -> None:
    assert run("plans", "seed", "--catalog", "grantex")[0] == 0
    before = accounts_items(stack)

    code, out, err = run("plans", "seed", "--catalog", "grantex")

    assert (code, err) == (0, "")
    assert out == "catalog grantex: created 0 meter(s) (8 already there), stored 0 plan(s) (3 unchanged)\n"
    assert accounts_items(stack) == before


def test_seed_keeps_a_differing_plan_unless_replace(stack: Stack, run: Run) -> None:
    assert run("plans", "seed")[0] == 0  # the default catalog: free, pro, enterprise
    default_free = plan_items(stack)["PLAN#free"]

    code, out, err = run("plans", "seed", "--catalog", "grantex")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "catalog grantex: created 8 meter(s) (0 already there), stored 0 plan(s) (0 unchanged)",
        *(
            f"kept plan {name}: the stored one differs (--replace stores the catalog's)"
            for name in ("free", "pro", "enterprise")
        ),
    ]
    assert plan_items(stack)["PLAN#free"] == default_free

    code, out, err = run("--json", "plans", "seed", "--catalog", "grantex", "--replace")
    assert (code, err) == (0, "")
    assert json.loads(out)["plansStored"] == ["free", "pro", "enterprise"]
    assert json.loads(out)["plansKept"] == []
    assert _limits(stack)["free"]["agents"] == ("500", "hard")
    assert "api_calls" not in _limits(stack)["free"]


def test_seed_refuses_a_meter_stored_otherwise_and_writes_nothing(stack: Stack, run: Run) -> None:
    meters.create(meters.definition(name="api_calls", aggregation="sum"))  # glyphnet's is a count
    assert refused(stack, run, "plans", "seed", "--catalog", "glyphnet") == (
        "error: catalog glyphnet needs meters stored otherwise: api_calls is stored as sum (-: -), "
        "the catalog has count by endpoint (requests: API requests, by endpoint (the usage breakdown)) "
        "(nothing was written)\n"
    )


def test_seed_refuses_an_archived_meter(stack: Stack, run: Run) -> None:
    assert run("plans", "seed", "--catalog", "grantex")[0] == 0
    meters.archive("webhooks")
    assert (
        refused(stack, run, "plans", "seed", "--catalog", "grantex")
        == "error: catalog grantex needs meters stored otherwise: webhooks is archived (nothing was written)\n"
    )
