"""Usage Meter: exact usage metering on Lambda and DynamoDB (the shared layer package)."""

import decimal

__version__ = "0.1.0"

# Exact sums: DynamoDB keeps 38 significant digits, Python's default context only 28, so a
# large enough total would be rounded in memory. Raising the precision (for this thread and
# every thread started later) never makes a result less exact.
decimal.DefaultContext.prec = 60
decimal.getcontext().prec = 60
