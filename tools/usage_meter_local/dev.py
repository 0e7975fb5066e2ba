"""`make dev`: the whole service on this machine.

DynamoDB Local (data under .local/dynamodb), the tables of template.yaml, a demo developer
with a developer key and a service key, and the gateway on 127.0.0.1:3000. The terminal
shows the banner and one line per request; the structured logs go to .local/dev.log, and
.local/env says where the stack serves (for `source`, `make rollup` and `usage-meter
--local`). Ctrl-C stops everything it started; the next run reuses the data and the keys.

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
from datetime import date
from pathlib import Path
from typing import Any

from usage_meter_local import envfile, outbox
from usage_meter_local.alerting import AlertPipeline
from usage_meter_local.banner import DEMO_DEVELOPER, DEMO_PLAN, Served, banner
from usage_meter_local.containers import ContainerPool
from usage_meter_local.dynamodb_local import (
    DATA_DIR,
    LOCAL_AWS_ENVIRONMENT,
    DynamoDBLocal,
    DynamoDBLocalError,
    local_client,
)
from usage_meter_local.events import LambdaContext
from usage_meter_local.gateway import make_server, serve_in_background
from usage_meter_local.handlers import load_handler
from usage_meter_local.output import StackOutput, logging_to
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
DEMO_ENV_NAME = "demo.env"  # beside .local/env: API, KEY, SERVICE_KEY for the README's commands
LOG_NAME = "dev.log"
OUTBOX_NAME = "outbox"
DEFAULT_PORT, DEFAULT_DYNAMODB_PORT = 3000, 8000
TABLE_NAMES = {logical_id: f"usage-meter-local-{logical_id}" for logical_id in table_logical_ids()}
TABLE_VARIABLES = ("USAGE_TABLE", "IDEMPOTENCY_TABLE", "ACCOUNTS_TABLE")


def environment(
    endpoint_url: str, function: str = "TrackFunction", outbox_folder: Path = LOCAL / OUTBOX_NAME
) -> dict[str, str]:
    """The functions' environment from template.yaml, pointed at DynamoDB Local, with the local
    bus, webhook queue and signing key under `outbox_folder`."""
    env = function_environment(function, TABLE_NAMES)
    env.update(outbox.environment(outbox_folder))
    env.update(LOCAL_AWS_ENVIRONMENT)
    env.update(
        {
            "DYNAMODB_ENDPOINT_URL": endpoint_url,
            "POWERTOOLS_TRACE_DISABLED": "true",
            # the logs (and EMF metrics) go to .local/dev.log, not to the terminal
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO"),
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
        accounts.create_developer("Demo developer", DEMO_PLAN, DEMO_DEVELOPER)
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


def run(
    port: int, dynamodb_port: int, containers: int, ready_file: Path | None = None, data_dir: Path = DATA_DIR
) -> int:
    """Serve until Ctrl-C or SIGTERM; the stack's files live beside `data_dir`."""
    with logging_to(data_dir.parent / LOG_NAME) as output:
        engine = DynamoDBLocal(port=dynamodb_port, db_path=data_dir)
        try:
            engine.start()
        except DynamoDBLocalError as exc:
            output.say(f"error: {exc}")
            return 1
        try:
            return _serve(output, engine, port, containers, ready_file)
        finally:
            engine.stop()


def _serve(
    output: StackOutput, engine: DynamoDBLocal, port: int, containers: int, ready_file: Path | None
) -> int:
    started = time.monotonic()
    assert engine.db_path is not None
    folder = engine.db_path.parent
    env = environment(engine.endpoint_url, outbox_folder=folder / OUTBOX_NAME)
    os.environ.update(env)
    create_tables(engine.client(), TABLE_NAMES)
    served = Served(
        port=port,
        endpoint_url=engine.endpoint_url,
        data_dir=engine.db_path,
        env_file=folder / envfile.LOCATION.name,
        log_file=output.log_file,
        keys=seed_demo(folder / KEYS_FILE.name),
    )
    pool = ContainerPool(containers, env)
    try:
        pool.warm()
        try:
            server = make_server(pool, port=port, on_request=output.request)
        except OSError as exc:
            output.say(f"error: the gateway cannot listen on 127.0.0.1:{port} ({exc.strerror}); try PORT=…")
            return 1
        serve_in_background(server)
        _announce(output, served, env, started, ready_file)
        stop = _stop_on_signals()
        _start_schedules(output, engine.endpoint_url, stop, folder / OUTBOX_NAME)
        alerts = AlertPipeline(
            environment(engine.endpoint_url, "AlertsFunction", folder / OUTBOX_NAME), folder
        ).start()
        output.say(
            "alerts read the usage table's stream; webhooks are delivered from "
            f"{outbox.queue_folder(env)} (usage-meter --local webhooks add http://127.0.0.1:4000/hook)"
        )
        while not stop.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
        output.say("stopping…")
        alerts.stop()
        server.shutdown()
        return 0
    finally:
        pool.close()


def _announce(
    output: StackOutput, served: Served, env: dict[str, str], started: float, ready_file: Path | None
) -> None:
    """Write the env file (the stack now answers), print the banner, tell the tests."""
    dynamodb_port = served.endpoint_url.rsplit(":", 1)[1]
    envfile.write(
        served.env_file,
        {
            **{name: env[name] for name in TABLE_VARIABLES},
            "DYNAMODB_ENDPOINT_URL": served.endpoint_url,
            "PORT": str(served.port),
            "DYNAMODB_PORT": dynamodb_port,
            **{name: env[name] for name in outbox.VARIABLES},
        },
    )
    demo_env = served.env_file.with_name(DEMO_ENV_NAME)
    envfile.write(
        demo_env,
        {
            "API": served.base,
            "KEY": served.keys["developerKey"],
            "SERVICE_KEY": served.keys["serviceKey"],
            # the Python client's defaults: the demo developer's key, this stack
            "USAGE_METER_API_KEY": served.keys["developerKey"],
            "USAGE_METER_BASE_URL": served.base,
        },
    )
    demo_env.chmod(0o600)  # the demo keys, as in demo-keys.json
    output.say(banner(served))
    output.say(f"(ready in {time.monotonic() - started:.1f} s)")
    if ready_file is not None:
        ready_file.write_text(json.dumps({"port": served.port, **served.keys}))


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and SIGTERM both end the stack (SIGINT explicitly: a shell that started us in
    the background leaves it ignored)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _start_schedules(
    output: StackOutput, endpoint_url: str, stop: threading.Event, outbox_folder: Path
) -> None:
    for schedule in schedules():
        os.environ.update(environment(endpoint_url, schedule.function, outbox_folder))
        threading.Thread(
            target=_run_on_schedule, args=(schedule, stop, output), name=schedule.function, daemon=True
        ).start()
        output.say(f"{schedule.function} runs every {schedule.expression} (make rollup runs it now)")


def _run_on_schedule(schedule: Schedule, stop: threading.Event, output: StackOutput) -> None:
    """What EventBridge does for a `rate(...)` schedule: invoke the function every interval."""
    handler = load_handler(*function_code(schedule.function))
    event: dict[str, Any] = json.loads((ROOT / "events" / "rollup-schedule.json").read_text())
    while not stop.wait(schedule.seconds):
        try:
            report = handler(event, LambdaContext(schedule.function))
            print(json.dumps({"function": schedule.function, "report": report}), flush=True)  # the log
            output.say(f"{schedule.function} ran (its report is in {output.log_file.name})")
        except Exception as exc:  # EventBridge would retry; locally the next tick does
            output.say(f"{schedule.function} failed: {exc}")


def run_rollup(dynamodb_port: int | None, on: str | None = None) -> int:
    """Invoke the rollup function once against the local data: with the scheduled-event
    sample, or with `{"date": on}` (that date's whole month), as an on-demand run would.

    It uses the running stack's engine (its port from .local/env unless one is given), or
    starts one on the same data for the run."""
    port = rollup_port(dynamodb_port)
    endpoint_url = f"http://127.0.0.1:{port}"
    engine = None if _answers(endpoint_url) else DynamoDBLocal(port=port, db_path=DATA_DIR).start()
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
        if engine is not None:
            engine.stop()


def rollup_port(dynamodb_port: int | None) -> int:
    """The DynamoDB Local port the rollup uses: the one given, else the running stack's (so
    `PORT=3001 DYNAMODB_PORT=8001 make dev` then `make rollup` uses 8001), else the default."""
    return dynamodb_port or _running_dynamodb_port() or DEFAULT_DYNAMODB_PORT


def _running_dynamodb_port() -> int | None:
    """The DynamoDB Local port `make dev` last served on (from .local/env), if any."""
    path = LOCAL / envfile.LOCATION.name
    text = envfile.read(path).get("DYNAMODB_PORT", "") if path.is_file() else ""
    return int(text) if text.isdigit() else None


def _answers(endpoint_url: str) -> bool:
    try:
        local_client(endpoint_url, timeout=1, max_attempts=1).list_tables(Limit=1)
    except Exception:
        return False
    return True


def _is_date(text: str) -> bool:
    """Whether `text` is a YYYY-MM-DD date (the rollup's `date`), checked before the run so a
    typo is one line, not the function's validation traceback."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == len("YYYY-MM-DD")


def _env_port(variable: str) -> int | None:
    text = os.environ.get(variable, "").strip()
    return int(text) if text else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Usage Meter locally.")
    parser.add_argument("command", nargs="?", choices=["serve", "rollup"], default="serve")
    parser.add_argument("--port", type=int, default=_env_port("PORT") or DEFAULT_PORT)
    parser.add_argument(
        "--dynamodb-port",
        type=int,
        default=_env_port("DYNAMODB_PORT"),
        help=f"default {DEFAULT_DYNAMODB_PORT}; rollup: the running stack's (from .local/env)",
    )
    parser.add_argument(
        "--containers", type=int, default=4, help="handler processes (warm Lambda containers)"
    )
    parser.add_argument("--ready-file", type=Path, help="write the port and keys here once serving (tests)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="DynamoDB Local's data folder")
    parser.add_argument("--date", help="rollup: roll up this day's whole month (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if args.command == "rollup":
        if args.date is not None and not _is_date(args.date):
            print(
                f"error: DATE={args.date} is not a date: give YYYY-MM-DD (make rollup DATE=2026-11-20)",
                file=sys.stderr,
            )
            return 2
        return run_rollup(args.dynamodb_port, args.date)
    return run(
        args.port,
        args.dynamodb_port or DEFAULT_DYNAMODB_PORT,
        args.containers,
        args.ready_file,
        args.data_dir.resolve(),
    )


if __name__ == "__main__":
    sys.exit(main())
