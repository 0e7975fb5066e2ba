"""The seeds' own clients against the local stack over HTTP, unchanged but for where they point.

- Grantex: the real `grantex` package from PyPI runs the examples of its Python SDK's usage
  page (Current, History, and the "Usage Dashboard"), with base_url=<api>/compat/grantex and a
  developer key in place of `api_key="gx_live_..."`.
- Glyphnet: the example request and `check_usage_and_alert()` of its `GET /v1/usage` page, with
  `requests`, its URL replaced by <api>/compat/glyphnet/v1/usage and its key by a developer
  key (in X-API-Key, as documented).
- BillingOS: its "Track + check in one flow" handler, ported line for line to Python over
  `requests` (the same three calls with the same fields), with the stack's service key.

Each example is kept below as the seed prints it; only the two substitutions named above are
applied before it runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from e2e.conftest import admin

pytestmark = pytest.mark.e2e

# ---- the seeds' examples, as printed (seeds/grantex-python-sdk-usage.md) ---------------------

GRANTEX_CURRENT = """
from grantex import Grantex

with Grantex(api_key="gx_live_...") as client:
    usage = client.usage.current()

    print(f"Developer: {usage.developer_id}")
    print(f"Period: {usage.period}")
    print(f"Token exchanges: {usage.token_exchanges}")
    print(f"Authorizations: {usage.authorizations}")
    print(f"Verifications: {usage.verifications}")
    print(f"Total requests: {usage.total_requests}")
"""

GRANTEX_HISTORY = """
from grantex import Grantex

with Grantex(api_key="gx_live_...") as client:
    history = client.usage.history(days=7)

    for entry in history.entries:
        print(f"{entry.date}: {entry.total_requests} requests")
        print(f"  Exchanges: {entry.token_exchanges}")
        print(f"  Authorizations: {entry.authorizations}")
        print(f"  Verifications: {entry.verifications}")
"""

GRANTEX_DASHBOARD = """
from grantex import Grantex

with Grantex(api_key="gx_live_...") as client:
    # Check current period usage
    current = client.usage.current()
    print(f"Period: {current.period}")
    print(f"Total requests: {current.total_requests}")
    print(f"  Authorizations: {current.authorizations}")
    print(f"  Token exchanges: {current.token_exchanges}")
    print(f"  Verifications: {current.verifications}")

    # Get last 30 days of usage
    history = client.usage.history(days=30)
    total_month = sum(e.total_requests for e in history.entries)
    print(f"\\nLast 30 days: {total_month} total requests")

    # Find peak usage day
    peak = max(history.entries, key=lambda e: e.total_requests)
    print(f"Peak day: {peak.date} ({peak.total_requests} requests)")
"""

# ---- (seeds/glyphnet-get-usage.md) -----------------------------------------------------------

GLYPHNET_REQUEST = """
import requests
# Get this month's usage
response = requests.get(
"https://api.glyphnet.io/v1/usage",
headers={"X-API-Key": "gn_live_your_key_here"},
params={"period": "month"}
)
usage = response.json()
print(f"Used: {usage['current_usage']:,} / {usage['monthly_limit']:,}")
print(f"Remaining: {usage['remaining']:,}")
"""

GLYPHNET_MONITORING = '''
import requests
import os
def check_usage_and_alert():
    """Check usage and send alert if over 80%."""
    response = requests.get(
        "https://api.glyphnet.io/v1/usage",
        headers={"X-API-Key": os.environ["GLYPHNET_API_KEY"]}
    )
    usage = response.json()
    percentage = usage["percentage_used"]
    if percentage >= 90:
        send_alert(f"CRITICAL: {percentage:.1f}% of monthly limit used!")
    elif percentage >= 80:
        send_alert(f"WARNING: {percentage:.1f}% of monthly limit used")
    return {
        "used": usage["current_usage"],
        "limit": usage["monthly_limit"],
        "remaining": usage["remaining"],
        "percentage": percentage
    }
'''


def run_example(code: str, replacements: dict[str, str], scope: dict[str, Any] | None = None) -> str:
    """Run a seed's example with only `replacements` applied (each must occur); what it printed."""
    for documented, local in replacements.items():
        assert documented in code, documented
        code = code.replace(documented, local)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<seed example>", "exec"), scope if scope is not None else {})  # noqa: S102
    return out.getvalue()


# ---- the stack: developers with keys, events tracked by the provider's backend ---------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def developer_on(stack: dict[str, Any], *plan_options: str) -> tuple[str, str]:
    """A fresh developer on a fresh plan made of `plan_options`, and its developer key."""
    plan = unique("compat")
    admin(stack, "plans", "put", plan, *plan_options)
    developer = admin(stack, "developers", "create", "--name", "Acme Corp", "--plan", plan)
    key = admin(stack, "keys", "create", developer["developerId"])["key"]
    return developer["developerId"], key


def track(stack: dict[str, Any], developer_id: str, *events: dict[str, Any]) -> None:
    """Record events as the provider's backend does (the service key, the main API)."""
    body = {"events": [{"developerId": developer_id, **event} for event in events]}
    answer = requests.post(
        f"{stack['base']}/v1/usage/events",
        json=body,
        headers={"Authorization": f"Bearer {stack['serviceKey']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == len(events), answer.text


def days_ago(days: int, **event: Any) -> dict[str, Any]:
    moment = datetime.now(UTC) - timedelta(days=days)
    return {**event, "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


def today() -> date:
    return datetime.now(UTC).date()


# ---- Grantex ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grantex_developer(local_stack: dict[str, Any]) -> dict[str, Any]:
    """The `grantex` catalog's meters (its plans stay as the stack has them), a developer on a
    plan with a rate, and its usage: 4 token exchanges and 2 authorizations today, 1
    authorization 2 days ago, 3 verifications 5 days ago."""
    admin(local_stack, "plans", "seed", "--catalog", "grantex")
    developer_id, key = developer_on(
        local_stack, "--metric", "token_exchanges=50000:hard", "--requests-per-minute", "1000"
    )
    spread = {
        0: ["token_exchanges"] * 4 + ["authorizations"] * 2,
        2: ["authorizations"],
        5: ["verifications"] * 3,
    }
    track(local_stack, developer_id, *[days_ago(d, metric=m) for d, names in spread.items() for m in names])
    by_day = {today() - timedelta(days=d): names for d, names in spread.items()}
    return {
        "developer_id": developer_id,
        "key": key,
        "base_url": f"{local_stack['base']}/compat/grantex",
        "by_day": by_day,
    }


def grantex_replacements(developer: dict[str, Any]) -> dict[str, str]:
    return {
        'Grantex(api_key="gx_live_...")': f'Grantex(api_key="{developer["key"]}", base_url="{developer["base_url"]}")'
    }


def in_period(by_day: dict[date, list[str]], metric: str | None = None) -> int:
    """Events of this month (of one metric, or all)."""
    return sum(
        1
        for day, names in by_day.items()
        if (day.year, day.month) == (today().year, today().month)
        for name in names
        if metric in (None, name)
    )


def test_grantex_sdk_usage_dashboard_runs_unchanged(grantex_developer: dict[str, Any]) -> None:
    printed = run_example(GRANTEX_DASHBOARD, grantex_replacements(grantex_developer))
    by_day = grantex_developer["by_day"]
    assert printed == (
        f"Period: {today():%Y-%m}\n"
        f"Total requests: {in_period(by_day)}\n"
        f"  Authorizations: {in_period(by_day, 'authorizations')}\n"
        f"  Token exchanges: {in_period(by_day, 'token_exchanges')}\n"
        f"  Verifications: {in_period(by_day, 'verifications')}\n"
        "\nLast 30 days: 10 total requests\n"
        f"Peak day: {today().isoformat()} (6 requests)\n"
    )


def test_grantex_sdk_current_and_history_examples(grantex_developer: dict[str, Any]) -> None:
    replacements = grantex_replacements(grantex_developer)
    current = run_example(GRANTEX_CURRENT, replacements).splitlines()
    assert current[:2] == [f"Developer: {grantex_developer['developer_id']}", f"Period: {today():%Y-%m}"]
    history = run_example(GRANTEX_HISTORY, replacements).splitlines()
    assert len(history) == 7 * 4
    days = [today() - timedelta(days=6 - i) for i in range(7)]  # oldest first
    expected: list[str] = []
    for day in days:
        names = grantex_developer["by_day"].get(day, [])
        expected += [
            f"{day.isoformat()}: {len(names)} requests",
            f"  Exchanges: {names.count('token_exchanges')}",
            f"  Authorizations: {names.count('authorizations')}",
            f"  Verifications: {names.count('verifications')}",
        ]
    assert history == expected


def test_grantex_sdk_types_and_rate_headers(grantex_developer: dict[str, Any]) -> None:
    from grantex import Grantex

    with Grantex(api_key=grantex_developer["key"], base_url=grantex_developer["base_url"]) as client:
        usage = client.usage.current()
        assert all(
            type(value) is int
            for value in (
                usage.token_exchanges,
                usage.authorizations,
                usage.verifications,
                usage.total_requests,
            )
        )
        history = client.usage.history(days=7)
        assert history.days == 7
        assert history.developer_id == grantex_developer["developer_id"]
        rate = client._http.last_rate_limit  # what the SDK read from x-ratelimit-*
        assert rate is not None
        assert rate.limit == 1000
        assert 0 < rate.reset <= 60
        assert rate.remaining <= 1000


def test_grantex_sdk_errors_carry_our_codes(grantex_developer: dict[str, Any]) -> None:
    from grantex import Grantex
    from grantex._errors import GrantexApiError, GrantexAuthError

    with Grantex(api_key="gx_live_unknown", base_url=grantex_developer["base_url"], max_retries=0) as client:
        with pytest.raises(GrantexAuthError) as refused:
            client.usage.current()
        assert (refused.value.status_code, refused.value.code) == (401, "unauthorized")
    with Grantex(
        api_key=grantex_developer["key"], base_url=grantex_developer["base_url"], max_retries=0
    ) as client:
        with pytest.raises(GrantexApiError) as invalid:
            client.usage.history(days=0)
        assert (invalid.value.status_code, invalid.value.code) == (422, "validation_error")


# ---- Glyphnet --------------------------------------------------------------------------------


@pytest.fixture
def glyphnet(local_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A developer on a 10-request plan with Glyphnet's professional rate (500 a minute, hard)."""
    developer_id, key = developer_on(
        local_stack,
        "--metric",
        "api_calls=10:hard",
        "--requests-per-minute",
        "500",
        "--rate-enforcement",
        "hard",
    )
    monkeypatch.setenv("GLYPHNET_API_KEY", key)
    return {
        "developer_id": developer_id,
        "key": key,
        "url": f"{local_stack['base']}/compat/glyphnet/v1/usage",
        "stack": local_stack,
    }


def test_glyphnet_example_request_runs_unchanged(glyphnet: dict[str, Any]) -> None:
    track(
        glyphnet["stack"],
        glyphnet["developer_id"],
        *[{"metric": "api_calls", "quantity": 1, "metadata": {"endpoint": "verify"}}] * 3,
    )
    replacements = {
        "https://api.glyphnet.io/v1/usage": glyphnet["url"],
        "gn_live_your_key_here": glyphnet["key"],
    }
    assert run_example(GLYPHNET_REQUEST, replacements) == "Used: 3 / 10\nRemaining: 7\n"


def test_glyphnet_check_usage_and_alert_runs_unchanged(glyphnet: dict[str, Any]) -> None:
    alerts: list[str] = []
    scope: dict[str, Any] = {"send_alert": alerts.append}
    run_example(GLYPHNET_MONITORING, {"https://api.glyphnet.io/v1/usage": glyphnet["url"]}, scope)
    check: Callable[[], dict[str, Any]] = scope["check_usage_and_alert"]
    assert os.environ["GLYPHNET_API_KEY"] == glyphnet["key"]

    def requests_made(count: int) -> None:
        track(glyphnet["stack"], glyphnet["developer_id"], *[{"metric": "api_calls", "quantity": 1}] * count)

    requests_made(5)
    assert check() == {"used": 5, "limit": 10, "remaining": 5, "percentage": 50}
    assert alerts == []
    requests_made(3)
    assert check() == {"used": 8, "limit": 10, "remaining": 2, "percentage": 80}
    requests_made(1)
    assert check()["percentage"] == 90
    assert alerts == ["WARNING: 80.0% of monthly limit used", "CRITICAL: 90.0% of monthly limit used!"]


def test_glyphnet_answer_shape_and_headers(glyphnet: dict[str, Any]) -> None:
    track(glyphnet["stack"], glyphnet["developer_id"], {"metric": "api_calls", "quantity": 1})
    answer = requests.get(glyphnet["url"], headers={"X-API-Key": glyphnet["key"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    usage = answer.json()
    organization = usage["organization"]
    assert (organization["id"], organization["name"]) == (glyphnet["developer_id"], "Acme Corp")
    assert organization["plan"].startswith("compat-")  # the plan developer_on made
    assert usage["period"]["start"] == f"{today():%Y-%m}-01T00:00:00Z"
    assert usage["period"]["end"].endswith("T23:59:59Z")
    assert usage["rate_limit"]["requests_per_minute"] == 500
    assert usage["daily"][-1] == {
        "date": today().isoformat(),
        "requests": 1,
        "verified_claims": 0,
        "avg_confidence": None,
    }
    assert len(usage["daily"]) == today().day
    assert answer.headers["X-RateLimit-Limit"] == "500"
    assert int(answer.headers["X-RateLimit-Remaining"]) < 500
    unknown = requests.get(glyphnet["url"], headers={"X-API-Key": "gn_live_your_key_here"}, timeout=30)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (401, "unauthorized")


# ---- BillingOS -------------------------------------------------------------------------------


class BillingOS:
    """BillingOS's server SDK calls as its documentation gives them (trackUsage,
    getUsageMetrics, checkEntitlement), over HTTP with `requests`."""

    def __init__(self, base_url: str, secret_key: str) -> None:
        self.base_url = f"{base_url}/compat/billingos/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {secret_key}"
        self.answers: list[requests.Response] = []

    def _answer(self, response: requests.Response) -> Any:
        self.answers.append(response)
        response.raise_for_status()
        return response.json()

    def track_usage(self, params: dict[str, Any]) -> Any:
        return self._answer(self.session.post(f"{self.base_url}/usage/track", json=params, timeout=30))

    def get_usage_metrics(self, customer_id: str, feature_key: str | None = None) -> Any:
        query = {"customerId": customer_id, **({"featureKey": feature_key} if feature_key else {})}
        return self._answer(self.session.get(f"{self.base_url}/usage/metrics", params=query, timeout=30))

    def check_entitlement(self, customer_id: str, feature_key: str) -> Any:
        query = {"customerId": customer_id, "featureKey": feature_key}
        return self._answer(self.session.get(f"{self.base_url}/entitlements/check", params=query, timeout=30))


def track_and_check(billing: BillingOS, user_id: str, process_api_call: Callable[[], Any]) -> tuple[int, Any]:
    """The seed's `POST` handler ("Example: Track + check in one flow"), line for line."""
    # Check if user has remaining quota
    entitlement = billing.check_entitlement(user_id, "api_calls")

    if not entitlement["has_access"]:
        return 403, {"error": "Plan upgrade required"}

    if (
        entitlement["usage"] is not None
        and entitlement["limit"] is not None
        and entitlement["usage"] >= entitlement["limit"]
    ):
        return 429, {"error": "API call limit reached"}

    # Do the work
    result = process_api_call()

    # Track the usage
    billing.track_usage(
        {
            "customerId": user_id,
            "featureKey": "api_calls",
            "quantity": 1,
        }
    )

    return 200, result


def test_billingos_track_and_check_flow(local_stack: dict[str, Any]) -> None:
    """Every branch of the seed's handler: a hard limit used up stops it before the work (the
    check's has_access is false then, as the main API's hasAccess), a soft limit passed is its
    429, a plan without the feature its 403."""
    billing = BillingOS(local_stack["base"], local_stack["serviceKey"])
    done: list[int] = []

    def work() -> dict[str, Any]:
        done.append(1)
        return {"ok": len(done)}

    hard, _ = developer_on(local_stack, "--metric", "api_calls=3:hard", "--requests-per-minute", "1000")
    outcomes = [track_and_check(billing, hard, work) for _ in range(4)]
    assert outcomes == [
        (200, {"ok": 1}),
        (200, {"ok": 2}),
        (200, {"ok": 3}),
        (403, {"error": "Plan upgrade required"}),
    ]
    assert len(done) == 3  # the fourth call did no work and tracked nothing
    metrics = billing.get_usage_metrics(hard, "api_calls")
    assert metrics["customer_id"] == hard
    (entry,) = metrics["metrics"]
    assert (entry["feature_key"], entry["consumed"], entry["limit"], entry["remaining"]) == (
        "api_calls",
        3,
        3,
        0,
    )
    assert entry["percentage_used"] == 100
    # every answer carried the rate headers
    assert all(answer.headers["X-RateLimit-Limit"] == "1000" for answer in billing.answers)

    soft, _ = developer_on(local_stack, "--metric", "api_calls=2:soft")
    outcomes = [track_and_check(billing, soft, work) for _ in range(3)]
    assert outcomes == [(200, {"ok": 4}), (200, {"ok": 5}), (429, {"error": "API call limit reached"})]

    without, _ = developer_on(local_stack, "--metric", "tokens=100:hard")
    assert track_and_check(billing, without, work) == (403, {"error": "Plan upgrade required"})
    assert len(done) == 5


def test_billingos_track_answer_and_idempotency(local_stack: dict[str, Any]) -> None:
    billing = BillingOS(local_stack["base"], local_stack["serviceKey"])
    user_id, developer_key = developer_on(local_stack, "--metric", "api_calls=1000:hard")
    request_id = uuid.uuid4().hex
    params = {
        "customerId": user_id,
        "featureKey": "api_calls",
        "quantity": 1,
        "idempotencyKey": f"api-call-{request_id}",
    }
    first = billing.track_usage(params)
    assert set(first) == {"success", "feature_key", "quantity", "recorded_at", "usage"}
    assert (first["success"], first["feature_key"], first["quantity"]) == (True, "api_calls", 1)
    assert first["usage"]["consumed_units"] == 1
    assert set(first["usage"]) == {
        "consumed_units",
        "limit_units",
        "remaining_units",
        "period_start",
        "period_end",
    }
    assert billing.track_usage(params) == first  # a retry: counted once
    assert billing.check_entitlement(user_id, "api_calls")["usage"] == 1
    negative = billing.session.post(
        f"{billing.base_url}/usage/track", json={**params, "quantity": -1}, timeout=30
    )
    assert (negative.status_code, negative.json()["error"]["code"]) == (422, "quantity_not_positive")
    as_customer = requests.post(
        f"{billing.base_url}/usage/track",
        json=params,
        headers={"Authorization": f"Bearer {developer_key}"},
        timeout=30,
    )
    assert (as_customer.status_code, as_customer.json()["error"]["code"]) == (403, "forbidden")
    assert billing.check_entitlement(user_id, "api_calls")["usage"] == 1
