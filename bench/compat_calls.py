"""DynamoDB calls per answer of the compatible surfaces, beside the main-API read each presents.

The real handlers (routes from template.yaml) serve each request in-process against moto
while the service's DynamoDB client counts its calls (the Meter of calls_per_event.py). The
developer is on the `glyphnet` catalog's professional plan (a rate: the answers carry the
rate headers) with a few events of each kind the surfaces read; the `grantex` catalog's
meters exist too. "extra" is what a surface costs beyond its twin.
"""

from __future__ import annotations

import sys
from typing import Any

from calls_per_event import AUTHORIZER, Meter, bench_stack

from usage_meter.domain import accounts
from usage_meter.store import dynamodb as store_db
from usage_meter_admin import catalogs
from usage_meter_local.invoke import LocalApi

from report import markdown_table

DEVELOPER = "dev_compat"
WHO = {"developerId": DEVELOPER}
EVENTS = [
    {"developerId": DEVELOPER, "metric": "api_calls", "metadata": {"endpoint": "verify"}},
    {"developerId": DEVELOPER, "metric": "api_calls"},  # the combination the tracks below count under
    {"developerId": DEVELOPER, "metric": "verified_claims", "quantity": 3},
    {"developerId": DEVELOPER, "metric": "confidence", "quantity": 0.9},
    {"developerId": DEVELOPER, "metric": "token_exchanges"},
    {"developerId": DEVELOPER, "metric": "authorizations"},
]
BILLING_TRACK = {"customerId": DEVELOPER, "featureKey": "api_calls", "quantity": 1}
MAIN_TRACK = {"developerId": DEVELOPER, "metric": "api_calls", "quantity": 1}

# (surface request, its main-API twin): method, path, query, body
PAIRS: list[tuple[str, tuple[str, str, dict[str, str], Any], tuple[str, str, dict[str, str], Any]]] = [
    ("Grantex usage", ("GET", "/compat/grantex/v1/usage", WHO, None), ("GET", "/v1/usage", WHO, None)),
    (
        "Grantex history (30 days)",
        ("GET", "/compat/grantex/v1/usage/history", {**WHO, "days": "30"}, None),
        ("GET", "/v1/usage/history", {**WHO, "days": "30"}, None),
    ),
    (
        "Glyphnet usage (month)",
        ("GET", "/compat/glyphnet/v1/usage", WHO, None),
        ("GET", "/v1/usage", WHO, None),
    ),
    (
        "BillingOS track",
        ("POST", "/compat/billingos/v1/usage/track", {}, BILLING_TRACK),
        ("POST", "/v1/usage/events", {}, MAIN_TRACK),
    ),
    (
        "BillingOS metrics",
        ("GET", "/compat/billingos/v1/usage/metrics", {"customerId": DEVELOPER}, None),
        ("GET", "/v1/usage", WHO, None),
    ),
    (
        "BillingOS check",
        (
            "GET",
            "/compat/billingos/v1/entitlements/check",
            {"customerId": DEVELOPER, "featureKey": "api_calls"},
            None,
        ),
        ("GET", "/v1/entitlements/api_calls", WHO, None),
    ),
]


def described(calls: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in sorted(calls.items())) or "-"


def main() -> int:
    rows: list[list[str]] = []
    with bench_stack():
        catalogs.seed("glyphnet")
        catalogs.seed("grantex")  # its meters; the plans of the same names stay the glyphnet ones
        accounts.create_developer("Compat", plan="professional", developer_id=DEVELOPER)
        api = LocalApi(timeout_s=900)
        answer = api.call("POST", "/v1/usage/events", body={"events": EVENTS}, authorizer=AUTHORIZER)
        if answer.status != 200 or answer.json()["recorded"] != len(EVENTS):
            raise SystemExit(f"tracking failed: {answer.body[:300]}")
        meter = Meter(store_db.client(), ask_capacity=False)
        for name, surface, twin in PAIRS:
            counted = []
            for method, path, query, body in (surface, twin):
                with meter.measuring() as tally:
                    answer = api.call(method, path, query=query or None, body=body, authorizer=AUTHORIZER)
                if answer.status != 200:
                    raise SystemExit(f"{path} answered {answer.status}: {answer.body[:300]}")
                counted.append(dict(tally.calls))
            extra = sum(counted[0].values()) - sum(counted[1].values())
            rows.append([name, described(counted[0]), described(counted[1]), f"{extra:+d}"])
    print("DynamoDB calls per answer: each compatible surface and the main-API request it presents (moto)")
    print(markdown_table(["request", "calls", "main-API twin", "extra"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
