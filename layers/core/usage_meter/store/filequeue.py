"""The local stack's stand-in for SQS: a folder of message files, safe across processes.

A message is `ready/<visibleAtMs>-<id>-<receives>.json`; receiving renames it to a later
visibility (a rename is atomic, so two consumers never take the same message), deleting
removes it, and a message received more than `max_receives` times moves to `dlq/`, as SQS's
redrive policy does. The receipt handle is the file's current name.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Received:
    receipt: str
    body: str
    receives: int
    message_id: str
    sent_ms: int


def _name(visible_ms: int, message_id: str, receives: int, sent_ms: int) -> str:
    return f"{visible_ms:015d}-{message_id}-{receives}-{sent_ms}.json"


def _parse(name: str) -> tuple[int, str, int, int]:
    visible, message_id, receives, sent = name.removesuffix(".json").split("-")
    return int(visible), message_id, int(receives), int(sent)


def _now_ms() -> int:
    return int(time.time() * 1000)


def send(folder: Path, body: str, delay_s: float = 0) -> str:
    """Enqueue `body` (visible after `delay_s`); its message id."""
    ready = folder / "ready"
    ready.mkdir(parents=True, exist_ok=True)
    message_id = uuid.uuid4().hex
    now = _now_ms()
    staged = folder / f".{message_id}.tmp"
    staged.write_text(body)
    os.replace(staged, ready / _name(now + int(delay_s * 1000), message_id, 0, now))
    return message_id


def receive(folder: Path, limit: int, visibility_s: float, max_receives: int) -> list[Received]:
    """Up to `limit` visible messages, hidden for `visibility_s`; the over-received go to dlq/."""
    ready = folder / "ready"
    if not ready.is_dir():
        return []
    now = _now_ms()
    taken: list[Received] = []
    for name in sorted(os.listdir(ready)):
        visible, message_id, receives, sent = _parse(name)
        if visible > now or len(taken) >= limit:
            break
        target = folder / "dlq" if receives >= max_receives else ready
        target.mkdir(exist_ok=True)
        renamed = _name(now + int(visibility_s * 1000), message_id, receives + 1, sent)
        try:
            os.rename(ready / name, target / renamed)
        except FileNotFoundError:  # another consumer took it
            continue
        if target == ready:
            taken.append(Received(renamed, (ready / renamed).read_text(), receives + 1, message_id, sent))
    return taken


def delete(folder: Path, receipt: str) -> None:
    (folder / "ready" / receipt).unlink(missing_ok=True)


def change_visibility(folder: Path, receipt: str, seconds: float) -> str:
    """Hide a received message for `seconds` from now; its new receipt."""
    _, message_id, receives, sent = _parse(receipt)
    renamed = _name(_now_ms() + int(seconds * 1000), message_id, receives, sent)
    os.replace(folder / "ready" / receipt, folder / "ready" / renamed)
    return renamed


def count(folder: Path, which: str = "ready") -> int:
    path = folder / which
    return len(os.listdir(path)) if path.is_dir() else 0
