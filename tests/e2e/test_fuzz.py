"""API fuzzing: schemathesis against the committed openapi.json, on the local stack, with valid keys.

Every generated request (valid and invalid inputs, the coverage phase's boundary values and
unexpected methods, the examples phase) goes through the real gateway, authorizer and
handlers. Each answer must not be a 5xx, must carry a status the document declares for that
route, and must match the declared content type and schema. A failure here is a defect of
the service or of the document: fix that, never loosen the checks.

Bounded and reproducible: a fixed number of examples per operation, a per-request timeout
and a per-case deadline, derandomized generation with a fixed seed and no example database,
so CI replays the same requests every run.

Long mode (opt-in): FUZZ_EXAMPLES sets the examples per operation and key (default 100),
FUZZ_SEED another seed, so a run explores requests CI never sends, e.g.
`FUZZ_EXAMPLES=1000 FUZZ_SEED=7 .venv/bin/pytest tests/e2e/test_fuzz.py --hypothesis-show-statistics`
(the statistics give the examples run per test).
"""

from __future__ import annotations

import json
import os
import zlib
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from usage_meter_local.dev import DEMO_DEVELOPER
from usage_meter_local.template import ROOT

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))  # per operation and key, fuzzing phase
# the compatible surfaces (/compat/...) present the same validated reads and track pipeline
# with few parameters of their own: a quarter of the examples keeps CI's time in bounds
COMPAT_EXAMPLES = max(1, MAX_EXAMPLES // 4)
SEED = int(os.environ.get("FUZZ_SEED", "20261125"))
REQUEST_TIMEOUT = 10.0  # seconds, one request
DEADLINE = timedelta(seconds=15)  # one generated case: its request and the checks

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",  # valid inputs and invalid ones
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            {"include-path-regex": "^/compat/", "generation": {"max-examples": COMPAT_EXAMPLES}},
        ],
    }
)

# the committed file, not the served document (a unit test keeps the two equal)
schema = schemathesis.openapi.from_path(ROOT / "openapi.json", config=CONFIG)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _bucket(case: Any) -> int:
    """A stable 0-3 drawn from the generated request (the same request gives the same bucket)."""
    generated = json.dumps([case.path_parameters, case.query, case.body], sort_keys=True, default=repr)
    return zlib.crc32(generated.encode()) % 4


def _name_developer(case: Any, developer_id: str, *, only_where_named: bool) -> None:
    """Set `developerId` in the query (GET) or in each event of the body (POST)."""
    if case.operation.method.upper() == "GET":
        if isinstance(case.query, dict):
            if "developerId" in case.query or not only_where_named:
                case.query["developerId"] = developer_id
        elif not only_where_named:
            case.query = {"developerId": developer_id}
        return
    body = case.body
    events = body.get("events") if isinstance(body, dict) else None
    for event in events if isinstance(events, list) else [body]:
        if isinstance(event, dict) and ("developerId" in event or not only_where_named):
            event["developerId"] = developer_id


def _call(case: Any, stack: dict[str, Any], key: str) -> None:
    case.call_and_validate(
        base_url=stack["base"],
        headers={"Authorization": f"Bearer {key}"},
        checks=CHECKS,
        timeout=REQUEST_TIMEOUT,
    )


@schema.parametrize()
@settings(deadline=DEADLINE)
def test_developer_key(case: Any, local_stack: dict[str, Any]) -> None:
    """The demo developer's own key. Where a request names a developer, half of them name the
    demo developer itself (the real paths); the rest keep what was generated (403, 422)."""
    if _bucket(case) < 2:
        _name_developer(case, DEMO_DEVELOPER, only_where_named=True)
    _call(case, local_stack, local_stack["developerKey"])


@schema.parametrize()
@settings(deadline=DEADLINE)
def test_service_key(case: Any, local_stack: dict[str, Any]) -> None:
    """A service key must name the developer: three requests in four name the demo developer
    (the real paths); the rest keep what was generated (unknown developer, none, invalid)."""
    if _bucket(case) < 3:
        _name_developer(case, DEMO_DEVELOPER, only_where_named=False)
    _call(case, local_stack, local_stack["serviceKey"])
