"""What `make dev` prints once it serves: where everything is, and lines to try.

Every command it prints works exactly as printed, from the folder `make dev` runs in: the
paths are shown relative to it when they lie inside it, and the admin CLI line names the
stack's env file only when `--local` would not find it from there.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from usage_meter_local import envfile

DEMO_DEVELOPER = "dev_demo"
DEMO_PLAN = "pro"


@dataclass(frozen=True)
class Served:
    """What a running local stack serves, and where it keeps its files."""

    port: int
    endpoint_url: str  # DynamoDB Local
    data_dir: Path
    env_file: Path
    log_file: Path
    keys: dict[str, str]  # developerKey, serviceKey

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def shown(path: Path, cwd: Path | None = None) -> str:
    """A path as a command line from `cwd` can use it: relative inside cwd, else absolute."""
    here = cwd or Path.cwd()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def admin_cli_line(env_file: Path, cwd: Path | None = None) -> str:
    """The admin CLI of this venv against the stack whose env file is `env_file`."""
    here = cwd or Path.cwd()
    executable = Path(sys.executable).parent / "usage-meter"
    target = "--local" if envfile.find(here) == env_file else f"--local-env {shlex.quote(str(env_file))}"
    return f"{shlex.quote(shown(executable, here))} {target} developers list"


def banner(served: Served) -> str:
    base, keys = served.base, served.keys
    return f"""
Usage Meter is running locally.
  API             {base}   (routes and authorizer from template.yaml)
  DynamoDB Local  {served.endpoint_url}   (data in {shown(served.data_dir)}/)
  developer       {DEMO_DEVELOPER} (plan {DEMO_PLAN})
  developer key   {keys["developerKey"]}   (reads its own usage)
  service key     {keys["serviceKey"]}   (your backend's: tracks and reads for any developer)
  logs            {shown(served.log_file)}   (the functions' structured logs; here one line per request)

Try:
  curl -s -X POST {base}/v1/usage/events -H 'Authorization: Bearer {keys["serviceKey"]}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"developerId": "{DEMO_DEVELOPER}", "metric": "api_calls", "quantity": 1, "idempotencyKey": "first"}}'
  curl -s {base}/v1/usage -H 'X-API-Key: {keys["developerKey"]}'
  curl -s '{base}/v1/usage/history?days=7' -H 'X-API-Key: {keys["developerKey"]}'
  {admin_cli_line(served.env_file)}
Ctrl-C stops everything.
"""
