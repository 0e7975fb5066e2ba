"""The unit tier really has no network."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import HTTPClientError
from pytest_socket import SocketBlockedError

# pytest-socket warns each time it blocks; here blocking is the point
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket")


def test_sockets_are_disabled() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_aws_calls_cannot_leave_the_machine() -> None:
    """A stray DynamoDB call in a unit test fails instead of reaching an endpoint."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    with pytest.raises(HTTPClientError, match="A test tried to use socket"):
        client.list_tables()
