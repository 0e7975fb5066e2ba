"""Usage Meter: exact usage metering on Lambda and DynamoDB (the shared layer package)."""

__version__ = "0.1.0"
