"""Who may act for which developer: the authorizer decides who calls, this decides for whom."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from usage_meter.errors import Forbidden, Unauthorized, ValidationFailed
from usage_meter.models import Identity


def identity_from_authorizer(context: dict[str, Any] | None) -> Identity:
    """The caller as the Lambda authorizer put it in `requestContext.authorizer.lambda`."""
    if not context:
        raise Unauthorized("missing API key")
    try:
        return Identity(developer_id=context.get("developerId", ""), role=context.get("role", ""))
    except ValidationError as exc:
        raise Unauthorized("invalid authorizer context") from exc


def resolve_developer(identity: Identity, requested: str | None) -> str:
    """The developer a request acts for.

    Developer keys act for themselves only (naming another developer is 403, never a silent
    rewrite); service keys must name the developer.
    """
    if identity.role == "service":
        if not requested:
            raise ValidationFailed("developerId is required with a service key", code="developer_id_required")
        return requested
    if requested and requested != identity.developer_id:
        raise Forbidden("a developer key can only act for its own developer")
    return identity.developer_id
