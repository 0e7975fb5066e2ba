"""The local alerts pipeline: the stream consumer (a process of its own, so it can be killed
like a Lambda container) and the webhook queue worker (a thread)."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from usage_meter_local.outbox import queue_folder
from usage_meter_local.streams import QueueWorker, consume, in_background

ALERTS_FUNCTION = "AlertsFunction"
_SPAWN = multiprocessing.get_context("spawn")


class AlertPipeline:
    """Stream -> alerts function -> queue -> webhooks function, on `environment`'s stack.

    `environment` holds the functions' variables (tables, DynamoDB endpoint, outbox);
    checkpoints live in `folder`, so a consumer started again resumes from them."""

    def __init__(self, environment: dict[str, str], folder: Path, *, duplicate_rate: float = 0.0) -> None:
        self.environment = environment
        self.checkpoints = folder / "usage-stream.checkpoints.json"
        self.duplicate_rate = duplicate_rate
        self.consumer: multiprocessing.process.BaseProcess | None = None
        self.stop_worker = threading.Event()
        self.worker = QueueWorker(queue_folder(environment))

    def start_consumer(self, wait_s: float = 60) -> None:
        """A new consumer process; returns once it reads the stream (or after `wait_s`)."""
        ready = self.ready = _SPAWN.Event()  # kept: the child unpickles it after we return
        self.consumer = _SPAWN.Process(
            target=consume,
            args=(
                self.environment,
                ALERTS_FUNCTION,
                self.environment["USAGE_TABLE"],
                str(self.checkpoints),
                self.duplicate_rate,
                ready,
            ),
            name="alerts-stream",
            daemon=True,
        )
        self.consumer.start()
        ready.wait(wait_s)

    def kill_consumer(self) -> None:
        """SIGKILL: whatever batch it was in is redelivered to the next consumer."""
        if self.consumer is not None:
            self.consumer.kill()
            self.consumer.join(10)
            self.consumer = None

    def start(self) -> AlertPipeline:
        self.start_consumer()
        in_background("webhooks-queue", self.worker.run, self.stop_worker)
        return self

    def stop(self) -> None:
        self.kill_consumer()
        self.stop_worker.set()
