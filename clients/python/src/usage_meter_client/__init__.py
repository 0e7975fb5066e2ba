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
```
"""

from ._async_client import AsyncEntitlements, AsyncUsage, AsyncUsageMeter
from ._batching import BatchOptions, QueueFullError
from ._client import Entitlements, Usage, UsageMeter
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
    CurrentUsage,
    Entitlement,
    ErrorInfo,
    EventResult,
    Group,
    History,
    HistoryEntry,
    MetricUsage,
    Period,
    RateLimit,
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
    "AsyncUsage",
    "AsyncUsageMeter",
    "AuthenticationError",
    "BadRequestError",
    "BatchOptions",
    "BatchResult",
    "ConflictError",
    "CurrentUsage",
    "Entitlement",
    "Entitlements",
    "ErrorInfo",
    "EventResult",
    "Group",
    "History",
    "HistoryEntry",
    "InternalServerError",
    "LimitExceededError",
    "MetricUsage",
    "NotFoundError",
    "Period",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimit",
    "RateLimitError",
    "ServiceUnavailableError",
    "TrackResult",
    "Usage",
    "UsageEvent",
    "UsageMeter",
    "UsageMeterError",
    "UsageSnapshot",
    "ValidationError",
    "__version__",
]
