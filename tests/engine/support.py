"""Lambda-like containers and fault injection for the engine tests.

Why processes: Powertools' resolver keeps the request being handled in class attributes
(`BaseRouter.current_event`, the routing context), which is right for Lambda, where one
execution environment handles one request at a time, and wrong for two threads sharing one
process: requests then read each other's body and identity. So each concurrent client thread
talks to its own *container*, a forked process that runs the real handlers through LocalApi,
one request at a time, exactly as Lambda scales out. Everything that must happen inside a
container (fault injection, counting commits) is installed by a `setup` callable there, and
its numbers come back through `Container.stats()`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from usage_meter import jsonutil
from usage_meter.domain.periods import day_key, month_key
from usage_meter.store import dynamodb as store_db
from usage_meter.store import events as event_store
from usage_meter_local.faults import error_response
from usage_meter_local.invoke import Answer, LocalApi

from helpers import iso

Setup = Callable[[], None]
T = TypeVar("T")

# Numbers a container collects (faults injected, commits cancelled); read with Container.stats().
STATS: Counter[str] = Counter()

_FORK = multiprocessing.get_context("fork")
_TIMEOUT_S = 120


def _serve(conn: Connection, setup: Setup | None, timeout_s: int) -> None:
    """A container's life: fresh DynamoDB client, optional setup, then one request at a time,
    each with a Lambda context of `timeout_s`."""
    inherited = store_db.client()  # the parent's client and sockets: kept alive, never used here
    store_db.reset()
    STATS.clear()
    try:
        store_db.client().list_tables(Limit=1)  # a warm connection, like a container that served before
        if setup is not None:
            setup()
        api = LocalApi(timeout_s=timeout_s)
    except Exception:
        conn.send(("failed", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        message = conn.recv()
        if message is None:
            break
        kind, payload = message
        if kind == "stats":
            conn.send(("stats", dict(STATS)))
            continue
        try:
            conn.send(("answer", api.call(**payload).model_dump()))
        except Exception:  # the handler raised: API Gateway would answer 500
            conn.send(("crash", traceback.format_exc()))
    del inherited


class Container:
    """One execution environment: a forked process running the real handlers, one request at a
    time, each invocation given `timeout_s` (the function's timeout in template.yaml: 10 s)."""

    def __init__(self, setup: Setup | None = None, timeout_s: int = 10) -> None:
        self._conn, child = _FORK.Pipe()
        self._process = _FORK.Process(target=_serve, args=(child, setup, timeout_s), daemon=True)
        self._process.start()
        child.close()
        self.crashes: list[str] = []
        kind, detail = self._conn.recv() if self._conn.poll(_TIMEOUT_S) else ("timeout", "")
        if kind != "ready":
            self.close()
            raise RuntimeError(f"container did not start ({kind}):\n{detail}")

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        authorizer: dict[str, Any] | None = None,
    ) -> Answer:
        """One request through the handlers; a crash becomes API Gateway's 500 (traceback kept)."""
        request = {"method": method, "path": path, "body": body, "query": query, "headers": headers}
        self._conn.send(("call", {**request, "authorizer": authorizer}))
        if not self._conn.poll(_TIMEOUT_S):
            raise TimeoutError(f"no answer from container {self._process.pid} in {_TIMEOUT_S} s")
        kind, payload = self._conn.recv()
        if kind == "crash":
            self.crashes.append(payload)
            return Answer(status=500, headers={}, body='{"message":"Internal Server Error"}')
        return Answer.model_validate(payload)

    def stats(self) -> Counter[str]:
        self._conn.send(("stats", None))
        kind, payload = self._conn.recv()
        assert kind == "stats"
        return Counter(payload)

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(10)
        self._conn.close()


def as_json(body: Any) -> Any:
    """Bodies as exact JSON text (LocalApi's json.dumps cannot write Decimals)."""
    return body if body is None or isinstance(body, str | bytes) else jsonutil.dumps(body)


def track(container: Container, body: Any, auth: dict[str, Any]) -> Answer:
    """POST /v1/usage/events through a container."""
    return container.call("POST", "/v1/usage/events", body=as_json(body), authorizer=auth)


def total_stats(containers: Sequence[Container]) -> Counter[str]:
    total: Counter[str] = Counter()
    for container in containers:
        total.update(container.stats())
    return total


def all_crashes(containers: Sequence[Container]) -> list[str]:
    return [crash for container in containers for crash in container.crashes]


# ---- workloads ------------------------------------------------------------------------------


def recent(now: datetime, rng: random.Random, days_back: int) -> datetime:
    """A moment on the UTC day `days_back` days before `now`'s, never in the future."""
    latest = now - timedelta(minutes=2)
    midnight = latest.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_back)
    end = latest if days_back == 0 else midnight + timedelta(days=1) - timedelta(milliseconds=1)
    span_ms = int((end - midnight).total_seconds() * 1000)
    return midnight + timedelta(milliseconds=rng.randint(0, span_ms))


def quantity(rng: random.Random) -> Decimal:
    """Exact decimals with up to 9 places: what a float would round."""
    return Decimal(rng.randint(1, 10**6)) / Decimal(10) ** rng.choice([0, 0, 1, 2, 3, 9])


def keyed_events(
    rng: random.Random,
    developers: Sequence[str],
    metrics: Sequence[str],
    now: datetime,
    count: int,
    duplicates: int,
    key_prefix: str,
    key_width: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` events with distinct keys over developers x metrics x today and yesterday, and what
    is sent: those plus `duplicates` re-sent copies of random ones, shuffled. Returns (distinct, sent)."""
    distinct = [
        {
            "developerId": rng.choice(developers),
            "metric": rng.choice(metrics),
            "quantity": quantity(rng),
            "idempotencyKey": f"{key_prefix}-{i:0{key_width}d}",
            "timestamp": iso(recent(now, rng, rng.choice([0, 1]))),
        }
        for i in range(count)
    ]
    sent = distinct + [dict(rng.choice(distinct)) for _ in range(duplicates)]
    rng.shuffle(sent)
    return distinct, sent


def batched_requests(
    rng: random.Random, events: list[dict[str, Any]], single_share: float, largest: int
) -> queue.Queue[list[dict[str, Any]]]:
    """`events` in order, cut into requests: about `single_share` of them single events, the rest
    batches of 2 to `largest`; a queue the client threads take them from."""
    requests: queue.Queue[list[dict[str, Any]]] = queue.Queue()
    position = 0
    while position < len(events):
        size = 1 if rng.random() < single_share else rng.randint(2, largest)
        requests.put(events[position : position + size])
        position += size
    return requests


def drain(requests: queue.Queue[T]) -> Iterator[T]:
    """Take items off a queue shared by client threads until it is empty (each goes to one thread)."""
    while True:
        try:
            item = requests.get_nowait()
        except queue.Empty:
            return
        yield item


def run_threads(containers: list[Container], work: Callable[[int, Container], None]) -> float:
    """One client thread per container; returns the wall time."""
    errors: list[BaseException] = []

    def guarded(index: int, container: Container) -> None:
        try:
            work(index, container)
        except BaseException as exc:  # surfaced below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i, c)) for i, c in enumerate(containers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.monotonic() - started


def expected_counters(events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """What the usage table must hold: per developer, day/month and metric, the sum and count."""
    totals: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for event in events:
        moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        for sk in (f"D#{day_key(moment)}#{event['metric']}", f"M#{month_key(moment)}#{event['metric']}"):
            slot = totals[(f"DEV#{event['developerId']}", sk)]
            slot[0] += event["quantity"]
            slot[1] += 1
    return {key: (total, count) for key, (total, count) in totals.items()}


# ---- setups (run inside a container) --------------------------------------------------------


def compose(*setups: Setup) -> Setup:
    def run() -> None:
        for setup in setups:
            setup()

    return run


def count_commits() -> None:
    """Count the transactions, those DynamoDB cancelled for contention (tracking retries every one of
    them), those cancelled at a hard-limit ceiling, and those left without a definite answer
    (retried unchanged)."""
    real = event_store.commit_events

    def counting(*args: Any, **kwargs: Any) -> None:
        STATS["transactions"] += 1
        try:
            real(*args, **kwargs)
        except event_store.CommitCancelled as cancelled:
            cause = cancelled.__cause__
            reasons = cause.response.get("CancellationReasons", []) if isinstance(cause, ClientError) else []
            if any(reason.get("Code") == "TransactionConflict" for reason in reasons):
                STATS["transaction_conflicts"] += 1
            if cancelled.retryable and not cancelled.duplicates:
                STATS["retryable_cancellations"] += 1
            if cancelled.over_limit:
                STATS["ceiling_cancellations"] += 1
            raise
        except event_store.CommitInDoubt:
            STATS["commits_in_doubt"] += 1
            raise

    event_store.commit_events = counting  # type: ignore[assignment]  # this container only


def without_sdk_retries() -> None:
    """Give the store a client that never retries, so every injected fault reaches the service's own code."""
    cfg = store_db.settings()
    plain = boto3.client(
        "dynamodb",
        region_name=cfg.region,
        endpoint_url=cfg.endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5
        ),
    )
    store_db.client = lru_cache(maxsize=1)(lambda: plain)  # type: ignore[assignment]  # this container only


# ---- fault injection at the HTTP layer of botocore ------------------------------------------


def _conflict(request: AWSPreparedRequest) -> AWSResponse:
    """A TransactionCanceledException naming a TransactionConflict on the first counter update."""
    items = json.loads(request.body or b"{}").get("TransactItems", [])
    first_update = next((i for i, item in enumerate(items) if "Update" in item), 0)
    reasons = [
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        if i == first_update
        else {"Code": "None"}
        for i in range(len(items))
    ]
    return error_response(request, 400, "TransactionCanceledException", {"CancellationReasons": reasons})


@dataclass
class Faults:
    """Fail about `rate` of the HTTP attempts botocore makes, each with one of `kinds`:

    - throttle: 400 ThrottlingException, nothing applied
    - server_error: 500 InternalServerError, nothing applied
    - timeout_after_applied: the request really goes to DynamoDB Local and succeeds there,
      then the caller gets a ReadTimeoutError instead of the answer
    - conflict: TransactionCanceledException with a TransactionConflict (TransactWriteItems only;
      DynamoDB Local serializes transactions, so it never produces one itself)
    """

    rate: float
    kinds: Sequence[str] = ("throttle", "server_error", "timeout_after_applied")
    operations: Sequence[str] | None = None  # None: every operation
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _http: URLLib3Session = field(init=False, repr=False)

    def install(self) -> None:
        self._rng = random.Random(self.seed ^ os.getpid())
        self._http = URLLib3Session(timeout=30)
        store_db.client().meta.events.register("before-send.dynamodb", self._before_send)

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        if self.operations is not None and operation not in self.operations:
            return None
        if self._rng.random() >= self.rate:
            return None
        kind = self._rng.choice(list(self.kinds))
        if kind == "conflict" and operation != "TransactWriteItems":
            kind = "throttle"
        if kind == "throttle":
            STATS[f"throttle:{operation}"] += 1
            return error_response(request, 400, "ThrottlingException")
        if kind == "server_error":
            STATS[f"server_error:{operation}"] += 1
            return error_response(request, 500, "InternalServerError")
        if kind == "conflict":
            STATS["conflict:TransactWriteItems"] += 1
            return _conflict(request)
        assert kind == "timeout_after_applied", kind
        response = _send_for_real(self._http, request)
        if response.status_code != 200:  # it did not apply: hand back the real answer
            STATS[f"not_applied:{operation}"] += 1
            return response
        STATS[f"timeout_after_applied:{operation}"] += 1
        raise ReadTimeoutError(endpoint_url=request.url)


def _send_for_real(http: URLLib3Session, request: AWSPreparedRequest) -> AWSResponse:
    """Send a request to DynamoDB Local and read all of its answer: once it has answered, it
    has applied what it was going to apply."""
    response = http.send(request)
    response.content  # noqa: B018 - reads the body
    return response


def _token(request: AWSPreparedRequest) -> str:
    """The ClientRequestToken of a TransactWriteItems request ("" if it has none)."""
    return str(json.loads(request.body or b"{}").get("ClientRequestToken", ""))


def _metrics(request: AWSPreparedRequest) -> set[str]:
    """The metrics whose counters a TransactWriteItems request updates (the last part of a
    counter's sort key)."""
    items = json.loads(request.body or b"{}").get("TransactItems", [])
    return {item["Update"]["Key"]["sk"]["S"].rsplit("#", 1)[-1] for item in items if "Update" in item}


@dataclass
class CommitFaults:
    """Deterministic failures of TransactWriteItems attempts (botocore's retries are attempts too).

    - `kind`, what the service gets: server_error (500 InternalServerError), in_progress (400
      TransactionInProgressException), timeout (ReadTimeoutError), connection_error
      (EndpointConnectionError);
    - `applied`: each faulted attempt is first really sent to DynamoDB Local, so a write is
      applied and only its answer is lost (an answer other than 200 is handed back as it is);
    - `attempts`: how many attempts of each transaction (told apart by its ClientRequestToken)
      fail (None: every one);
    - `spare`: this many transactions (told apart by their ClientRequestToken) go through untouched;
    - `metric`: only transactions that record this metric fail;
    - `delay_s`: each faulted attempt takes this long first.

    Every attempt's ClientRequestToken is counted in STATS as `token:<token>`.
    """

    kind: str
    applied: bool = False
    attempts: int | None = None
    spare: int = 0
    metric: str | None = None
    delay_s: float = 0.0
    _http: URLLib3Session = field(init=False, repr=False)
    _spared: list[str] = field(init=False, repr=False, default_factory=list)

    def install(self) -> None:
        self._http = URLLib3Session(timeout=30)
        # on the same event as the service's deadline hook, after it: an attempt the deadline
        # refuses is never sent
        store_db.client().meta.events.register("before-send.dynamodb", self._before_send)

    def _strikes(self, request: AWSPreparedRequest) -> bool:
        token = _token(request)
        STATS[f"token:{token}"] += 1
        if token in self._spared or (len(self._spared) < self.spare and token):
            if token not in self._spared:
                self._spared.append(token)
            return False
        if self.metric is not None and self.metric not in _metrics(request):
            return False
        return self.attempts is None or STATS[f"token:{token}"] <= self.attempts

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        if not event_name.endswith(".TransactWriteItems") or not self._strikes(request):
            return None
        STATS["faulted"] += 1
        time.sleep(self.delay_s)
        if self.applied:
            response = _send_for_real(self._http, request)
            if response.status_code != 200:
                return response
            STATS["applied"] += 1
        if self.kind == "server_error":
            return error_response(request, 500, "InternalServerError")
        if self.kind == "in_progress":
            return error_response(request, 400, "TransactionInProgressException")
        if self.kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url)
        assert self.kind == "connection_error", self.kind
        raise EndpointConnectionError(endpoint_url=request.url)


def tokens_used(stats: Counter[str]) -> set[str]:
    """The ClientRequestTokens of the TransactWriteItems attempts a CommitFaults saw."""
    return {key.removeprefix("token:") for key in stats if key.startswith("token:")}
