"""Sections PERFORMANCE, MAINTENANCE, MONITORING and BACKUP of /api/v1/system/configuration: a
tenant's own settings, validated whole (nothing changes on a 422), scoped to one tenant,
audited with old and new values, and read by the code they steer the next time it runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.core import audit
from pgfleet.domains.archive import records, schedules
from pgfleet.domains.maintenance import cleanup, executions
from pgfleet.domains.monitoring import capture, rules
from pgfleet.domains.monitoring.samples import STREAM
from pgfleet.domains.performance import cache, indexes, queries
from pgfleet.domains.servers import Server
from pgfleet.domains.system import tenant_settings
from pgfleet.ports.history import HistoryRecord

C = "/api/v1/system/configuration"
INSTANCE = "pgi-0123456789ab"


def _put(call: Any, section: str, configuration: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    path = kw.pop("path", C)
    return call("PUT", path, {"section": section, "configuration": configuration, **kw.pop("body", {})}, **kw)


def _instance(fake_ports: Any, instance_id: str = INSTANCE, tenant: str = "acme") -> dict[str, Any]:
    return fake_ports.store.create("instance", {
        "id": instance_id, "tenant_id": tenant, "name": f"db-{instance_id[-4:]}", "status": "running",
        "desired_state": "running", "database": "app", "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip


# --- reading ---------------------------------------------------------------------------------------


def test_a_tenant_reads_todays_defaults_beside_database(call: Any) -> None:
    status, body = call("GET", C)
    assert status == 200 and body["tenantId"] == "acme" and body["database"] is None, body
    assert body["performance"] == {"slowQueryMs": 20.0, "indexBloatPercent": 30.0, "cacheHitTarget": 0.99}
    assert body["maintenance"] == {
        "vacuumCostDelayMs": 2,
        "maintenanceWorkMemMB": None,
        "idleConnectionDays": 1.0,
    }
    assert (
        body["monitoring"]["captureIntervalMinutes"] == 1 and body["monitoring"]["metricRetentionDays"] == 30
    )
    assert body["monitoring"]["alertThresholds"]["server_down"] == 2
    assert set(body["monitoring"]["alertThresholds"]) == set(rules.BY_NAME)
    assert body["backup"] == {"retentionDays": 7, "fullBackupCron": None, "incrementalBackupCron": None}
    assert call("GET", C, role="viewer")[0] == 200


def test_a_platform_token_names_the_tenant(call: Any) -> None:
    status, body = call("GET", C, role="admin", tenant=None)
    assert status == 200 and body["performance"] is None and "tenantId" in body["tenantNote"], body
    status, body = call("GET", f"{C}?tenantId=globex", role="admin", tenant=None)
    assert status == 200 and body["tenantId"] == "globex" and body["backup"]["retentionDays"] == 7, body
    status, body = _put(call, "BACKUP", {"retentionDays": 3}, role="admin", tenant=None)
    assert status == 422 and "tenantId" in body["error"]["message"], body
    status, body = _put(
        call, "BACKUP", {"retentionDays": 3}, path=f"{C}?tenantId=globex", role="admin", tenant=None
    )
    assert status == 200 and body["tenantId"] == "globex" and body["backup"]["retentionDays"] == 3, body
    assert call("GET", C)[1]["backup"]["retentionDays"] == 7  # acme's stay


def test_a_target_names_its_tenant(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports, tenant="globex")
    status, body = _put(call, "PERFORMANCE", {"slowQueryMs": 50}, body={"targetId": INSTANCE}, role="admin",
                        tenant=None)  # fmt: skip
    assert status == 200 and body["tenantId"] == "globex" and body["targetId"] is None, body
    assert (
        call("GET", f"{C}?tenantId=globex", role="admin", tenant=None)[1]["performance"]["slowQueryMs"] == 50
    )
    # a tenant token never reaches another tenant, by its id or by one of its servers
    assert call("GET", f"{C}?tenantId=globex")[0] == 404
    assert _put(call, "PERFORMANCE", {"slowQueryMs": 5}, body={"targetId": INSTANCE})[0] == 404
    assert _put(call, "PERFORMANCE", {"slowQueryMs": 5}, path=f"{C}?tenantId=globex")[0] == 404


# --- validating ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "configuration", "said"),
    [
        ("PERFORMANCE", {"slowQueryMs": 0}, "configuration.slowQueryMs"),
        ("PERFORMANCE", {"cacheHitTarget": 1.5}, "0.5 to 0.9999"),
        ("MAINTENANCE", {"vacuumCostDelayMs": 101}, "1 to 100"),
        ("MAINTENANCE", {"maintenanceWorkMemMB": "lots"}, "configuration.maintenanceWorkMemMB"),
        ("MONITORING", {"captureIntervalMinutes": 6}, "1 to 5"),
        ("MONITORING", {"metricRetentionDays": 31}, "1 to 30"),
        ("MONITORING", {"alertThresholds": {"cache_hit_ratio": 2}}, "0 to 1"),
        ("MONITORING", {"alertThresholds": {"no_such_rule": 1}}, "server_down"),
        ("BACKUP", {"retentionDays": 0}, "1 to 3650"),
        ("BACKUP", {"fullBackupCron": "every day"}, "configuration.fullBackupCron"),
    ],
)
def test_out_of_range_values_name_the_setting_and_what_it_allows(
    call: Any, section: str, configuration: dict[str, Any], said: str
) -> None:
    before = call("GET", C)[1]
    status, body = _put(call, section, {**configuration, "retentionDays": 9} if section == "BACKUP" and
                        "fullBackupCron" in configuration else configuration)  # fmt: skip
    assert status == 422 and said in body["error"]["message"] and "allowed" in body["error"]["message"], body
    assert call("GET", C)[1] == before  # nothing changed, not even the valid part


def test_an_unknown_setting_is_named_with_the_known_ones(call: Any) -> None:
    status, body = _put(call, "MAINTENANCE", {"vacuumCostDelayMs": 5, "autovacuumEverything": True})
    assert status == 422, body
    message = body["error"]["message"]
    assert "autovacuumEverything" in message and "vacuumCostDelayMs, maintenanceWorkMemMB" in message, body
    assert call("GET", C)[1]["maintenance"]["vacuumCostDelayMs"] == 2


def test_restart_options_belong_to_database_only(call: Any) -> None:
    for extra in (
        {"applyImmediately": True},
        {"applyImmediately": False},
        {"scheduleRestart": "2030-01-01T00:00:00Z"},
    ):
        status, body = _put(call, "MONITORING", {"captureIntervalMinutes": 2}, body=extra)
        assert status == 422 and "DATABASE" in body["error"]["message"], (extra, body)
    assert call("GET", C)[1]["monitoring"]["captureIntervalMinutes"] == 1


def test_viewers_read_but_never_change(call: Any) -> None:
    assert _put(call, "BACKUP", {"retentionDays": 3}, role="viewer")[0] == 403
    assert call("GET", C)[1]["backup"]["retentionDays"] == 7


# --- storing and auditing -------------------------------------------------------------------------


def test_a_change_is_partial_answers_new_values_and_is_audited(call: Any, fake_ports: Any) -> None:
    status, body = _put(call, "PERFORMANCE", {"slowQueryMs": 50, "index_bloat_percent": 40})
    assert status == 200 and body["section"] == "PERFORMANCE", body
    assert body["performance"] == {"slowQueryMs": 50.0, "indexBloatPercent": 40.0, "cacheHitTarget": 0.99}
    assert body["applied"] == {"slowQueryMs": 50.0, "indexBloatPercent": 40.0}
    assert body["previous"] == {"slowQueryMs": 20.0, "indexBloatPercent": 30.0}
    assert body["pendingRestart"] == [] and body["operationId"] is None
    status, body = _put(
        call, "PERFORMANCE", {"cacheHitTarget": 0.95, "slowQueryMs": None}
    )  # null: the default
    assert status == 200 and body["performance"] == {"slowQueryMs": 20.0, "indexBloatPercent": 40.0,
                                                      "cacheHitTarget": 0.95}, body  # fmt: skip
    end = datetime.now(UTC) + timedelta(seconds=1)
    page = fake_ports.history.query("audit", start=end - timedelta(minutes=5), end=end, page_size=50)
    changes = [r.data["details"]["changes"] for r in page.items if r.data["action"] == "system.configuration"]
    assert {
        "slowQueryMs": {"old": 50.0, "new": 20.0},
        "cacheHitTarget": {"old": 0.99, "new": 0.95},
    } in changes
    assert {
        "slowQueryMs": {"old": 20.0, "new": 50.0},
        "indexBloatPercent": {"old": 30.0, "new": 40.0},
    } in changes
    assert all(r.tenant_id == "acme" for r in page.items if r.data["action"] == "system.configuration")


# --- what each section steers ---------------------------------------------------------------------


def test_backup_retention_and_default_schedule_reach_backups_and_new_resources(
    call: Any, fake_ports: Any
) -> None:
    resource = _instance(fake_ports)
    assert records.retention_for(fake_ports, resource) == timedelta(days=7)
    assert schedules.apply_tenant_default(fake_ports, resource) is None  # no default: no schedule, as before
    status, body = _put(call, "BACKUP", {"retentionDays": 3, "fullBackupCron": "0 3 * * ? *"})
    assert status == 200 and body["backup"]["fullBackupCron"] == "cron(0 3 * * ? *)", body
    assert records.retention_for(fake_ports, resource) == timedelta(days=3)
    said = schedules.apply_tenant_default(fake_ports, resource)
    assert said and "cron(0 3 * * ? *)" in said, said
    view = schedules.get(fake_ports, resource)
    assert view["full_backup_cron"] == "cron(0 3 * * ? *)" and view["retention_days"] == 3 and view["enabled"]
    scheduled = fake_ports.scheduler.get(schedules.schedule_name(INSTANCE, "full"))
    assert scheduled is not None and scheduled.expression == "cron(0 3 * * ? *)"
    # the resource's own schedule wins over the tenant's default from then on
    fake_ports.store.update(schedules.KIND, INSTANCE, {"retention_days": 10})
    assert records.retention_for(fake_ports, resource) == timedelta(days=10)
    assert schedules.apply_tenant_default(fake_ports, resource) is None


def test_monitoring_interval_retention_and_thresholds(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    server = Server("instance", fake_ports.store.get("instance", INSTANCE))
    now = datetime.now(UTC)
    fake_ports.history.append(
        STREAM, [HistoryRecord(STREAM, INSTANCE, "acme", now - timedelta(minutes=2), {"up": True})]
    )
    assert capture.due(fake_ports, server, capture.capture_interval(fake_ports, "acme"), now)
    status, body = _put(call, "MONITORING", {"captureIntervalMinutes": 5, "metricRetentionDays": 7,
                                             "alertThresholds": {"replication_lag_seconds": 60}})  # fmt: skip
    assert status == 200 and body["monitoring"]["alertThresholds"]["replication_lag_seconds"] == 60, body
    assert body["previous"]["alertThresholds.replication_lag_seconds"] == 30
    assert not capture.due(fake_ports, server, capture.capture_interval(fake_ports, "acme"), now)
    assert capture.due(fake_ports, server, 5, now + timedelta(minutes=3))
    actions = capture.scheduled_capture(fake_ports, {"task": capture.CAPTURE_TASK})
    assert actions[0].startswith("sampled 0 server(s)") and "1 not due yet" in actions[0], actions
    # the rules' own store holds the threshold: the alert rule endpoint and the evaluation see it
    assert rules.rules_of(fake_ports, "acme")["replication_lag_seconds"]["threshold"] == 60
    assert call("GET", "/api/v1/monitoring/alerts/rules")[0] == 200
    # new samples are kept for the tenant's retention
    assert _put(call, "MONITORING", {"captureIntervalMinutes": 1})[0] == 200
    capture.scheduled_capture(fake_ports, {"task": capture.CAPTURE_TASK})
    end = datetime.now(UTC) + timedelta(seconds=1)
    page = fake_ports.history.query(STREAM, start=end - timedelta(minutes=1), end=end, page_size=5)
    assert page.items and all(r.ttl_seconds == 7 * 86400 for r in page.items)
    assert cleanup.for_task(fake_ports, "acme")["status"] == "COMPLETED"


def test_performance_thresholds_reach_the_analyses(call: Any, fake_ports: Any) -> None:
    statement = queries.Counters(query_id="1", query="SELECT 1", calls=500, total_ms=500 * 30.0, min_ms=None,
                                 max_ms=None, rows=500, blks_hit=0, blks_read=0, temp_written=0, database="app",
                                 role="app")  # fmt: skip
    assert statement.mean_ms == 30.0
    assert queries.rating(statement, 0.0, queries.slow_ms(fake_ports, "acme")) == "POOR"
    assert (
        _put(call, "PERFORMANCE", {"slowQueryMs": 50, "indexBloatPercent": 60, "cacheHitTarget": 0.9})[0]
        == 200
    )
    assert queries.rating(statement, 0.0, queries.slow_ms(fake_ports, "acme")) == "GOOD"
    assert queries.slow_ms(fake_ports, "globex") == queries.SLOW_MS
    assert indexes.bloat_threshold(fake_ports, "acme") == 60
    goal = cache.hit_target(fake_ports, "acme")
    mb = 1024 * 1024
    # a full cache at 0.95: under the default goal (grow shared_buffers), not under the tenant's 0.9
    assert cache.cache_recommendations(INSTANCE, 1024, 128 * mb, 768 * mb, 0.95, 16000, 16384)
    assert cache.cache_recommendations(INSTANCE, 1024, 128 * mb, 768 * mb, 0.95, 16000, 16384, goal) == []


def test_maintenance_defaults_reach_runs_and_cleanup(call: Any, fake_ports: Any) -> None:
    limited = {"resource_limits": {"io_limit_mbps": 10}}
    assert ("vacuum_cost_delay", "2") in executions._limits(
        limited, executions.tenant_defaults(fake_ports, "acme")
    )[0]
    assert executions._limits({}, executions.tenant_defaults(fake_ports, "acme"))[0] == []
    assert cleanup.idle_connection_days(fake_ports, "acme") == 1.0
    body = {"vacuumCostDelayMs": 10, "maintenanceWorkMemMB": 256, "idleConnectionDays": 0.5}
    assert _put(call, "MAINTENANCE", body)[0] == 200
    defaults = executions.tenant_defaults(fake_ports, "acme")
    settings, said = executions._limits(limited, defaults)
    assert ("vacuum_cost_delay", "10") in settings and ("vacuum_cost_limit", "26") in settings, settings
    assert ("maintenance_work_mem", "256MB") in settings and "maintenance_work_mem 256 MB" in said
    # a run's own memoryLimitMB wins over the tenant's default
    assert ("maintenance_work_mem", "64MB") in executions._limits(
        {"resource_limits": {"memory_limit_mb": 64}}, defaults
    )[0]
    assert cleanup.idle_connection_days(fake_ports, "acme") == 0.5
    assert cleanup.idle_connection_days(fake_ports, None) == 1.0


def test_audit_keeps_the_values_and_no_secret(call: Any, fake_ports: Any) -> None:
    """Settings are no secrets: their names must not look like one to the audit's redaction."""
    for section, model in tenant_settings.MODELS.items():
        for field in model.model_fields:
            assert audit.redact({field: 1}) == {field: 1}, (section, field)
    assert _put(call, "MAINTENANCE", {"idleConnectionDays": 2})[0] == 200
    end = datetime.now(UTC) + timedelta(seconds=1)
    page = fake_ports.history.query("audit", start=end - timedelta(minutes=5), end=end, page_size=50)
    changes = [r.data["details"]["changes"] for r in page.items if r.data["action"] == "system.configuration"]
    assert changes == [{"idleConnectionDays": {"old": 1.0, "new": 2.0}}], changes
