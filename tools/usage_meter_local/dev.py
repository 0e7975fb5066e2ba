"""`make dev`: the whole service on this machine.

DynamoDB Local (data under .local/dynamodb), the tables of template.yaml, a demo developer
with a developer key and a service key, and the gateway on 127.0.0.1:3000. Ctrl-C stops
everything it started; the next run reuses the data and the demo keys.

`python -m usage_meter_local.dev rollup [--date YYYY-MM-DD]` runs the rollup function once
against that data (with the scheduled event, or on demand for one date's month).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from usage_meter_local.containers import ContainerPool
from usage_meter_local.dynamodb_local import DATA_DIR, DynamoDBLocal, DynamoDBLocalError, local_client
from usage_meter_local.events import LambdaContext
from usage_meter_local.gateway import make_server, serve_in_background
from usage_meter_local.handlers import load_handler
from usage_meter_local.template import (
    ROOT,
    Schedule,
    create_tables,
    function_code,
    function_environment,
    schedules,
    table_logical_ids,
)

LOCAL = ROOT / ".local"
KEYS_FILE = LOCAL / "demo-keys.json"
DEMO_DEVELOPER = "dev_demo"
TABLE_NAMES = {logical_id: f"usage-meter-local-{logical_id}" for logical_id in table_logical_ids()}


def environment(endpoint_url: str, function: str = "TrackFunction") -> dict[str, str]:
    """The functions' environment from template.yaml, pointed at DynamoDB Local."""
    env = function_environment(function, TABLE_NAMES)
    env.update(
        {
            "DYNAMODB_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            "KEY_CACHE_SECONDS": "60",
        }
    )
    return env


def seed_demo(keys_file: Path = KEYS_FILE) -> dict[str, str]:
    """Default plans, the demo developer (pro) and its keys; keys are reused while still active."""
    from usage_meter.domain import accounts
    from usage_meter.store import accounts as account_store

    accounts.seed_default_plans()
    if account_store.get_developer(DEMO_DEVELOPER) is None:
        accounts.create_developer("Demo developer", "pro", DEMO_DEVELOPER)
    if keys_file.exists():
        keys: dict[str, str] = json.loads(keys_file.read_text())
        stored = [account_store.get_key(accounts.hash_key(k)) for k in keys.values()]
        if all(record is not None and record.status == "active" for record in stored):
            return keys
    keys = {
        "developerKey": accounts.create_key(DEMO_DEVELOPER, "developer").key,
        "serviceKey": accounts.create_key(DEMO_DEVELOPER, "service").key,
    }
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_text(json.dumps(keys, indent=2))
    keys_file.chmod(0o600)
    return keys


def _banner(keys: dict[str, str], port: int, endpoint_url: str, data_dir: Path) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
Usage Meter is running locally.
  API             {base}   (routes and authorizer from template.yaml)
  DynamoDB Local  {endpoint_url}   (data in {data_dir}/)
  developer       {DEMO_DEVELOPER} (plan pro)
  developer key   {keys["developerKey"]}
  service key     {keys["serviceKey"]}

Try:
  curl -s -X POST {base}/v1/usage/events -H 'Authorization: Bearer {keys["serviceKey"]}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"developerId": "{DEMO_DEVELOPER}", "metric": "api_calls", "quantity": 1, "idempotencyKey": "first"}}'
  curl -s {base}/v1/usage -H 'X-API-Key: {keys["developerKey"]}'
  curl -s '{base}/v1/usage/history?days=7' -H 'X-API-Key: {keys["developerKey"]}'
Admin CLI: .venv/bin/usage-meter --endpoint-url {endpoint_url} developers list
  (with USAGE_TABLE/IDEMPOTENCY_TABLE/ACCOUNTS_TABLE set as in .local/env)
Ctrl-C stops everything.
"""


def _write_env_file(env: dict[str, str], folder: Path) -> None:
    names = ("USAGE_TABLE", "IDEMPOTENCY_TABLE", "ACCOUNTS_TABLE", "DYNAMODB_ENDPOINT_URL")
    (folder / "env").write_text("".join(f"export {k}={env[k]}\n" for k in names))


def run(
    port: int, dynamodb_port: int, containers: int, ready_file: Path | None = None, data_dir: Path = DATA_DIR
) -> int:
    started = time.monotonic()
    engine = DynamoDBLocal(port=dynamodb_port, db_path=data_dir)
    try:
        engine.start()
    except DynamoDBLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pool: ContainerPool | None = None
    try:
        env = environment(engine.endpoint_url)
        os.environ.update(env)
        create_tables(engine.client(), TABLE_NAMES)
        keys = seed_demo(data_dir.parent / "demo-keys.json")
        _write_env_file(env, data_dir.parent)
        pool = ContainerPool(containers, env)
        pool.warm()
        server = make_server(pool, port=port)
        serve_in_background(server)
        print(_banner(keys, port, engine.endpoint_url, data_dir), flush=True)
        print(f"(ready in {time.monotonic() - started:.1f} s)", flush=True)
        if ready_file is not None:
            ready_file.write_text(json.dumps({"port": port, **keys}))
        stop = threading.Event()
        # Ctrl-C and SIGTERM both end the stack (SIGINT explicitly: a shell that started us in
        # the background leaves it ignored)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        for schedule in schedules():
            os.environ.update(environment(engine.endpoint_url, schedule.function))
            threading.Thread(
                target=_run_on_schedule, args=(schedule, stop), name=schedule.function, daemon=True
            ).start()
            print(
                f"{schedule.function} runs every {schedule.expression} (make rollup runs it now)", flush=True
            )
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
        print("stopping…", flush=True)
        server.shutdown()
        return 0
    finally:
        if pool is not None:
            pool.close()
        engine.stop()


def _run_on_schedule(schedule: Schedule, stop: threading.Event) -> None:
    """What EventBridge does for a `rate(...)` schedule: invoke the function every interval."""
    handler = load_handler(*function_code(schedule.function))
    event: dict[str, Any] = json.loads((ROOT / "events" / "rollup-schedule.json").read_text())
    while not stop.wait(schedule.seconds):
        try:
            report = handler(event, LambdaContext(schedule.function))
            print(f"{schedule.function}: {json.dumps(report)}", flush=True)
        except Exception as exc:  # EventBridge would retry; locally the next tick does
            print(f"{schedule.function} failed: {exc}", file=sys.stderr, flush=True)


def run_rollup(dynamodb_port: int, on: str | None = None) -> int:
    """Invoke the rollup function once against the local data: with the scheduled-event
    sample, or with `{"date": on}` (that date's whole month), as an on-demand run would."""
    engine = DynamoDBLocal(port=dynamodb_port, db_path=DATA_DIR)
    endpoint_url = f"http://127.0.0.1:{dynamodb_port}"
    reuse = _answers(endpoint_url)
    if not reuse:
        engine.start()
    try:
        os.environ.update(environment(endpoint_url, "RollupFunction"))
        create_tables(local_client(endpoint_url), TABLE_NAMES)  # a fresh checkout has none yet
        handler = load_handler(*function_code("RollupFunction"))
        event: dict[str, Any] = (
            {"date": on} if on else json.loads((ROOT / "events" / "rollup-schedule.json").read_text())
        )
        print(json.dumps(handler(event, LambdaContext("RollupFunction")), indent=2))
        return 0
    finally:
        if not reuse:
            engine.stop()


def _answers(endpoint_url: str) -> bool:
    from usage_meter_local.dynamodb_local import local_client

    try:
        local_client(endpoint_url, timeout=1, max_attempts=1).list_tables(Limit=1)
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Usage Meter locally.")
    parser.add_argument("command", nargs="?", choices=["serve", "rollup"], default="serve")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--dynamodb-port", type=int, default=int(os.environ.get("DYNAMODB_PORT", "8000")))
    parser.add_argument(
        "--containers", type=int, default=4, help="handler processes (warm Lambda containers)"
    )
    parser.add_argument("--ready-file", type=Path, help="write the port and keys here once serving (tests)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="DynamoDB Local's data folder")
    parser.add_argument("--date", help="rollup: roll up this day's whole month (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if args.command == "rollup":
        return run_rollup(args.dynamodb_port, args.date)
    return run(args.port, args.dynamodb_port, args.containers, args.ready_file, args.data_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
