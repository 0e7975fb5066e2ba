"""What goes wrong in metering: a bad `@meter` (at cold start) or a request that records nothing."""

from __future__ import annotations

from typing import Any


class MeteringConfigError(ValueError):
    """A `@meter` that cannot work: raised when the decorator is applied (at cold start)."""


class Skip(Exception):
    """This request records nothing; `reason` (and `fields`) go into the warning."""

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields
