"""Where the local stack's events go: a JSON-lines file for the bus, a folder for the webhook
queue, a key file for the webhook signing key (KMS's part), all under one folder."""

from __future__ import annotations

import secrets
from pathlib import Path

EVENTS_NAME = "events.jsonl"
QUEUE_NAME = "webhook-queue"
KEY_NAME = "webhook-signing.key"
VARIABLES = ("EVENT_BUS_NAME", "WEBHOOK_QUEUE_URL", "WEBHOOK_KEY_FILE", "WEBHOOK_ALLOW_LOCAL")


def environment(folder: Path) -> dict[str, str]:
    """The variables that point the alerts, webhooks and rollup functions (and the CLI) at
    `folder`; the signing key is made once and kept (secrets shown earlier stay valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / KEY_NAME
    if not key.exists():
        key.write_bytes(secrets.token_bytes(32))
        key.chmod(0o600)
    return {
        "EVENT_BUS_NAME": f"file://{folder / EVENTS_NAME}",
        "WEBHOOK_QUEUE_URL": f"file://{folder / QUEUE_NAME}",
        "WEBHOOK_KEY_FILE": str(key),
        "WEBHOOK_ALLOW_LOCAL": "true",
    }


def queue_folder(env: dict[str, str]) -> Path:
    return Path(env["WEBHOOK_QUEUE_URL"].removeprefix("file://"))
