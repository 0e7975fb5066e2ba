"""The served OpenAPI document is the committed one (regenerate with `make openapi`)."""

from __future__ import annotations

import json
from pathlib import Path

from integration.conftest import Stack

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


def test_served_document_equals_the_committed_one(stack: Stack) -> None:
    answer = stack.call("GET", "/v1/openapi.json", auth=None)
    assert answer.status == 200
    assert json.loads(answer.body) == json.loads(COMMITTED.read_text()), "run `make openapi` and commit"


def test_document_describes_every_route_of_the_template(stack: Stack) -> None:
    document = json.loads(COMMITTED.read_text())
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    routed = {(r.method, r.path) for r in stack.api.routes if r.path != "/v1/openapi.json"}
    assert documented == routed
