"""Alerts to channels: `notify` picks the channels (tenant, platform, routing, enabled), the
worker's handler delivers with backoff, and failures land on the alert. Fake ports, and a
notifier that fails on demand."""

from __future__ import annotations

from typing import Any

import pytest

from pgfleet.core.auth import principal_from_claims
from pgfleet.domains.notifications import DOMAIN, ChannelCreate, deliveries_of, notify, service
from pgfleet.domains.notifications import delivery as deliveries
from pgfleet.ports.notifier import DeliveryFailed, Message, Notifier
from tests.unit.fakes import FakeQueue

PLATFORM = principal_from_claims({"sub": "root", "roles": ["admin"]})
HOOK_SECRET = "hook-secret-0123456789abcdef"


class DelayQueue(FakeQueue):
    def __init__(self) -> None:
        super().__init__()
        self.delays: list[int] = []

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        super().send(message)
        self.delays.append(delay_seconds)


class FlakyNotifier(Notifier):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], Message]] = []
        self.failures_left = 0

    def send(self, channel_type: str, configuration: dict[str, Any], message: Message) -> str:
        if self.failures_left:
            self.failures_left -= 1
            raise DeliveryFailed("HTTP 503 Service Unavailable")
        self.sent.append((channel_type, configuration, message))
        return "sent"


@pytest.fixture
def ports(fake_ports):  # type: ignore[no-untyped-def]
    fake_ports.queue = DelayQueue()
    fake_ports.notifier = FlakyNotifier()
    return fake_ports


def channel(ports: Any, tenant: str, name: str, **extra: Any) -> dict[str, Any]:
    body = ChannelCreate.model_validate({
        "type": "WEBHOOK", "name": name, "tenantId": tenant,
        "configuration": {"url": "http://127.0.0.1:9/hook", "secret": HOOK_SECRET}, **extra,
    })  # fmt: skip
    return service.create_channel(ports, PLATFORM, body)


def alert(ports: Any, tenant: str = "acme", severity: str = "HIGH") -> dict[str, Any]:
    return ports.store.create("alert", {
        "id": "alert-0123456789ab", "tenant_id": tenant, "parent_id": "pgi-0123456789ab",
        "alert_name": "storage usage", "severity": severity, "status": "ACTIVE", "category": "CAPACITY",
        "description": "storage above 90%", "triggered_at": "2026-01-01T00:00:00Z", "metric_value": 93.5,
        "threshold": 90, "resource_type": "instance", "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip


def run_worker(ports: Any) -> list[str]:
    handler = DOMAIN.messages["notification.deliver"]
    lines = []
    while ports.queue.messages:
        lines.append(handler(ports, ports.queue.messages.pop(0)))
    return lines


def test_notify_routes_by_tenant_platform_severity_event_and_enabled(ports) -> None:  # type: ignore[no-untyped-def]
    mine = channel(ports, "acme", "acme hook")
    platform = channel(ports, "*", "noc hook")
    channel(ports, "globex", "other tenant")
    channel(ports, "acme", "critical only", routing={"severities": ["CRITICAL"]})
    channel(ports, "acme", "resolutions only", routing={"events": ["resolved"]})
    channel(ports, "acme", "disabled", isEnabled=False)
    record = alert(ports)
    lines = notify(ports, record, "triggered")
    assert len(lines) == 2 and all("queued" in line for line in lines)
    queued = deliveries_of(ports, record["id"])
    assert {d["channel_id"] for d in queued} == {mine["id"], platform["id"]}
    assert all(d["status"] == "PENDING" and d["attempts"] == 0 and d["event"] == "triggered" for d in queued)
    assert [m["type"] for m in ports.queue.messages] == ["notification.deliver"] * 2

    resolved = notify(ports, {**record, "status": "RESOLVED"}, "resolved")
    assert len(resolved) == 3  # and the resolutions-only channel
    critical = notify(ports, {**record, "id": "alert-00000000000c", "severity": "CRITICAL"}, "triggered")
    assert len(critical) == 3


def test_deliver_sends_the_alert_with_the_secret_and_is_idempotent(ports) -> None:  # type: ignore[no-untyped-def]
    hook = channel(ports, "acme", "acme hook")
    record = alert(ports)
    notify(ports, record, "triggered")
    message = dict(ports.queue.messages[0])
    (line,) = run_worker(ports)
    assert line.endswith(": sent")
    channel_type, configuration, sent = ports.notifier.sent[0]
    assert channel_type == "WEBHOOK" and configuration["secret"] == HOOK_SECRET
    assert sent.event == "triggered" and sent.severity == "HIGH" and sent.alert["id"] == record["id"]
    assert "storage usage" in sent.title and "93.5" in sent.text
    (done,) = deliveries_of(ports, record["id"])
    assert done["status"] == "DELIVERED" and done["attempts"] == 1 and done["delivered_at"]
    assert done["channel_id"] == hook["id"]
    # At least once: the same message again sends nothing.
    assert "already DELIVERED" in DOMAIN.messages["notification.deliver"](ports, message)
    assert len(ports.notifier.sent) == 1
    assert HOOK_SECRET not in repr(deliveries_of(ports, record["id"]))


def test_failures_back_off_then_fail_and_are_recorded_on_the_alert(ports) -> None:  # type: ignore[no-untyped-def]
    hook = channel(ports, "acme", "acme hook")
    record = alert(ports)
    notify(ports, record, "triggered")
    ports.queue.delays.clear()
    ports.notifier.failures_left = 100
    lines = run_worker(ports)  # never raises: each failure re-enqueues itself
    assert len(lines) == 5 and "FAILED after 5" in lines[-1]
    assert ports.queue.delays == [10, 20, 40, 80]
    (failed,) = deliveries_of(ports, record["id"])
    assert failed["status"] == "FAILED" and failed["attempts"] == 5
    assert failed["last_error"] == "HTTP 503 Service Unavailable"
    stored = ports.store.get("alert", record["id"])
    failures = stored["notification_failures"]
    assert [(f["attempts"], f["final"]) for f in failures] == [(5, True)]
    assert failures[0]["channel_id"] == hook["id"] and failures[0]["channel_type"] == "WEBHOOK"
    assert failures[0]["event"] == "triggered" and failures[0]["error"] == "HTTP 503 Service Unavailable"


def test_a_retry_that_succeeds_delivers(ports) -> None:  # type: ignore[no-untyped-def]
    channel(ports, "acme", "acme hook")
    record = alert(ports)
    notify(ports, record, "resolved")
    ports.notifier.failures_left = 2
    run_worker(ports)
    (done,) = deliveries_of(ports, record["id"])
    assert done["status"] == "DELIVERED" and done["attempts"] == 3
    # The alert shows the failing delivery as soon as it fails, not final.
    (failure,) = ports.store.get("alert", record["id"])["notification_failures"]
    assert failure["attempts"] == 2 and failure["final"] is False and failure["event"] == "resolved"


def test_backoff_is_capped() -> None:
    assert [deliveries.backoff_seconds(n) for n in (0, 1, 4, 7, 8, 20)] == [5, 10, 80, 640, 900, 900]


def test_a_deleted_channel_fails_without_retry(ports) -> None:  # type: ignore[no-untyped-def]
    hook = channel(ports, "acme", "acme hook")
    record = alert(ports)
    notify(ports, record, "triggered")
    service.delete_channel(ports, PLATFORM, hook["id"])
    (line,) = run_worker(ports)
    assert "FAILED" in line and "deleted" in line
    assert deliveries_of(ports, record["id"])[0]["status"] == "FAILED"


def test_notify_never_raises(ports) -> None:  # type: ignore[no-untyped-def]
    channel(ports, "acme", "acme hook")
    record = alert(ports)
    ports.store.fail_writes_of.add("notification_delivery")
    lines = notify(ports, record, "triggered")
    assert len(lines) == 1 and "not queued" in lines[0]
    assert not ports.queue.messages
    assert "no notification" in notify(ports, record, "exploded")[0]
    # An alert with no channels: nothing to do.
    assert notify(ports, {**record, "tenant_id": "nobody"}, "triggered") == []


def test_a_channel_disabled_after_the_alert_gets_nothing(ports) -> None:  # type: ignore[no-untyped-def]
    hook = channel(ports, "acme", "acme hook")
    record = alert(ports)
    notify(ports, record, "triggered")
    ports.store.update("notification_channel", hook["id"], {"is_enabled": False})
    (line,) = run_worker(ports)
    assert "FAILED" in line and "disabled" in line and not ports.notifier.sent
