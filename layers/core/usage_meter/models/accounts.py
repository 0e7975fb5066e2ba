"""Who calls and what they may use: identities, developers, API keys, plans."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from usage_meter.models.wire import DeveloperId

Role = Literal["developer", "service"]


class Identity(BaseModel):
    """Who is calling, as the authorizer resolved it."""

    model_config = ConfigDict(frozen=True)

    developer_id: DeveloperId
    role: Role


KeyStatus = Literal["active", "revoked"]
Enforcement = Literal["soft", "hard"]


class Developer(BaseModel):
    """A customer of the API provider; usage is counted per developer."""

    developer_id: DeveloperId
    name: str = Field(min_length=1, max_length=200)
    plan: str
    created_at: str


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
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    metrics: dict[str, MetricLimit] = Field(default_factory=dict)
    requests_per_minute: int | None = None
