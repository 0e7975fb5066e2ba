"""A pool of worker processes that run the handlers, like warm Lambda containers.

Powertools' resolver keeps the current event in class-level state, so one Python process can
serve only one request at a time, exactly like a Lambda container. Concurrency therefore
comes from processes: each worker loads the handlers once and serves one request at a time,
and the pool runs up to `size` of them at once against the same DynamoDB.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from usage_meter_local.invoke import Answer, LocalApi
from usage_meter_local.output import line_buffered

_api: LocalApi | None = None


def _start_container(environment: dict[str, str]) -> None:
    global _api
    # a terminal's Ctrl-C reaches the whole process group: the parent decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line_buffered()  # stdout is the stack's log file: each line lands as it is written
    os.environ.update(environment)
    from usage_meter.store import dynamodb as store_db

    store_db.reset()
    _api = LocalApi()


def _serve(method: str, path: str, event: dict[str, Any]) -> dict[str, Any]:
    assert _api is not None, "container not started"
    route = _api.route(method, path)
    if route is None:
        return {"status": 404, "headers": {}, "body": '{"message":"Not Found"}'}
    return _api.send(route, event).model_dump()


class ContainerPool:
    """`size` worker processes sharing one environment (table names, DynamoDB endpoint)."""

    def __init__(self, size: int, environment: dict[str, str]) -> None:
        self.size = size
        self._pool = ProcessPoolExecutor(
            max_workers=size,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_container,
            initargs=(environment,),
        )

    def send(self, method: str, path: str, event: dict[str, Any]) -> Answer:
        """Authorize (if the route says so) and invoke, in a free container."""
        return Answer(**self._pool.submit(_serve, method.upper(), path, event).result())

    def warm(self) -> None:
        """Start every container now rather than on the first requests."""
        list(self._pool.map(_noop, range(self.size)))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _noop(_: int) -> None:
    return None
