"""GET /v1/openapi.json: the whole API's OpenAPI document, built from every router."""

from __future__ import annotations

from usage_meter.http import (
    billingos,
    current,
    entitlements,
    events,
    glyphnet,
    grantex,
    history,
    meters,
    track,
)
from usage_meter.http.resolver import make_resolver

API_TITLE = "Usage Meter API"
API_VERSION = "1.0.0"

ALL_ROUTERS = (
    track.router,
    current.router,
    history.router,
    entitlements.router,
    meters.router,
    events.router,
    grantex.router,
    glyphnet.router,
    billingos.router,
)


def openapi_document() -> str:
    """The whole API's OpenAPI document (what GET /v1/openapi.json serves and openapi.json holds)."""
    app = make_resolver(authenticated=False)
    for router in ALL_ROUTERS:
        app.include_router(router)
    return app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Exact usage metering: idempotent tracking, current usage, history.",
    )
