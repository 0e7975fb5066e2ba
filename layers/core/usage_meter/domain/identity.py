"""Who may act for which developer: the authorizer decides who calls, this decides for whom."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from usage_meter.domain.plans import get_plan
from usage_meter.domain.verified import VerifiedAccounts
from usage_meter.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from usage_meter.models.accounts import Developer, Identity, Plan, Role
from usage_meter.store import accounts as account_store

_AUTH_ERRORS = {
    "missing_key": "missing API key",
    "malformed_key": "malformed API key",
    "unknown_key": "unknown API key",
    "revoked_key": "revoked API key",
}


def authorizer_context(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """`requestContext.authorizer.lambda` of a payload-2.0 event: where a Lambda authorizer
    puts what it resolved (the one place that walks it)."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    found = authorizer.get("lambda") if isinstance(authorizer, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else None


def authorizer_refusal(context: Mapping[str, Any] | None) -> Unauthorized | None:
    """The 401 for a request the authorizer refused (no key, a malformed, unknown or revoked
    one: `authError` in its context), else None. The authorizer answers API Gateway
    "authorized" either way, so that this 401 has the API's own error body: whatever runs
    behind it must ask this first."""
    if context and context.get("authError"):
        return Unauthorized(_AUTH_ERRORS.get(str(context["authError"]), "invalid API key"))
    return None


def identity_from_authorizer(context: dict[str, Any] | None) -> Identity:
    """The caller as the Lambda authorizer put it in `requestContext.authorizer.lambda`.

    Anything but a well-formed identity is 401: a handler never runs for an unknown caller.
    """
    if not context:
        raise Unauthorized("missing API key")
    refusal = authorizer_refusal(context)
    if refusal is not None:
        raise refusal
    try:
        return Identity(developer_id=context.get("developerId", ""), role=context.get("role", ""))
    except ValidationError as exc:
        raise Unauthorized("invalid authorizer context") from exc


def require_role(identity: Identity, role: Role, action: str) -> None:
    """Refuse `action` (403 `forbidden`) to any other role, before anything is read or written.

    Tracking is the provider backend's alone (`service`): a developer key that could track
    could skip its own usage, forge it, or take the provider's idempotency keys first.
    """
    if identity.role != role:
        raise Forbidden(f"{action} needs a {role} key")


class DeveloperResolver:
    """Resolves the developer each request (or batch item) acts for, checking existence once."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._developers: dict[str, Developer | None] = {}
        self._plans: dict[str, Plan | None] = {}
        self.verified: VerifiedAccounts | None = None
        self.minute_events: dict[tuple[str, str], int] = {}  # (developer, minute) read after a write
        self._acted_for: set[str] = set()

    def use_copies(self, verified: VerifiedAccounts | None) -> None:
        """Read profiles and plans from the container's copies, checked by `verified` in the
        transaction (None: read them fresh); what this request read so far is forgotten."""
        self.verified = verified
        self._developers.clear()
        self._plans.clear()

    def developer(self, developer_id: str) -> Developer | None:
        """The developer's profile, read once per request (strongly consistent, or a copy the
        transaction checks)."""
        if developer_id not in self._developers:
            read = self.verified.developer if self.verified else account_store.get_developer
            self._developers[developer_id] = read(developer_id)
        return self._developers[developer_id]

    def plan(self, developer_id: str, period_end: datetime | None = None) -> Plan | None:
        """The developer's plan as of this request (a plan change applies to the next request);
        with `period_end`, the plan of the billing period ending then (see Developer.plan_at_end_of)."""
        developer = self.developer(developer_id)
        if developer is None:
            return None
        name = developer.plan if period_end is None else developer.plan_at_end_of(period_end)
        if name not in self._plans:
            self._plans[name] = get_plan(name, self.verified.stored_plan) if self.verified else get_plan(name)
        return self._plans[name]

    def __call__(self, requested: str | None) -> str:
        """Developer keys act for themselves only (naming another developer is 403, never a
        silent rewrite); service keys must name an existing developer (404 otherwise)."""
        if self.identity.role == "service":
            if not requested:
                raise ValidationFailed(
                    "developerId is required with a service key", code="developer_id_required"
                )
            if self.developer(requested) is None:
                raise NotFound(f"no developer {requested}", code="developer_not_found")
            self._acted_for.add(requested)
            return requested
        self._acted_for.add(self.identity.developer_id)  # its own, even when it named another
        if requested and requested != self.identity.developer_id:
            raise Forbidden("a developer key can only act for its own developer")
        return self.identity.developer_id

    @property
    def acting_for(self) -> str | None:
        """The one developer the request got to act for: a developer key's own, or the existing
        developer a service key's request named. None before the request resolved one (a
        refusal by role reads nothing), or when it named several."""
        return next(iter(self._acted_for)) if len(self._acted_for) == 1 else None
