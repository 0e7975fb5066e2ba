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


def test_each_compatible_surface_has_its_own_tag() -> None:
    """The seeds' APIs are found apart from the main one: every /compat/<seed> operation, and
    only those, under that seed's tag."""
    document = json.loads(COMMITTED.read_text())
    tags: dict[str, set[str]] = {}
    for path, operations in document["paths"].items():
        surface = path.split("/")[2] if path.startswith("/compat/") else "main"
        for operation in operations.values():
            tags.setdefault(surface, set()).update(operation["tags"])
    assert tags["grantex"] == {"Grantex compatible"}
    assert tags["glyphnet"] == {"Glyphnet compatible"}
    assert tags["billingos"] == {"BillingOS compatible"}
    assert tags["main"].isdisjoint({"Grantex compatible", "Glyphnet compatible", "BillingOS compatible"})
