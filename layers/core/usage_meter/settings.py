"""Runtime settings, read once per container from the environment the template sets."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Table names and the DynamoDB endpoint; the endpoint is only set for DynamoDB Local."""

    model_config = ConfigDict(frozen=True)

    usage_table: str
    idempotency_table: str
    accounts_table: str
    endpoint_url: str | None = None
    region: str = "us-east-1"


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings of this process; tests clear the cache after changing the environment."""
    return Settings(
        usage_table=os.environ.get("USAGE_TABLE", "UsageTable"),
        idempotency_table=os.environ.get("IDEMPOTENCY_TABLE", "IdempotencyTable"),
        accounts_table=os.environ.get("ACCOUNTS_TABLE", "AccountsTable"),
        endpoint_url=os.environ.get("DYNAMODB_ENDPOINT_URL") or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
