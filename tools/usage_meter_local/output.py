"""What `make dev` shows: a few readable lines on the terminal, the structured logs in a file.

The handlers log JSON lines (Powertools Logger, and EMF metrics) to stdout, as a Lambda
function does for CloudWatch; on a terminal that is a wall of JSON. So the stack points its
own stdout and stderr at a log file, which the handler processes inherit, and keeps the
terminal for the banner, notices and one line per request.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO


def request_line(method: str, path: str, status: int, milliseconds: float, at: datetime | None = None) -> str:
    """`14:02:07 POST /v1/usage/events 200 18 ms`: what the terminal shows of a request."""
    moment = at or datetime.now()
    return f"{moment:%H:%M:%S} {method} {path} {status} {milliseconds:.0f} ms"


class StackOutput:
    """The terminal the stack was started with, while its stdout and stderr go to `log_file`."""

    def __init__(self, terminal: IO[str], log_file: Path) -> None:
        self.terminal = terminal
        self.log_file = log_file
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        """A line (or lines) for the person at the terminal; request threads call it at once."""
        with self._lock:
            self.terminal.write(text + "\n")
            self.terminal.flush()

    def request(self, method: str, path: str, status: int, milliseconds: float) -> None:
        self.say(request_line(method, path, status, milliseconds))


@contextlib.contextmanager
def logging_to(log_file: Path) -> Iterator[StackOutput]:
    """Point file descriptors 1 and 2 (so child processes too) at `log_file`, emptied first,
    and give back the terminal as a StackOutput; both are restored on exit."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        with os.fdopen(os.dup(saved[0]), "w", buffering=1) as terminal:
            os.dup2(log, 1)
            os.dup2(log, 2)
            line_buffered()
            try:
                yield StackOutput(terminal, log_file)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in (log, *saved):
            os.close(fd)


def line_buffered() -> None:
    """Write every line through at once (the stack and its handler processes), so `tail -f`
    on the log follows the requests."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
