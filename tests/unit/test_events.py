"""Real-time events (pgfleet.domains.events and the WebSocket handler) over fakes: who may
connect to what, the tenant fan-out, messages, and forgetting gone or expired connections."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pgfleet.core.auth import LocalTokens
from pgfleet.domains import events
from pgfleet.handlers.events import lambda_handler
from tests.unit.fakes import FakePorts

THRESHOLD, FORECAST, SPIKE, WARNING = events.CAPACITY_EVENTS


def _route(route: str, cid: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
           body: str | None = None) -> dict[str, Any]:  # fmt: skip
    event = {"requestContext": {"routeKey": route, "connectionId": cid}, "headers": headers,
             "queryStringParameters": query, "body": body}  # fmt: skip
    return lambda_handler(event, None)


def _connect(ports: FakePorts, cid: str, role: str, tenant: str | None, **query: str) -> dict[str, Any]:
    token = LocalTokens(ports.settings.home).mint(role, tenant)
    return _route("$connect", cid, query={"token": token, **query})


def test_connect_needs_a_valid_token_that_may_read_capacity(fake_ports: FakePorts) -> None:
    assert _route("$connect", "c0")["statusCode"] == 401
    refused = _route("$connect", "c1", headers={"Authorization": "Bearer nope"})
    assert refused["statusCode"] == 401 and "invalid token" in refused["body"]
    refused = _connect(fake_ports, "c2", "user", "acme")  # no capacity:read
    assert refused["statusCode"] == 403 and "capacity:read" in refused["body"]
    refused = _connect(fake_ports, "c3", "viewer", "acme", events="capacity:nonsense")
    assert (
        refused["statusCode"] == 422
        and "capacity:threshold_exceeded" in json.loads(refused["body"])["error"]["message"]
    )
    assert fake_ports.store.every(events.KIND) == []
    assert _connect(fake_ports, "c4", "viewer", "acme")["statusCode"] == 200
    (record,) = fake_ports.store.every(events.KIND)
    assert record["tenant_id"] == "acme" and record["events"] == list(events.CAPACITY_EVENTS)
    _route("$disconnect", "c4")
    assert fake_ports.store.every(events.KIND) == []


def test_an_event_reaches_its_tenant_and_the_platform_never_another_tenant(fake_ports: FakePorts) -> None:
    _connect(fake_ports, "acme-1", "operator", "acme")
    _connect(fake_ports, "acme-2", "viewer", "acme", events=SPIKE)
    _connect(fake_ports, "globex-1", "operator", "globex")
    _connect(fake_ports, "platform", "admin", None)
    assert events.publish(fake_ports, "acme", THRESHOLD, {"resourceType": "STORAGE"}) == 2
    reached = sorted(cid for cid, _ in fake_ports.events.posted)
    assert reached == ["acme-1", "platform"]
    message = fake_ports.events.posted[0][1]
    assert (
        message["event"] == THRESHOLD
        and message["tenantId"] == "acme"
        and message["data"] == {"resourceType": "STORAGE"}
    )
    fake_ports.events.posted.clear()
    assert events.publish(fake_ports, "acme", SPIKE, {}) == 3
    assert "globex-1" not in {cid for cid, _ in fake_ports.events.posted}


def test_gone_and_expired_connections_are_forgotten(fake_ports: FakePorts) -> None:
    _connect(fake_ports, "gone", "operator", "acme")
    _connect(fake_ports, "expired", "operator", "acme")
    _connect(fake_ports, "alive", "operator", "acme")
    fake_ports.events.gone.add("gone")
    fake_ports.store.update(events.KIND, "expired", {"expires_at": time.time() - 1})
    assert events.publish(fake_ports, "acme", FORECAST, {}) == 1
    assert [r["id"] for r in fake_ports.store.every(events.KIND)] == ["alive"]
    assert fake_ports.events.closed == ["expired"]


def test_messages_ping_and_subscribe_within_what_the_token_allows(fake_ports: FakePorts) -> None:
    _connect(fake_ports, "c", "viewer", "acme", events=THRESHOLD)

    def say(body: str) -> dict[str, Any]:
        return json.loads(_route("$default", "c", body=body)["body"])

    assert say('{"action": "ping"}') == {"event": "pong", "events": [THRESHOLD]}
    assert say(json.dumps({"action": "subscribe", "events": [SPIKE, WARNING]})) == {
        "event": "subscribed",
        "events": [SPIKE, WARNING],
    }
    assert fake_ports.store.get(events.KIND, "c")["events"] == [SPIKE, WARNING]
    assert say('{"action": "subscribe", "events": 3}')["event"] == "error"
    assert say("not json")["event"] == "error"
    assert say('{"action": "dance"}')["event"] == "error"
    assert say("x" * 5000)["event"] == "error"
    assert json.loads(_route("$default", "stranger", body='{"action": "ping"}')["body"])["event"] == "error"


def test_publish_survives_a_subscriber_that_raises(
    fake_ports: FakePorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    _connect(fake_ports, "a", "operator", "acme")
    _connect(fake_ports, "b", "operator", "acme")

    def post(cid: str, data: bytes) -> bool:
        if cid == "a":
            raise OSError("connection reset")
        return True

    monkeypatch.setattr(fake_ports.events, "post", post)
    assert events.publish(fake_ports, "acme", THRESHOLD, {}) == 1
    with pytest.raises(ValueError):
        events.publish(fake_ports, "acme", "capacity:unknown", {})


def test_a_spike_is_analyzed_at_once_and_announced(fake_ports: FakePorts, call: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from pgfleet.domains.capacity import capture, live
    from pgfleet.ports.history import HistoryRecord

    status, made = call("POST", "/api/v1/postgres/single", {"name": "spiky"})
    assert status == 202, made
    fake_ports.drain()
    iid = made["id"]
    _connect(fake_ports, "s", "operator", "acme")
    now = datetime.now(UTC)
    item = {"tenant_id": "acme", "target_id": iid, "resource_id": iid,
            "resource_type": "STORAGE", "current_usage": 100.0, "capacity": 1000.0, "utilization_percentage": 10.0,
            "unit": "bytes", "status": "NORMAL"}  # fmt: skip
    records = [
        HistoryRecord(stream=capture.STREAM, target_id=item["target_id"], tenant_id="acme",
                      at=now - timedelta(days=6 - d), data={**item, "current_usage": 50.0 + 10 * d}, ttl_seconds=capture.TTL_SECONDS)
        for d in range(6)
    ]  # fmt: skip
    fake_ports.history.append(capture.STREAM, records)
    assert live.spikes(fake_ports, [{**item, "current_usage": 50.0 + 10 * 5}], now) != []
    kinds = [m["event"] for _, m in fake_ports.events.posted]
    assert SPIKE in kinds and FORECAST in kinds, kinds
    (spike,) = [m for _, m in fake_ports.events.posted if m["event"] == SPIKE]
    assert spike["data"]["growthRate"] == 100.0 and spike["data"]["patternType"] == "LINEAR", spike
    fake_ports.events.posted.clear()
    assert live.spikes(fake_ports, [{**item, "current_usage": 51.0}], now) == []  # 2 %: no spike
    assert fake_ports.events.posted == []
