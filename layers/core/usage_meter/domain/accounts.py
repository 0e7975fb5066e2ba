"""Developers, API keys and plan assignment: what the admin CLI does.

A key is `um_live_` + 32 base62 characters (~190 bits). Only its sha256 and a short display
prefix are stored; the plaintext exists once, in the answer of `create_key`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

from pydantic import BaseModel, ValidationError

from usage_meter.domain import clock, meters
from usage_meter.domain.plans import DEFAULT_PLAN, DEFAULT_PLANS, get_plan
from usage_meter.errors import Conflict, NotFound, ValidationFailed, json_message
from usage_meter.models.accounts import (
    ApiKeyRecord,
    Developer,
    DeveloperDeletion,
    Plan,
    PlanAssignment,
    PlanDeletion,
    Role,
)
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import DEVELOPER_ID_PATTERN
from usage_meter.store import accounts as account_store

KEY_PREFIX = "um_live_"
KEY_BODY_LENGTH = 32
KEY_PATTERN = re.compile(rf"{KEY_PREFIX}[0-9A-Za-z]{{{KEY_BODY_LENGTH}}}")
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 4
_BASE62 = string.digits + string.ascii_letters


class CreatedKey(BaseModel):
    """A new key: `key` is the only time the plaintext is seen."""

    key: str
    record: ApiKeyRecord


def _random(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_well_formed(key: str) -> bool:
    return KEY_PATTERN.fullmatch(key) is not None


def plans() -> list[Plan]:
    """Stored plans, with the defaults for any name not stored (so a fresh stack has free/pro/enterprise)."""
    stored = {plan.name: plan for plan in account_store.list_plans()}
    merged = {plan.name: plan for plan in DEFAULT_PLANS} | stored
    return [merged[name] for name in sorted(merged)]


def _require_plan(name: str) -> None:
    if get_plan(name) is None:
        known = ", ".join(p.name for p in plans())
        raise NotFound(f"no plan {name!r} (known plans: {known})", code="plan_not_found")


def put_plan(plan: Plan) -> Plan:
    """Create or replace a plan; developers on it get its limits from their next request."""
    meters.refuse_unlimitable(plan)
    account_store.put_plan(plan)
    return plan


def seed_default_plans() -> list[Plan]:
    """Store the default plans that are not stored yet (never overwrites an edited plan)."""
    stored = {plan.name for plan in account_store.list_plans()}
    added = [plan for plan in DEFAULT_PLANS if plan.name not in stored]
    for plan in added:
        account_store.put_plan(plan)
    return added


def create_developer(name: str, plan: str = DEFAULT_PLAN, developer_id: str | None = None) -> Developer:
    _require_plan(plan)
    new_id = developer_id or f"dev_{_random(16)}"
    if not re.fullmatch(DEVELOPER_ID_PATTERN, new_id):
        raise ValidationFailed(f"invalid developer id {new_id!r}", code="invalid_developer_id")
    try:
        created_at = format_timestamp(clock.now())
        developer = Developer(
            developer_id=new_id,
            name=name,
            plan=plan,
            created_at=created_at,
            plan_history=[PlanAssignment(plan=plan, since=created_at)],
        )
    except ValidationError as exc:
        fields = ", ".join(f"{'.'.join(map(str, e['loc']))}: {json_message(e)}" for e in exc.errors())
        raise ValidationFailed(f"invalid developer: {fields}", code="invalid_developer") from exc
    account_store.put_developer(developer)
    return developer


def get_developer(developer_id: str) -> Developer:
    developer = account_store.get_developer(developer_id)
    if developer is None:
        raise NotFound(f"no developer {developer_id}", code="developer_not_found")
    return developer


def set_plan(developer_id: str, plan: str) -> Developer:
    """Move a developer to `plan` from now on; earlier billing periods keep the plan they had."""
    _require_plan(plan)
    account_store.set_developer_plan(
        developer_id, PlanAssignment(plan=plan, since=format_timestamp(clock.now()))
    )
    return get_developer(developer_id)


def create_key(developer_id: str, role: Role = "developer") -> CreatedKey:
    key = f"{KEY_PREFIX}{_random(KEY_BODY_LENGTH)}"
    record = ApiKeyRecord(
        key_id=f"key_{_random(12)}",
        key_hash=hash_key(key),
        prefix=key[:DISPLAY_PREFIX_LENGTH],
        developer_id=developer_id,
        role=role,
        status="active",
        created_at=format_timestamp(clock.now()),
    )
    account_store.put_key(record)
    return CreatedKey(key=key, record=record)


def list_keys(developer_id: str) -> list[ApiKeyRecord]:
    get_developer(developer_id)
    return account_store.list_keys(developer_id)


def revoke_key(developer_id: str, key_id: str) -> ApiKeyRecord:
    return account_store.revoke_key(developer_id, key_id)


def delete_developer(developer_id: str) -> DeveloperDeletion:
    """Delete a developer's profile and keys (its keys first, so no key outlives its developer).
    Usage counters, summaries and idempotency records are kept: history stays for billing."""
    keys = list_keys(developer_id)
    for key in keys:
        account_store.delete_key(key)
    account_store.delete_developer(developer_id)
    return DeveloperDeletion(developer_id=developer_id, key_ids=[key.key_id for key in keys])


def delete_plan(name: str) -> PlanDeletion:
    """Delete a stored plan, refused while a developer is on it (its next request would have
    no plan). A default plan's name then gets the default back."""
    if account_store.get_plan(name) is None:
        default = " (a default plan: stored only once edited or seeded)" if _is_default(name) else ""
        raise NotFound(f"no stored plan {name!r}{default}", code="plan_not_found")
    users = sorted(d.developer_id for d in account_store.list_developers() if d.plan == name)
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise Conflict(
            f"plan {name} is in use by {shown}: move them with `plans set` first", code="plan_in_use"
        )
    account_store.delete_plan(name)
    return PlanDeletion(name=name, default_restored=_is_default(name))


def _is_default(name: str) -> bool:
    return any(plan.name == name for plan in DEFAULT_PLANS)
