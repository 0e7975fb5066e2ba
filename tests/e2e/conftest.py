"""The local stack as a user starts it (`python -m usage_meter_local.dev`), reached over HTTP."""

from __future__ import annotations

import contextlib
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

from usage_meter_local.dynamodb_local import free_port

STARTUP_SECONDS = 120


@contextlib.contextmanager
def running_stack(folder: Path, env: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Start the local stack with its data and log under `folder`; stop it on exit.

    `env` is added to the environment (default: POWERTOOLS_LOG_LEVEL=WARNING). Yields the
    ready file's content (port, developerKey, serviceKey) with "base" (URL) and "log" (path).
    """
    ready = folder / "ready.json"
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
            str(folder / "dynamodb"),
            "--ready-file",
            str(ready),
        ],
        stdout=(folder / "stack.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", **(env or {})},
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"local stack did not start:\n{(folder / 'stack.log').read_text()}")
            time.sleep(0.2)
        info: dict[str, Any] = json.loads(ready.read_text())
        info["base"] = f"http://127.0.0.1:{port}"
        info["log"] = folder / "stack.log"
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
