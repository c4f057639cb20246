"""Quotas, alerts, resize and pause/resume through the api handler and the scheduled
handler, with fake ports below the domains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgfleet.ports.database_admin import ServerUsage, TenantUsage

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
ALERTS = "/api/v1/monitoring/alerts"
MB = 2**20
ALERT_FIELDS = {
    "alertId", "alertName", "severity", "status", "category", "description", "triggeredAt",
    "acknowledgedAt", "resolvedAt", "assignedTo", "metricValue", "threshold", "actions",
}  # fmt: skip


@pytest.fixture
def instance(call, fake_ports) -> dict:
    status, body = call("POST", SINGLE, {"name": "orders-db"})
    assert status == 202, body
    fake_ports.drain()
    return body


def _usage(databases_mb: float, wal_mb: float = 16, by_role: dict[str, int] | None = None) -> ServerUsage:
    roles = by_role or {}
    return ServerUsage(int(databases_mb * MB), int(wal_mb * MB), sum(roles.values()), roles)


def _quotas_task(fake_ports) -> list[str]:
    from pgfleet.handlers.scheduled import lambda_handler

    result = lambda_handler({"detail": {"task": "quotas"}}, None)
    assert result["task"] == "quotas"
    return result["actions"]


def test_the_quotas_task_is_scheduled_every_minute(fake_ports):
    from pgfleet.handlers.domains import platform_schedules
    from pgfleet.handlers.scheduled import TASKS

    schedule = next(s for s in platform_schedules() if s.payload == {"task": "quotas"})
    assert schedule.expression == "rate(1 minute)" and "quotas" in TASKS


def test_quota_suspends_and_restores_writes_and_raises_alerts(call, fake_ports, instance):
    iid = instance["id"]
    assert call("POST", f"{SINGLE}/{iid}/tenants", {"tenant_id": "tenant-a"})[0] == 201
    admin = fake_ports.engine.admins[iid]
    body = {
        "max_storage_mb": 100,
        "max_connections": 20,
        "alert_thresholds": {"storage_percent": 80, "connections_percent": 50},
    }
    status, quota = call("PUT", f"{SINGLE}/{iid}/quota", body)
    assert status == 200, quota
    assert quota["writes_suspended"] is False and quota["usage"]["storage_mb"] == 8.0
    assert admin.role_limits["app_admin"] == 20

    admin.server = _usage(90, by_role={"app_admin": 12})  # 90% storage, 60% connections
    _quotas_task(fake_ports)
    _, listing = call("GET", ALERTS)
    assert {a["alertName"] for a in listing["alerts"]} == {"StorageQuotaWarning", "ConnectionQuotaWarning"}
    assert all(ALERT_FIELDS <= set(a) for a in listing["alerts"])
    assert listing["summary"]["active"] == 2 and listing["pagination"]["totalItems"] == 2
    _quotas_task(fake_ports)  # the same condition does not pile up alerts
    assert call("GET", ALERTS)[1]["pagination"]["totalItems"] == 2

    admin.server = _usage(120)
    lines = _quotas_task(fake_ports)
    assert any("writes suspended" in line for line in lines), lines
    assert admin.owner_writes[("app", "app_admin")] is False
    assert admin.tenants["tenant-a"]["writes"] is False  # the server is full: tenants stop too
    _, quota = call("GET", f"{SINGLE}/{iid}/quota")
    assert quota["writes_suspended"] is True and "over the quota of 100 MB" in quota["status_reason"]
    _, exceeded = call("GET", f"{ALERTS}?status=ACTIVE&severity=HIGH")
    [alert] = exceeded["alerts"]
    assert alert["alertName"] == "StorageQuotaExceeded" and alert["metricValue"] == 120.0
    assert alert["threshold"] == 100.0 and alert["actions"][0]["path"].endswith("/quota")

    admin.server = _usage(50)
    lines = _quotas_task(fake_ports)
    assert admin.owner_writes[("app", "app_admin")] is True and admin.tenants["tenant-a"]["writes"] is True
    assert any("resolved" in line for line in lines)
    _, resolved = call("GET", f"{ALERTS}?status=RESOLVED")
    assert {a["alertName"] for a in resolved["alerts"]} >= {"StorageQuotaExceeded", "StorageQuotaWarning"}
    assert all(a["resolvedAt"] for a in resolved["alerts"])


def test_the_storage_size_limits_the_data_directory(call, fake_ports, instance):
    iid = instance["id"]
    admin = fake_ports.engine.admins.setdefault(iid, fake_ports.engine.database_admin(iid))
    admin.server = _usage(9000, wal_mb=2000)  # 10.7 GB in a 10 GB instance
    _quotas_task(fake_ports)
    assert admin.owner_writes[("app", "app_admin")] is False
    _, alerts = call("GET", f"{ALERTS}?severity=CRITICAL")
    assert [a["alertName"] for a in alerts["alerts"]] == ["StorageLimitExceeded"]


def test_a_tenant_over_its_own_quota_is_suspended_alone(call, fake_ports, instance):
    iid = instance["id"]
    path = f"{SINGLE}/{iid}/tenants"
    assert call("POST", path, {"tenant_id": "small", "quota": {"max_storage_mb": 10}})[0] == 201
    assert call("POST", path, {"tenant_id": "big"})[0] == 201
    admin = fake_ports.engine.admins[iid]
    admin.usage["small"] = TenantUsage(12 * MB, 1)
    admin.usage["big"] = TenantUsage(500 * MB, 3)
    lines = _quotas_task(fake_ports)
    assert any("tenant small: writes suspended" in line for line in lines), lines
    assert admin.tenants["small"]["writes"] is False and admin.tenants["big"]["writes"] is True
    listed = {t["tenant_id"]: t for t in call("GET", path)[1]["tenants"]}
    assert (
        listed["small"]["writes_suspended"] is True
        and "over its quota of 10 MB" in listed["small"]["status_reason"]
    )
    assert listed["small"]["quota_used"] == {"storage_mb": 12.0, "connections": 1}
    assert any(a["alertName"] == "TenantStorageQuotaExceeded:small" for a in call("GET", ALERTS)[1]["alerts"])
    admin.usage["small"] = TenantUsage(3 * MB, 1)
    _quotas_task(fake_ports)
    assert admin.tenants["small"]["writes"] is True


def test_a_deleted_instance_leaves_no_tenants_quotas_or_open_alerts(call, fake_ports, instance):
    iid = instance["id"]
    assert call("POST", f"{SINGLE}/{iid}/tenants", {"tenant_id": "tenant-a"})[0] == 201
    call("PUT", f"{SINGLE}/{iid}/quota", {"max_storage_mb": 1})  # raises an alert
    assert call("DELETE", f"{SINGLE}/{iid}")[0] == 202
    fake_ports.drain()
    for (kind, _), record in fake_ports.store.records.items():  # older than the sweep's grace
        if kind in ("tenant", "quota"):
            record["created_at"] = "2020-01-01T00:00:00.000Z"
    lines = _quotas_task(fake_ports)
    assert any("forgot its tenant tenant-a" in line for line in lines), lines
    assert not [k for k, _ in fake_ports.store.records if k in ("tenant", "quota")]
    assert not any(name.startswith("tenants/") for name in fake_ports.secrets.values)
    assert call("GET", f"{ALERTS}?status=ACTIVE")[1]["alerts"] == []


def test_quota_rbac_validation_and_scoping(call, fake_ports, instance):
    iid = instance["id"]
    assert call("PUT", f"{SINGLE}/{iid}/quota", {"max_connections": 5}, role="viewer")[0] == 403
    assert call("GET", f"{SINGLE}/{iid}/quota", role="viewer")[0] == 200
    assert call("PUT", f"{SINGLE}/{iid}/quota", {"max_connections": 5}, tenant="globex")[0] == 404
    for bad in ({"max_connections": 0}, {"alert_thresholds": {"storage_percent": 101}}, {"nonsense": 1},
                {"auto_pause_after_minutes": 0}):  # fmt: skip
        assert call("PUT", f"{SINGLE}/{iid}/quota", bad)[0] == 422, bad


def test_alerts_are_scoped_acknowledged_and_resolved(call, fake_ports, instance):
    iid = instance["id"]
    call("PUT", f"{SINGLE}/{iid}/quota", {"max_storage_mb": 1})
    _, listing = call("GET", ALERTS, role="viewer")
    [alert] = listing["alerts"]
    assert call("GET", ALERTS, tenant="globex")[1]["alerts"] == []
    assert call("GET", f"{ALERTS}?tenantId=acme", tenant="globex")[1]["alerts"] == []
    assert len(call("GET", f"{ALERTS}?tenantId=acme", role="admin", tenant=None)[1]["alerts"]) == 1
    ack = f"{ALERTS}/{alert['alertId']}/acknowledge"
    assert call("POST", ack, {"assignTo": "dba-oncall"}, role="viewer")[0] == 403
    assert call("POST", ack, {"assignTo": "dba-oncall"}, tenant="globex")[0] == 404
    status, acked = call("POST", ack, {"assignTo": "dba-oncall", "acknowledgmentNote": "looking"})
    assert status == 200 and acked["status"] == "ACKNOWLEDGED" and acked["assignedTo"] == "dba-oncall"
    assert acked["acknowledgedAt"]
    resolve = f"{ALERTS}/{alert['alertId']}/resolve"
    assert call("POST", resolve, {"resolutionNote": ""})[0] == 422  # a note, when given, says something
    status, done = call("POST", resolve, {"resolutionNote": "raised the quota", "rootCause": "growth"})
    assert status == 200 and done["status"] == "RESOLVED" and done["resolvedAt"]
    assert call("POST", resolve, {"resolutionNote": "again"})[0] == 409
    assert call("GET", f"{ALERTS}?status=BOGUS")[0] == 422
    assert call("GET", f"{ALERTS}?pageSize=0")[0] == 422


def test_resize_restarts_with_new_settings_and_limits(call, fake_ports, instance):
    iid = instance["id"]
    status, body = call("POST", f"{SINGLE}/{iid}/resize", {"cpu": 2, "memory": 2048, "storage": 20})
    assert status == 202 and body["status"] == "resizing" and body["operation_id"]
    fake_ports.drain()
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert (got["status"], got["cpu"], got["memory"], got["storage"]) == ("running", 2, 2048, 20)
    assert "enforced" in got["status_reason"]
    assert fake_ports.engine.limits[iid] == (2048, 2)
    _, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    assert [s["name"] for s in op["steps"]] == [
        "reconfigure",
        "restart",
        "apply_limits",
        "enforce_storage",
        "mark_running",
    ]


def test_resize_validation_and_shrink_below_usage_is_409(call, fake_ports, instance):
    iid = instance["id"]
    for bad in ({}, {"cpu": 0}, {"memory": 100}, {"storage": 0}, {"disk": 5}):
        assert call("POST", f"{SINGLE}/{iid}/resize", bad)[0] == 422, bad
    assert call("POST", f"{SINGLE}/{iid}/resize", {"cpu": 2}, role="viewer")[0] == 403
    assert call("POST", f"{SINGLE}/{iid}/resize", {"cpu": 2}, tenant="globex")[0] == 404
    fake_ports.engine.database_admin(iid).server = _usage(1500, wal_mb=100)  # 1.6 GB in use
    status, body = call("POST", f"{SINGLE}/{iid}/resize", {"storage": 1})
    assert status == 409 and body["error"]["code"] == "invalid_state"
    assert body["error"]["details"]["storage_in_use_mb"] == 1600.0
    assert call("GET", f"{SINGLE}/{iid}")[1]["storage"] == 10
    assert call("POST", f"{SINGLE}/{iid}/resize", {"storage": 2})[0] == 202  # still above usage
    assert call("POST", f"{SINGLE}/{iid}/resize", {"storage": 3})[0] == 409  # busy resizing


def test_cluster_resize_is_rolling(call, fake_ports):
    _, cluster = call("POST", CLUSTERS, {"name": "ha-db"})
    fake_ports.drain()
    cid = cluster["id"]
    engine = fake_ports.cluster_engine
    assert engine.leader[cid] == "n1"
    status, body = call("POST", f"{CLUSTERS}/{cid}/resize", {"memory": 2048})
    assert status == 202 and body["status"] == "resizing"
    fake_ports.drain()
    # replicas first, then a switchover, then the old primary
    assert engine.restarts == [(cid, "n2"), (cid, "n3"), (cid, "n1")]
    assert engine.leader[cid] != "n1" and engine.reconfigured[-1].memory_mb == 2048
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "running" and got["memory"] == 2048 and got["primary"] != "n1"
    # storage only: no restart at all
    status, _ = call("POST", f"{CLUSTERS}/{cid}/resize", {"storage": 20})
    fake_ports.drain()
    assert len(engine.restarts) == 3 and call("GET", f"{CLUSTERS}/{cid}")[1]["storage"] == 20


def test_a_one_node_cluster_resize_restarts_its_only_node(call, fake_ports):
    _, cluster = call("POST", CLUSTERS, {"name": "solo-db", "node_count": 1})
    fake_ports.drain()
    assert call("POST", f"{CLUSTERS}/{cluster['id']}/resize", {"cpu": 4})[0] == 202
    fake_ports.drain()
    assert fake_ports.cluster_engine.restarts == [(cluster["id"], "n1")]
    assert call("GET", f"{CLUSTERS}/{cluster['id']}")[1]["status"] == "running"


def test_pause_and_resume_and_reconcile_leaves_paused_alone(call, fake_ports, instance):
    from pgfleet.domains.reconcile import service as reconcile

    iid = instance["id"]
    assert call("POST", f"{SINGLE}/{iid}/pause", role="viewer")[0] == 403
    status, body = call("POST", f"{SINGLE}/{iid}/pause")
    assert status == 202 and body["status"] == "pausing"
    fake_ports.drain()
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["status"] == "paused" and got["endpoint"] == instance["endpoint"]
    assert fake_ports.engine.servers[iid]["running"] is False and iid not in fake_ports.engine.limits
    assert any(k.startswith("port#") for k in fake_ports.store.claims)  # the endpoint stays reserved
    for action in ("start", "stop", "restart", "pause", "resize"):
        assert call("POST", f"{SINGLE}/{iid}/{action}", {"cpu": 2} if action == "resize" else None)[0] == 409
    reconcile.run(fake_ports)
    _quotas_task(fake_ports)
    assert fake_ports.engine.servers[iid]["running"] is False
    assert call("POST", f"{SINGLE}/{iid}/resume")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{SINGLE}/{iid}")[1]["status"] == "running"
    assert fake_ports.engine.servers[iid]["running"] is True and iid in fake_ports.engine.limits


def test_a_cluster_pauses_and_resumes(call, fake_ports):
    _, cluster = call("POST", CLUSTERS, {"name": "ha-db"})
    fake_ports.drain()
    cid = cluster["id"]
    assert call("POST", f"{CLUSTERS}/{cid}/pause")[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "paused" and got["primary"] is None
    assert not any(n["running"] for n in fake_ports.cluster_engine.nodes[cid].values())
    assert call("POST", f"{CLUSTERS}/{cid}/resume")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{CLUSTERS}/{cid}")[1]["status"] == "running"


def _age(fake_ports, iid: str, minutes: int) -> None:
    """Pretend the instance and its quota were last touched `minutes` ago."""
    past = (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    fake_ports.store.records[("instance", iid)]["updated_at"] = past
    fake_ports.store.records[("quota", iid)]["updated_at"] = past
    fake_ports.store.records[("quota", iid)].pop("last_client_seen_at", None)


def test_auto_pause_after_idle_minutes(call, fake_ports, instance):
    iid = instance["id"]
    status, quota = call("PUT", f"{SINGLE}/{iid}/quota", {"auto_pause_after_minutes": 5})
    assert status == 200 and quota["auto_pause_after_minutes"] == 5
    _quotas_task(fake_ports)  # just set: not idle long enough
    assert call("GET", f"{SINGLE}/{iid}")[1]["status"] == "running"
    admin = fake_ports.engine.admins[iid]
    _age(fake_ports, iid, 10)
    admin.server = _usage(8, by_role={"app_admin": 1})  # someone is connected
    _quotas_task(fake_ports)
    assert call("GET", f"{SINGLE}/{iid}")[1]["status"] == "running"
    _age(fake_ports, iid, 10)
    admin.server = _usage(8)
    lines = _quotas_task(fake_ports)
    assert any("pausing" in line for line in lines), lines
    _, pausing = call("GET", f"{SINGLE}/{iid}")
    assert pausing["status"] == "pausing" and "auto-pause after 10 idle minute(s)" in pausing["status_reason"]
    fake_ports.drain()
    _, got = call("GET", f"{SINGLE}/{iid}")
    assert got["status"] == "paused"
    assert call("GET", f"/api/v1/operations/{got['operation_id']}")[1]["type"] == "instance.pause"


def test_openapi_lists_the_new_paths(call):
    status, spec = call("GET", "/api/v1/openapi.json", role=None)
    assert status == 200
    from openapi_spec_validator import validate

    validate(spec)
    for path in (
        "/api/v1/postgres/single/{resource_id}/tenants",
        "/api/v1/postgres/cluster/{resource_id}/tenants/{tenant_id}",
        "/api/v1/postgres/cluster/{resource_id}/quota",
        "/api/v1/postgres/single/{resource_id}/resize",
        "/api/v1/postgres/cluster/{resource_id}/pause",
        "/api/v1/monitoring/alerts",
    ):
        assert path in spec["paths"], path
