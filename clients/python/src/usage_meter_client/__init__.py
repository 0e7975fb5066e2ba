"""Python client for the Usage Meter API.

```python
from usage_meter_client import UsageMeter

with UsageMeter(api_key="um_live_...", base_url="https://...") as client:
    usage = client.usage.current()
    history = client.usage.history(days=30)
    client.usage.track(metric="api_calls", quantity=1)
    ok = client.entitlements.check("api_calls")

# a hot path: events queued and sent 100 to a request in the background
with UsageMeter(batching=True) as client:
    future = client.usage.submit(metric="api_calls", developer_id="dev_1")
    future.result().status  # "recorded"

event = webhooks.verify(body, headers["Usage-Meter-Signature"], "whsec_...")
```
"""

from . import webhooks
from ._async_client import AsyncEntitlements, AsyncEvents, AsyncUsage, AsyncUsageMeter
from ._batching import BatchOptions, QueueFullError
from ._client import Entitlements, Events, Usage, UsageMeter
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UsageMeterError,
    ValidationError,
)
from ._models import (
    BatchResult,
    Correction,
    CurrentUsage,
    Entitlement,
    ErrorInfo,
    EventPage,
    EventResult,
    Group,
    History,
    HistoryEntry,
    LoggedEvent,
    MetricUsage,
    Period,
    RateLimit,
    Revision,
    TrackResult,
    UsageEvent,
    UsageSnapshot,
)
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncEntitlements",
    "AsyncEvents",
    "AsyncUsage",
    "AsyncUsageMeter",
    "AuthenticationError",
    "BadRequestError",
    "BatchOptions",
    "BatchResult",
    "ConflictError",
    "Correction",
    "CurrentUsage",
    "Entitlement",
    "Entitlements",
    "ErrorInfo",
    "EventPage",
    "EventResult",
    "Events",
    "Group",
    "History",
    "HistoryEntry",
    "InternalServerError",
    "LimitExceededError",
    "LoggedEvent",
    "MetricUsage",
    "NotFoundError",
    "Period",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimit",
    "RateLimitError",
    "Revision",
    "ServiceUnavailableError",
    "TrackResult",
    "Usage",
    "UsageEvent",
    "UsageMeter",
    "UsageMeterError",
    "UsageSnapshot",
    "ValidationError",
    "__version__",
    "webhooks",
]
