"""Alerts, lifecycle events and webhooks: what is published, registered and recorded."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from usage_meter.models.wire import ApiModel

EventType = Literal[
    "usage.threshold.reached",
    "usage.limit.reached",
    "usage.period.closed",
    "usage.event.cancelled",
    "usage.event.amended",
    "usage.period.adjusted",
    "webhook.test",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
MAX_URL = 2048


class Envelope(ApiModel):
    """One event as EventBridge carries it (its `detail`) and a webhook receives it (the body):
    `id` is stable for an alert however often it is published, so receivers can deduplicate."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: EventType
    created_at: str
    data: dict[str, Any]


class Crossing(BaseModel):
    """A threshold of one developer's meter crossed in one period (old < t <= new)."""

    developer_id: str
    metric: str
    period: str
    threshold: int
    consumed: Decimal
    limit: Decimal
    crossed_at: str  # when the counter change that crossed it committed


class Webhook(BaseModel):
    """A registered endpoint. Only a salt is stored: the secret is derived from it with a key
    that never leaves KMS (or the local key file), so reading the table cannot forge a signature."""

    webhook_id: str
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL)]
    developer_id: str | None = None  # None: every developer's events
    events: list[EventType] = Field(default_factory=list)  # empty: every type
    salt: str
    created_at: str

    def wants(self, envelope: Envelope) -> bool:
        """Whether this endpoint takes `envelope` (its developer filter and type filter)."""
        developer = envelope.data.get("developerId")
        if self.developer_id is not None and developer != self.developer_id:
            return False
        return not self.events or envelope.type in self.events or envelope.type == "webhook.test"


class CreatedWebhook(BaseModel):
    """A webhook just registered, with its signing secret (shown once)."""

    webhook: Webhook
    secret: str


class Delivery(BaseModel):
    """One delivery job: an event for one endpoint (the webhook queue's message body)."""

    webhook_id: str
    event: Envelope


AttemptOutcome = Literal["delivered", "failed", "refused", "skipped"]


class Attempt(BaseModel):
    """One recorded delivery attempt."""

    webhook_id: str
    event_id: str
    event_type: str
    attempt: int
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: int
    attempted_at: str
