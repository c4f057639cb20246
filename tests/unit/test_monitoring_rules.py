"""Alert rules on samples, with fake ports: one alert per rule and server, raised and resolved
by the samples themselves, reconcile's immediate server_down, tenant overrides of the
defaults, and the alert list's timeRange."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains import servers
from pgfleet.domains.monitoring import rules
from pgfleet.domains.monitoring.samples import STREAM, Sample
from pgfleet.ports.history import HistoryRecord

SINGLE = "/api/v1/postgres/single"
ALERTS = "/api/v1/monitoring/alerts"
T0 = datetime.now(UTC)  # reset before each test: samples from now on (alerts carry the wall clock)


@pytest.fixture(autouse=True)
def _now() -> None:
    global T0
    T0 = datetime.now(UTC)


@pytest.fixture
def instance(call, fake_ports) -> dict:
    status, body = call("POST", SINGLE, {"name": "watched-db"})
    assert status == 202, body
    fake_ports.drain()
    return body


def _sample(
    fake_ports, iid: str, at: datetime, previous: dict | None = None, store: bool = True, **data: Any
) -> Sample:
    server = servers.get(fake_ports, "instance", iid)
    assert server is not None
    sample = Sample(server, at, {"up": True, **data}, previous)
    if store:
        fake_ports.history.append(
            STREAM, [HistoryRecord(STREAM, iid, server.record["tenant_id"], at, sample.data)]
        )
    return sample


def _alerts(call, **query: str) -> list[dict]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = call("GET", f"{ALERTS}?{qs}")
    assert status == 200, body
    return body["alerts"]


def test_server_down_needs_two_samples_then_resolves_by_itself(call, fake_ports, instance) -> None:
    iid = instance["id"]
    first = _sample(fake_ports, iid, T0, up=False, error="connection refused")
    assert rules.evaluate(fake_ports, [first]) == []
    second = _sample(fake_ports, iid, T0 + timedelta(minutes=1), first.data, up=False)
    lines = rules.evaluate(fake_ports, [second])
    assert any("server_down raised" in line for line in lines), lines
    third = _sample(fake_ports, iid, T0 + timedelta(minutes=2), second.data, up=False)
    assert not any("raised" in line for line in rules.evaluate(fake_ports, [third]))  # no duplicate
    (alert,) = _alerts(call, status="ACTIVE")
    assert alert["alertName"] == "server_down" and alert["severity"] == "CRITICAL"
    assert alert["category"] == "AVAILABILITY" and alert["metricValue"] == 2 and alert["threshold"] == 2
    assert any(a["actionType"] == "READ_LOGS" for a in alert["actions"])
    up = _sample(fake_ports, iid, T0 + timedelta(minutes=3), third.data)
    assert any("server_down resolved" in line for line in rules.evaluate(fake_ports, [up]))
    (resolved,) = _alerts(call, status="RESOLVED")
    assert resolved["alertId"] == alert["alertId"] and resolved["resolvedAt"]
    assert resolved["resolutionNote"] == "condition cleared"


def test_reconcile_raises_server_down_at_once_and_a_later_sample_clears_it(
    call, fake_ports, instance
) -> None:
    iid = instance["id"]
    record = fake_ports.store.get("instance", iid)
    line = rules.reconciled_down(fake_ports, record, "instance", "stale postmaster.pid")
    assert line and "server_down raised" in line
    (alert,) = _alerts(call, status="ACTIVE")
    assert "reconcile restarts it" in alert["description"]
    triggered = datetime.fromisoformat(alert["triggeredAt"].replace("Z", "+00:00"))
    # The capture of the same minute finds it up again (reconcile was quick): it stays.
    assert rules.evaluate(fake_ports, [_sample(fake_ports, iid, triggered + timedelta(seconds=5))]) == []
    assert _alerts(call, status="ACTIVE")
    later = _sample(fake_ports, iid, triggered + timedelta(seconds=65))
    assert any("resolved" in line for line in rules.evaluate(fake_ports, [later]))
    assert not _alerts(call, status="ACTIVE")


def test_threshold_rules_fire_and_clear(call, fake_ports, instance) -> None:
    iid = instance["id"]
    bad = _sample(
        fake_ports, iid, T0,
        replication=[{"name": "pgr-1", "lag_bytes": 200 * rules.MB, "lag_seconds": 45.0}],
        replication_lag_seconds_max=45.0, replication_lag_bytes_max=200 * rules.MB,
        xid_remaining=1.2e9, idle_in_transaction_max_seconds=900, blocking_sessions=2,
        deadlocks_per_minute=7, rollback_ratio=0.3, commits_per_second=10, rollbacks_per_second=4,
    )  # fmt: skip
    rules.evaluate(fake_ports, [bad])
    names = {a["alertName"]: a for a in _alerts(call, status="ACTIVE", pageSize="50")}
    assert set(names) == {
        "replication_lag_seconds", "replication_lag_bytes", "xid_wraparound", "idle_in_transaction",
        "blocking_sessions", "deadlocks", "rollback_ratio",
    }  # fmt: skip
    assert "pgr-1" in names["replication_lag_seconds"]["description"]
    assert names["deadlocks"]["severity"] == "HIGH" and names["deadlocks"]["metricValue"] == 7
    good = _sample(
        fake_ports, iid, T0 + timedelta(minutes=1), bad.data,
        replication_lag_seconds_max=0.1, replication_lag_bytes_max=0, xid_remaining=2.1e9,
        idle_in_transaction_max_seconds=0, blocking_sessions=0, deadlocks_per_minute=0, rollback_ratio=0.01,
        commits_per_second=10, rollbacks_per_second=0.1,
    )  # fmt: skip
    rules.evaluate(fake_ports, [good])
    assert _alerts(call, status="ACTIVE") == []
    assert len(_alerts(call, status="RESOLVED", pageSize="50")) == 7


def test_rollback_ratio_of_an_idle_server_is_not_an_alert(call, fake_ports, instance) -> None:
    s = _sample(
        fake_ports, instance["id"], T0, rollback_ratio=0.5, commits_per_second=0.1, rollbacks_per_second=0.1
    )
    rules.evaluate(fake_ports, [s])
    assert _alerts(call, status="ACTIVE") == []


def test_cache_hit_ratio_must_hold_ten_minutes(call, fake_ports, instance) -> None:
    iid = instance["id"]
    for minute in range(3):
        s = _sample(fake_ports, iid, T0 + timedelta(minutes=minute), cache_hit_ratio=0.9)
    rules.evaluate(fake_ports, [s])
    assert _alerts(call, status="ACTIVE") == []  # 2 minutes only
    for minute in range(3, 12):
        s = _sample(fake_ports, iid, T0 + timedelta(minutes=minute), cache_hit_ratio=0.9)
    rules.evaluate(fake_ports, [s])
    (alert,) = _alerts(call, status="ACTIVE")
    assert alert["alertName"] == "cache_hit_ratio" and alert["threshold"] == 0.98


def test_failover_fires_when_a_clusters_leader_moves(call, fake_ports) -> None:
    status, body = call("POST", "/api/v1/postgres/cluster", {"name": "ha-db"})
    assert status == 202, body
    fake_ports.drain()
    cid = body["id"]
    server = servers.get(fake_ports, "cluster", cid)

    def sample(minute: int, **data: Any) -> Sample:
        s = Sample(server, T0 + timedelta(minutes=minute), {"up": True, **data})
        fake_ports.history.append(STREAM, [HistoryRecord(STREAM, cid, "acme", s.at, s.data)])
        return s

    sample(0, timeline=1, primary="node1")
    sample(1, up=False, timeline=None, primary=None)  # the leader died: nothing read
    rules.evaluate(fake_ports, [sample(2, timeline=2, primary="node2")])
    (alert,) = _alerts(call, status="ACTIVE")
    assert alert["alertName"] == "failover" and "node1 -> node2" in alert["description"]
    assert "timeline 1 -> 2" in alert["description"]


def test_a_single_instance_restarted_after_a_crash_is_no_failover(call, fake_ports, instance) -> None:
    iid = instance["id"]
    before = _sample(fake_ports, iid, T0, timeline=1)
    down = _sample(fake_ports, iid, T0 + timedelta(minutes=1), before.data, up=False, timeline=None)
    rules.evaluate(fake_ports, [_sample(fake_ports, iid, T0 + timedelta(minutes=2), down.data, timeline=1)])
    assert _alerts(call, status="ACTIVE") == []


def test_tenant_overrides_a_rule_and_switching_it_off_resolves_it(call, fake_ports, instance) -> None:
    status, body = call("GET", f"{ALERTS}/rules")
    assert status == 200 and {r["name"] for r in body["rules"]} == set(rules.BY_NAME)
    status, rule = call("PUT", f"{ALERTS}/rules/deadlocks", {"threshold": 1})
    assert status == 200 and rule["threshold"] == 1 and rule["overridden"] == ["threshold"]
    s = _sample(fake_ports, instance["id"], T0, deadlocks_per_minute=2)
    rules.evaluate(fake_ports, [s])
    assert [a["alertName"] for a in _alerts(call, status="ACTIVE")] == ["deadlocks"]
    assert call("PUT", f"{ALERTS}/rules/deadlocks", {"enabled": False})[0] == 200
    rules.evaluate(
        fake_ports, [_sample(fake_ports, instance["id"], T0 + timedelta(minutes=1), deadlocks_per_minute=2)]
    )
    assert _alerts(call, status="ACTIVE") == []
    status, rule = call("PUT", f"{ALERTS}/rules/deadlocks", {"threshold": None, "enabled": None})
    assert rule["threshold"] == 5 and rule["enabled"] is True and rule["overridden"] == []
    # other tenants keep the defaults
    status, body = call("GET", f"{ALERTS}/rules", tenant="globex")
    assert next(r for r in body["rules"] if r["name"] == "deadlocks")["threshold"] == 5


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/alerts/rules/no_such_rule", {"threshold": 1}, 404),
        ("/alerts/rules/deadlocks", {"threshold": -1}, 422),
        ("/alerts/rules/deadlocks", {"severity": "HUGE"}, 422),
        ("/alerts/rules/deadlocks", {"bogus": 1}, 422),
    ],
)
def test_bad_rule_updates(call, fake_ports, path: str, body: dict, code: int) -> None:
    status, answer = call("PUT", f"/api/v1/monitoring{path}", body)
    assert status == code, answer
    assert fake_ports.store.get(rules.CONFIG_KIND, "acme") is None


def test_viewer_reads_rules_but_cannot_change_them(call) -> None:
    assert call("GET", f"{ALERTS}/rules", role="viewer")[0] == 200
    assert call("PUT", f"{ALERTS}/rules/deadlocks", {"threshold": 1}, role="viewer")[0] == 403


def test_platform_admin_names_the_tenant_of_rules(call) -> None:
    status, body = call("GET", f"{ALERTS}/rules", role="admin", tenant=None)
    assert status == 422 and body["error"]["details"]["field"] == "tenantId"
    assert call("GET", f"{ALERTS}/rules?tenantId=acme", role="admin", tenant=None)[0] == 200


def test_alerts_time_range(call, fake_ports, instance) -> None:
    record = fake_ports.store.get("instance", instance["id"])
    rules.reconciled_down(fake_ports, record, "instance", "no postmaster")
    assert len(_alerts(call, timeRange="1h")) == 1
    day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _alerts(call, timeRange=f"{day_ago}/{hour_ago}") == []
    status, body = call("GET", f"{ALERTS}?timeRange=400d")
    assert status == 422 and body["error"]["details"]["field"] == "timeRange"
    assert call("GET", f"{ALERTS}?timeRange=yesterday")[0] == 422


def test_bodiless_acknowledge_and_resolve(call, fake_ports, instance) -> None:
    record = fake_ports.store.get("instance", instance["id"])
    rules.reconciled_down(fake_ports, record, "instance", "no postmaster")
    (alert,) = _alerts(call)
    status, acked = call("POST", f"{ALERTS}/{alert['alertId']}/acknowledge")
    assert status == 200 and acked["status"] == "ACKNOWLEDGED" and acked["acknowledgedAt"]
    status, resolved = call("POST", f"{ALERTS}/{alert['alertId']}/resolve")
    assert status == 200 and resolved["status"] == "RESOLVED"
    status, body = call("POST", f"{ALERTS}/{alert['alertId']}/acknowledge")
    assert status == 409 and body["error"]["code"]
