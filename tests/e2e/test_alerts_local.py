"""`make dev` runs the alerts pipeline: DynamoDB Local's stream into the alerts function, the
webhook queue into the webhooks function, signed deliveries to a receiver on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

from usage_meter_admin.listener import Receiver

from e2e.conftest import admin
from e2e.test_local_stack import http

DEVELOPER = "dev_e2e_alerts"


def test_thresholds_and_the_limit_reach_a_local_receiver_once_each(local_stack: dict[str, Any]) -> None:
    receiver = Receiver([]).start()
    got = receiver.received
    try:
        admin(local_stack, "developers", "create", "--name", "Alerts", "--id", DEVELOPER, "--plan", "free")
        created = admin(local_stack, "webhooks", "add", receiver.url, "--developer", DEVELOPER)
        receiver.secrets.append(created["secret"])
        service = local_stack["serviceKey"]
        for quantity, status in ((900, 200), (150, 429), (100, 200)):  # free: 1,000 api_calls, hard
            event = {"developerId": DEVELOPER, "metric": "api_calls", "quantity": quantity}
            assert http(local_stack, "POST", "/v1/usage/events", key=service, body=event)[0] == status
        deadline = time.monotonic() + 90
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        receiver.stop()
    assert [r.error for r in got if r.event is None] == []
    seen = sorted((r.event["type"], r.event["data"].get("threshold", 0)) for r in got if r.event)
    assert seen == [
        ("usage.limit.reached", 0),
        ("usage.threshold.reached", 80),
        ("usage.threshold.reached", 90),
        ("usage.threshold.reached", 100),
    ]
    attempts = admin(local_stack, "webhooks", "deliveries", created["webhook"]["webhookId"])
    assert sorted(a["outcome"] for a in attempts) == ["delivered"] * 4
