"""DynamoDB failures made at botocore's HTTP layer, for the engine tests and the benchmarks.

A `before-send` hook that returns a response keeps botocore from sending the request, and
botocore treats that response as DynamoDB's answer: its retry rules and the service's error
handling then meet the very shapes DynamoDB sends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders


class _Body:
    """The raw body botocore reads a response from."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def error_response(
    request: AWSPreparedRequest, status: int, error: str, extra: dict[str, Any] | None = None
) -> AWSResponse:
    """DynamoDB's answer for `error` (e.g. 400 ThrottlingException, 500 InternalServerError),
    with `extra` fields in the body (CancellationReasons of a cancelled transaction)."""
    body = {
        "__type": f"com.amazonaws.dynamodb.v20120810#{error}",
        "message": f"injected {error}",
        **(extra or {}),
    }
    headers = HTTPHeaders.from_dict(
        {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": f"injected-{uuid.uuid4()}"}
    )
    return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))
