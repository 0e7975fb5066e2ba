"""Settings every test tier shares: fake credentials, no tracing, one region."""

from __future__ import annotations

import os

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "usage-meter",
        "POWERTOOLS_METRICS_NAMESPACE": "UsageMeter",
        "POWERTOOLS_DEV": "false",
    }
)
