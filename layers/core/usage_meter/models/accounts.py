"""Who calls and what they may use: identities, developers, API keys, plans."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from usage_meter.models.timestamps import parse_rfc3339
from usage_meter.models.wire import DeveloperId

Role = Literal["developer", "service"]


class Identity(BaseModel):
    """Who is calling, as the authorizer resolved it."""

    model_config = ConfigDict(frozen=True)

    developer_id: DeveloperId
    role: Role


KeyStatus = Literal["active", "revoked"]
Enforcement = Literal["soft", "hard"]


class PlanAssignment(BaseModel):
    """A developer's plan from `since` on (until the next assignment)."""

    plan: str
    since: str  # RFC 3339, as format_timestamp writes it


class Developer(BaseModel):
    """A customer of the API provider; usage is counted per developer.

    `plan` is the current plan; `plan_history` every assignment, oldest first, so that an event
    backdated into an earlier billing period is judged by the plan of that period.
    """

    developer_id: DeveloperId
    name: str = Field(min_length=1, max_length=200)
    plan: str
    created_at: str
    plan_history: list[PlanAssignment] = Field(default_factory=list)

    def plan_at_end_of(self, period_end: datetime) -> str:
        """The plan that applies to a billing period ending at `period_end` (exclusive): the last
        one assigned before its end. An upgrade on Feb 10 applies to February, never to January;
        a period before the developer existed gets the first plan."""
        applying = [a.plan for a in self.plan_history if parse_rfc3339(a.since) < period_end]
        if applying:
            return applying[-1]
        return self.plan_history[0].plan if self.plan_history else self.plan


class ApiKeyRecord(BaseModel):
    """An API key as stored: its sha256, never the key itself."""

    key_id: str
    key_hash: str
    prefix: str
    developer_id: str
    role: Role
    status: KeyStatus
    created_at: str
    last_used_at: str | None = None


class MetricLimit(BaseModel):
    """A plan's allowance of one metric per billing period; limit None means unlimited."""

    limit: Decimal | None = None
    enforcement: Enforcement = "soft"


class Plan(BaseModel):
    """Limits per metric and a request rate. `rate_enforcement` hard refuses tracked events past
    `requests_per_minute` in a UTC minute (429 `rate_limited`); soft only reports the rate."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    metrics: dict[str, MetricLimit] = Field(default_factory=dict)
    requests_per_minute: int | None = Field(default=None, ge=1)
    rate_enforcement: Enforcement = "soft"

    @property
    def rate_ceiling(self) -> int | None:
        """Events a developer may have recorded per minute, when the plan enforces its rate."""
        return self.requests_per_minute if self.rate_enforcement == "hard" else None
