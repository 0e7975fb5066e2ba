"""The admin CLI's real entry point (the venv's `usage-meter`) when it cannot use AWS: a missing
region, missing credentials, missing table names, a missing or stopped local stack. Each is
one line naming the cause and what to pass, exit 1, never "could not be reached" nor a
traceback.

Every run starts from a shell with no AWS settings at all (no ~/.aws either, and no instance
metadata lookups); each test adds what it needs. Nothing here sends a request anywhere:
each failure happens before a request would leave, or at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from usage_meter_local.dynamodb_local import free_port

from helpers import shell_without_aws

CLI = Path(sys.executable).parent / "usage-meter"
TABLES = {"USAGE_TABLE": "t-usage", "IDEMPOTENCY_TABLE": "t-idempotency", "ACCOUNTS_TABLE": "t-accounts"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = {"AWS_REGION": "us-east-1"}
NO_REGION = (
    "error: no AWS region set: pass --region, set AWS_REGION or give the AWS profile a region "
    "(for the `make dev` stack: --local)\n"
)
NO_CREDENTIALS = (
    "error: no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
    "(for the `make dev` stack: --local)\n"
)
NO_TABLES = (
    "error: USAGE_TABLE, IDEMPOTENCY_TABLE, ACCOUNTS_TABLE not set: pass --stack-name NAME "
    "(a deployed stack) or --local (the `make dev` stack), or set them\n"
)


@pytest.fixture
def closed_endpoint() -> str:
    """A DynamoDB endpoint on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def usage_meter(folder: Path, *argv: str, **env: str) -> tuple[int, str, str]:
    """`usage-meter ARGV` run in `folder` from a shell with no AWS settings, plus `env`."""
    shell = {**shell_without_aws(folder), **env}
    done = subprocess.run(
        [str(CLI), *argv], cwd=folder, env=shell, capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout, done.stderr


def test_no_region_says_so(tmp_path: Path, closed_endpoint: str) -> None:
    answer = usage_meter(
        tmp_path, "developers", "list", DYNAMODB_ENDPOINT_URL=closed_endpoint, **TABLES, **CREDENTIALS
    )
    assert answer == (1, "", NO_REGION)


def test_no_credentials_says_so(tmp_path: Path, closed_endpoint: str) -> None:
    answer = usage_meter(
        tmp_path, "developers", "list", DYNAMODB_ENDPOINT_URL=closed_endpoint, **TABLES, **REGION
    )
    assert answer == (1, "", NO_CREDENTIALS)


def test_a_profile_that_does_not_exist_says_so(tmp_path: Path, closed_endpoint: str) -> None:
    answer = usage_meter(
        tmp_path,
        "developers",
        "list",
        DYNAMODB_ENDPOINT_URL=closed_endpoint,
        AWS_PROFILE="nope",
        **TABLES,
        **REGION,
    )
    assert answer == (1, "", "error: The config profile (nope) could not be found\n")


def test_no_table_names_name_the_variables_and_the_options(tmp_path: Path) -> None:
    answer = usage_meter(tmp_path, "developers", "list", **CREDENTIALS, **REGION)
    assert answer == (1, "", NO_TABLES)


def test_stack_name_without_a_region_says_so(tmp_path: Path) -> None:
    answer = usage_meter(tmp_path, "--stack-name", "usage-meter", "developers", "list", **CREDENTIALS)
    assert answer == (1, "", NO_REGION)


def test_local_without_a_local_stack_says_how_to_start_one(tmp_path: Path) -> None:
    answer = usage_meter(tmp_path, "--local", "developers", "list")
    assert answer == (
        1,
        "",
        "error: no .local/env in this folder or a parent: start the local stack with `make dev` "
        "in the checkout (or pass --local-env FILE)\n",
    )


def test_local_supplies_credentials_and_region_and_names_a_stopped_stack(
    tmp_path: Path, closed_endpoint: str
) -> None:
    """The shell has no region, no credentials and a profile that does not exist: --local
    needs none of them. The stack is not running: that is what it says."""
    env_file = tmp_path / ".local" / "env"
    env_file.parent.mkdir()
    env_file.write_text(
        "".join(f"export {name}={value}\n" for name, value in TABLES.items())
        + f"export DYNAMODB_ENDPOINT_URL={closed_endpoint}\nexport PORT=3000\n"
    )
    (tmp_path / "subfolder").mkdir()

    for folder, where in ((tmp_path, ["--local"]), (tmp_path / "subfolder", ["--local"])):
        answer = usage_meter(folder, *where, "developers", "list", AWS_PROFILE="nope")
        assert answer == (
            1,
            "",
            f"error: DynamoDB Local at {closed_endpoint} does not answer: is `make dev` running?\n",
        )
    answer = usage_meter(tmp_path / "subfolder", "--local-env", str(env_file), "developers", "list")
    assert (
        answer[2] == f"error: DynamoDB Local at {closed_endpoint} does not answer: is `make dev` running?\n"
    )


def test_local_with_an_incomplete_env_file_names_what_is_missing(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("export USAGE_TABLE=t-usage\n")
    answer = usage_meter(tmp_path, "--local-env", str(env_file), "developers", "list")
    assert answer == (
        1,
        "",
        f"error: {env_file} does not set IDEMPOTENCY_TABLE, ACCOUNTS_TABLE, DYNAMODB_ENDPOINT_URL: "
        "restart `make dev` to rewrite it\n",
    )
