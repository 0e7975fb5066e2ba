"""Python client for the Usage Meter API.

```python
from usage_meter_client import UsageMeter

with UsageMeter(api_key="um_live_...", base_url="https://...") as client:
    usage = client.usage.current()
    history = client.usage.history(days=30)
    client.usage.track(metric="api_calls", quantity=1)
    ok = client.entitlements.check("api_calls")

event = webhooks.verify(body, headers["Usage-Meter-Signature"], "whsec_...")
```
"""

from . import webhooks
from ._async_client import AsyncEntitlements, AsyncUsage, AsyncUsageMeter
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
    "webhooks",
]
