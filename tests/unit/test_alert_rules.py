"""Alert and webhook rules that need no AWS: crossings, filters, signatures, addresses, retries."""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal

import pytest

from usage_meter.domain import webhooks
from usage_meter.domain.alerts import crossed
from usage_meter.models.accounts import MetricLimit
from usage_meter.models.alerts import Envelope, Webhook
from usage_meter.store import endpoints
from usage_meter_client import webhooks as sdk
from usage_meter_local.template import matches, stream_sources

T = (80, 90, 100)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (0, 79, []),
        (0, 80, [80]),  # t <= new: landing on a threshold crosses it
        (79, 95, [80, 90]),  # one write may cross several at once
        (80, 85, []),  # old < t: already crossed before this change
        (95, 120, [100]),  # a soft limit passed
        (90, 80, []),  # a level going down crosses nothing
    ],
)
def test_crossing_is_old_below_and_new_at_or_above(old: int, new: int, expected: list[int]) -> None:
    assert crossed(Decimal(old), Decimal(new), Decimal(100), T) == expected


def test_thresholds_default_to_80_90_100_for_limited_meters_only() -> None:
    assert MetricLimit(limit=Decimal(10)).thresholds == (80, 90, 100)
    assert MetricLimit(limit=None).thresholds == ()
    assert MetricLimit(limit=Decimal(10), alerts=[100, 50, 50]).thresholds == (50, 100)
    assert MetricLimit(limit=Decimal(10), alerts=[]).thresholds == ()


def _event(kind: str = "usage.threshold.reached", developer: str = "dev_a") -> Envelope:
    return Envelope(
        id="evt_1", type=kind, created_at="2026-11-25T10:00:00.000Z", data={"developerId": developer}
    )  # type: ignore[arg-type]


def test_endpoints_filter_by_developer_and_type() -> None:
    every = Webhook(webhook_id="wh_1", url="https://x.example", salt="s", created_at="t")
    mine = every.model_copy(update={"developer_id": "dev_a", "events": ["usage.limit.reached"]})
    assert every.wants(_event())
    assert every.wants(_event(developer="dev_b"))
    assert not mine.wants(_event())  # another type
    assert mine.wants(_event("usage.limit.reached"))
    assert not mine.wants(_event("usage.limit.reached", developer="dev_b"))
    assert mine.wants(_event("webhook.test"))  # a test reaches the endpoint it is sent to


def test_the_sdk_verifies_what_the_service_signs() -> None:
    body = json.dumps({"id": "evt_1", "type": "webhook.test", "createdAt": "x", "data": {}}).encode()
    header = webhooks.sign("whsec_abc", 1_800_000_000, body)
    assert sdk.verify(body, header, "whsec_abc", now=1_800_000_100)["id"] == "evt_1"
    assert header == sdk.sign(body, "whsec_abc", 1_800_000_000)


@pytest.mark.parametrize(
    ("body", "secret", "now", "message"),
    [
        (b'{"id": "evt_2"}', "whsec_abc", 1_800_000_000, "does not match"),  # body changed
        (b'{"id": "evt_1"}', "whsec_other", 1_800_000_000, "does not match"),
        (b'{"id": "evt_1"}', "whsec_abc", 1_800_000_301, "tolerance"),  # a replay, 5 min later
    ],
)
def test_verify_refuses_forged_changed_and_stale(body: bytes, secret: str, now: int, message: str) -> None:
    header = sdk.sign(b'{"id": "evt_1"}', "whsec_abc", 1_800_000_000)
    with pytest.raises(sdk.WebhookVerificationError, match=message):
        sdk.verify(body, header, secret, now=now)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1800000000", "garbage"])
def test_verify_refuses_malformed_headers(header: str) -> None:
    with pytest.raises(sdk.WebhookVerificationError, match="malformed"):
        sdk.verify(b"{}", header, "whsec_abc", now=1_800_000_000)


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",  # noqa: S104
     "::1", "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1", "224.0.0.1", "240.0.0.1"],
)  # fmt: skip
def test_inner_addresses_are_never_delivered_to(address: str) -> None:
    assert not endpoints._allowed(ipaddress.ip_address(address), allow_local=False)


def test_public_addresses_and_the_local_stacks_loopback() -> None:
    assert endpoints._allowed(ipaddress.ip_address("93.184.215.14"), allow_local=False)
    assert endpoints._allowed(ipaddress.ip_address("2606:4700::1111"), allow_local=False)
    assert endpoints._allowed(ipaddress.ip_address("127.0.0.1"), allow_local=True)
    assert not endpoints._allowed(ipaddress.ip_address("10.0.0.1"), allow_local=True)


def test_retries_span_more_than_a_day_within_sqs_limits() -> None:
    waited = sum(webhooks.RETRY_DELAYS_S)
    assert waited >= 24 * 3600
    assert max(webhooks.RETRY_DELAYS_S) <= 12 * 3600  # SQS hides a message at most 12 h
    assert webhooks.MAX_ATTEMPTS == 12  # the queue's maxReceiveCount in template.yaml


def test_the_stream_filter_passes_counters_and_refusal_flags_only() -> None:
    (source,) = stream_sources()
    assert (source.function, source.table, source.bisect) == ("AlertsFunction", "UsageTable", True)

    def passes(name: str, sk: str) -> bool:
        record = {"eventName": name, "dynamodb": {"Keys": {"pk": {"S": "DEV#a"}, "sk": {"S": sk}}}}
        return any(matches(p, record) for p in source.patterns)

    assert passes("MODIFY", "M#2026-11#api_calls")
    assert passes("INSERT", "L#current#agents")
    assert passes("INSERT", "X#2026-11#api_calls")
    assert not passes("REMOVE", "M#2026-11#api_calls")
    for sk in ("D#2026-11-25#api_calls", "A#2026-11#api_calls#80", "R#2026-11-25T10:00#*", "S#2026-11#x"):
        assert not passes("MODIFY", sk), sk
