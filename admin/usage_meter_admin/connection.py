"""Which Usage Meter the CLI administers, and what to say when it cannot reach it.

`--stack-name NAME` reads the table names from a deployed stack's outputs; `--local` (or
`--local-env FILE`) uses the stack `make dev` runs, from its env file, with the fixed local
credentials and region DynamoDB Local accepts; otherwise the table names come from the
environment (USAGE_TABLE, IDEMPOTENCY_TABLE, ACCOUNTS_TABLE). `--endpoint-url` and
`--region` override any of them.

The store answers any botocore failure with Busy ("could not be reached; retry shortly"),
right for a Lambda function whose region and credentials are always set. A person at a
shell more often lacks a region or credentials, so `explain` names the actual cause.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as NetworkError

from usage_meter.settings import MissingSetting, settings
from usage_meter.store import dynamodb as store_db
from usage_meter_admin.common import CliError

STACK_OUTPUTS = {
    "UsageTableName": "USAGE_TABLE",
    "IdempotencyTableName": "IDEMPOTENCY_TABLE",
    "AccountsTableName": "ACCOUNTS_TABLE",
}
TABLE_FIELDS = {
    "usage_table": "USAGE_TABLE",
    "idempotency_table": "IDEMPOTENCY_TABLE",
    "accounts_table": "ACCOUNTS_TABLE",
}
LOCAL_VARIABLES = (*STACK_OUTPUTS.values(), "DYNAMODB_ENDPOINT_URL")
WEBHOOK_OUTPUTS = {
    "EventBusName": "EVENT_BUS_NAME",
    "WebhookQueueUrl": "WEBHOOK_QUEUE_URL",
    "WebhookSigningKeyId": "WEBHOOK_KEY_ID",
}
"""Outputs the webhooks commands use; a stack deployed before webhooks lacks them."""
LOCAL_WEBHOOK_VARIABLES = ("EVENT_BUS_NAME", "WEBHOOK_QUEUE_URL", "WEBHOOK_KEY_FILE", "WEBHOOK_ALLOW_LOCAL")
"""What `make dev` writes for the webhooks commands (the local bus, queue and signing key)."""
# a shell's own AWS settings that must not reach DynamoDB Local along with the local ones
SHELL_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
WHERE = "--stack-name NAME (a deployed stack) or --local (the `make dev` stack)"
NO_REGION = (
    "no AWS region set: pass --region, set AWS_REGION or give the AWS profile a region "
    "(for the `make dev` stack: --local)"
)
NO_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
    "(for the `make dev` stack: --local)"
)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url", help="DynamoDB endpoint (DynamoDB Local), e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--region", help="AWS region (default: from the environment)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack-name", help="read table names from this CloudFormation stack's outputs")
    where.add_argument(
        "--local",
        action="store_true",
        help="the stack `make dev` runs: its .local/env (in this folder or a parent) and local credentials",
    )
    where.add_argument(
        "--local-env", type=Path, metavar="FILE", help="like --local, with the env file of that stack"
    )


def configure(args: argparse.Namespace) -> None:
    """Point the package at the chosen stack (it reads everything from the environment)."""
    if args.local or args.local_env:
        _use_local(args.local_env or _local_env_file())
    if args.endpoint_url:
        os.environ["DYNAMODB_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_REGION"] = args.region
    if args.stack_name:
        _use_stack(args.stack_name)
    store_db.reset()


def _local_env_file() -> Path:
    from usage_meter_local import envfile

    found = envfile.find(Path.cwd())
    if found is None:
        raise CliError(
            f"no {envfile.LOCATION} in this folder or a parent: start the local stack with `make dev` "
            "in the checkout (or pass --local-env FILE)"
        )
    return found


def _use_local(env_file: Path) -> None:
    from usage_meter_local import envfile
    from usage_meter_local.dynamodb_local import LOCAL_AWS_ENVIRONMENT

    if not env_file.is_file():
        raise CliError(f"{env_file} not found: `make dev` writes it once the local stack serves")
    values = envfile.read(env_file)
    missing = [name for name in LOCAL_VARIABLES if not values.get(name)]
    if missing:
        raise CliError(f"{env_file} does not set {', '.join(missing)}: restart `make dev` to rewrite it")
    for name in SHELL_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(LOCAL_AWS_ENVIRONMENT)
    os.environ.update({name: values[name] for name in LOCAL_VARIABLES})
    os.environ.update({name: values[name] for name in LOCAL_WEBHOOK_VARIABLES if values.get(name)})


def _use_stack(stack_name: str) -> None:
    store_db.reset()
    outputs = store_db.stack_outputs(stack_name)
    for output, variable in STACK_OUTPUTS.items():
        if output not in outputs:
            raise CliError(f"stack {stack_name} has no output {output}")
        os.environ[variable] = outputs[output]
    for output, variable in WEBHOOK_OUTPUTS.items():
        if output in outputs:
            os.environ[variable] = outputs[output]


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _no_such_table(args: argparse.Namespace) -> str:
    """DynamoDB says "non-existent table" without naming it: name the tables the CLI used,
    where it looked, and how to point it at a stack's own."""
    cfg = settings()
    names = ", ".join(f"{variable}={getattr(cfg, field)}" for field, variable in TABLE_FIELDS.items())
    where = f"DynamoDB at {cfg.endpoint_url}" if cfg.endpoint_url else f"region {cfg.region or '(default)'}"
    if args.local or args.local_env:
        return f"no such table in {where} ({names}): restart `make dev` to create them"
    return f"no such table in {where} ({names}): pass {WHERE}, or set them to the stack's table names"


def explain(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line naming why AWS could not be used, or None when `exc` is not about that."""
    if isinstance(exc, MissingSetting):
        return f"{', '.join(exc.variables)} not set: pass {WHERE}, or set them"
    if isinstance(exc, ClientError) and store_db.error_code(exc) == "ResourceNotFoundException":
        return _no_such_table(args)
    botocore = next((c for c in _causes(exc) if isinstance(c, BotoCoreError)), None)
    if botocore is None:
        return None
    if isinstance(botocore, NoRegionError):
        return NO_REGION
    if isinstance(botocore, NoCredentialsError | PartialCredentialsError):
        return NO_CREDENTIALS
    if not isinstance(botocore, HTTPClientError | NetworkError):
        return str(botocore)  # the configuration, e.g. a profile that does not exist: botocore's words
    if args.local or args.local_env:
        return f"DynamoDB Local at {settings().endpoint_url} does not answer: is `make dev` running?"
    return None
