"""The local stack as a user starts it (`python -m usage_meter_local.dev`), reached over HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from usage_meter.store import dynamodb as store_db
from usage_meter_admin import cli
from usage_meter_local.dynamodb_local import free_port

STARTUP_SECONDS = 120
BANNER_START = "Usage Meter is running locally."
BANNER_END = "Ctrl-C stops everything."


@contextlib.contextmanager
def running_stack(folder: Path, env: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Start the local stack in `folder` as `make dev` runs in a checkout (its files under
    `folder/.local/`); stop it on exit.

    `env` is added to the environment (default: POWERTOOLS_LOG_LEVEL=WARNING). Yields the
    ready file's content (port, developerKey, serviceKey) with "base" (URL), "folder" (where
    it runs), "terminal" (what it printed), "log" (its structured log) and "env" (its env file).
    """
    ready = folder / "ready.json"
    local = folder / ".local"
    port, dynamodb_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "usage_meter_local.dev",
            "--port",
            str(port),
            "--dynamodb-port",
            str(dynamodb_port),
            "--containers",
            "2",
            "--data-dir",
            str(local / "dynamodb"),
            "--ready-file",
            str(ready),
        ],
        stdout=(folder / "terminal.txt").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", **(env or {})},
        cwd=folder,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"local stack did not start:\n{(folder / 'terminal.txt').read_text()}")
            time.sleep(0.2)
        info: dict[str, Any] = json.loads(ready.read_text())
        info.update(
            base=f"http://127.0.0.1:{port}",
            folder=folder,
            terminal=folder / "terminal.txt",
            log=local / "dev.log",
            env=local / "env",
        )
        yield info
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_stack(tmp_path_factory.mktemp("stack")) as info:
        yield info


def log_text(stack: dict[str, Any]) -> str:
    return Path(stack["log"]).read_text()


def admin(stack: dict[str, Any], *args: str) -> Any:
    """The admin CLI (in-process, --json) against this stack, through its env file as
    `--local-env` reads it; the environment it sets for that is put back afterwards."""
    saved = dict(os.environ)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            status = cli.main(["--local-env", str(stack["env"]), "--json", *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        store_db.reset()  # forget the CLI's client: it points at this stack's engine
    assert status == 0, out.getvalue()
    return json.loads(out.getvalue())


def printed_commands(stack: dict[str, Any]) -> list[str]:
    """The command lines the stack's banner offers to try, continuation lines joined."""
    terminal = Path(stack["terminal"]).read_text()
    banner = terminal[terminal.index(BANNER_START) : terminal.index(BANNER_END)]
    commands: list[str] = []
    pending = ""
    for line in banner.split("Try:\n", 1)[1].splitlines():
        text = line.strip()
        if text.endswith("\\"):
            pending += text.removesuffix("\\")
            continue
        if text:
            commands.append(pending + text)
        pending = ""
    return commands
