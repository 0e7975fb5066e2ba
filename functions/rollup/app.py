"""Scheduled rollup of closed billing periods.

A stub until the rollup issue lands: it logs and reports that nothing was rolled up. Its
schedule is declared (disabled) in template.yaml so the wiring is in place.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    logger.info("rollup is not implemented yet", extra={"source": event.get("source")})
    return {"status": "not_implemented", "rolledUp": 0}
