"""The local stack as a user starts it (`python -m usage_meter_local.dev`), reached over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from usage_meter_local.dynamodb_local import free_port

STARTUP_SECONDS = 120


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("stack")
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
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},
    )
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
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_text(stack: dict[str, Any]) -> str:
    return Path(stack["log"]).read_text()
