"""Metrics, health and the performance dashboard through the api handler, on samples the
history holds (the capture that writes them runs against real servers in
tests/integration/test_monitoring_capture.py): aggregation, statuses, trends, scope, 422s;
and the capture's rates and scheduling on fake ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains import servers
from pgfleet.domains.monitoring import capture, dashboard, metrics
from pgfleet.domains.monitoring.samples import STREAM
from pgfleet.ports.history import HistoryRecord

INSTANCE = "pgi-0123456789ab"
OTHER = "pgi-ba9876543210"


def _data(**values: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict.fromkeys(capture.KEYS)
    data.update(up=True, status="running", replication=[], connections_total=10, connections_max=100)
    data.update(values)
    return data


def _instance(
    fake_ports: Any, instance_id: str = INSTANCE, tenant: str = "acme", status: str = "running"
) -> None:
    fake_ports.store.create("instance", {
        "id": instance_id, "tenant_id": tenant, "name": f"db-{instance_id[-4:]}", "status": status,
        "desired_state": "running" if status != "stopped" else "stopped", "database": "app",
        "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip


def _sample(at: datetime, target: str = INSTANCE, tenant: str = "acme", **values: Any) -> HistoryRecord:
    return HistoryRecord(STREAM, target, tenant, at, _data(**values))


@pytest.fixture
def minute() -> datetime:
    """The start of a minute bucket a few minutes back."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=10)


# --- the thresholds table ---------------------------------------------------------------------


def test_statuses_follow_the_direction_of_each_metric() -> None:
    hit = metrics.BY_NAME["cache_hit_ratio"]  # lower is worse
    assert [hit.status(v) for v in (0.99, 0.95, 0.85)] == ["NORMAL", "WARNING", "CRITICAL"]
    used = metrics.BY_NAME["connections_used_percent"]  # higher is worse
    assert [used.status(v) for v in (50, 80, 96)] == ["NORMAL", "WARNING", "CRITICAL"]
    assert metrics.BY_NAME["replication_lag_seconds_max"].status(45) == "WARNING"
    assert metrics.BY_NAME["rollback_ratio"].status(0.2) == "WARNING"
    assert metrics.BY_NAME["xid_remaining"].status(4e8) == "CRITICAL"
    assert metrics.BY_NAME["commits_per_second"].status(1e6) is None  # no threshold: no status
    assert {m.category for m in metrics.METRICS} <= {"PERFORMANCE", "AVAILABILITY", "SECURITY", "COMPLIANCE"}


def test_trend_is_a_least_squares_slope_against_the_good_direction() -> None:
    hit = metrics.BY_NAME["cache_hit_ratio"]
    falling = [(60.0 * i, 0.99 - 0.004 * i) for i in range(60)]
    direction, percent = metrics.trend(hit, falling, 3600)
    assert direction == "DEGRADING" and percent is not None and percent < -5
    lag = metrics.BY_NAME["replication_lag_seconds_max"]
    assert metrics.trend(lag, [(60.0 * i, 100 - i) for i in range(60)], 3600)[0] == "IMPROVING"
    flat = [(60.0 * i, 50 + (i % 2) * 0.5) for i in range(60)]
    assert metrics.trend(lag, flat, 3600)[0] == "STABLE"
    assert metrics.trend(lag, [(0.0, 5.0)], 3600) == ("STABLE", None)  # one point: no line


# --- GET /metrics -----------------------------------------------------------------------------


def test_minute_series_are_means_with_statuses_and_lags_keep_their_peak(
    call: Any, fake_ports: Any, minute: datetime
) -> None:
    _instance(fake_ports)
    fake_ports.history.append(STREAM, [
        _sample(minute + timedelta(seconds=5), cache_hit_ratio=0.99, replication_lag_seconds_max=10.0, commits_per_second=100.0),
        _sample(minute + timedelta(seconds=35), cache_hit_ratio=0.95, replication_lag_seconds_max=40.0, commits_per_second=200.0),
        _sample(minute + timedelta(seconds=65), cache_hit_ratio=0.80, replication_lag_seconds_max=1.0, commits_per_second=50.0),
    ])  # fmt: skip
    status, body = call(
        "GET",
        f"/api/v1/monitoring/metrics?targetId={INSTANCE}&timeRange=1h&aggregation=MINUTE",
        role="viewer",
    )
    assert status == 200, body
    assert body["aggregation"] == "MINUTE" and set(body["timeRange"]) == {"start", "end"}
    series = {s["name"]: s for s in body["metrics"]}
    hit = series["cache_hit_ratio"]
    assert hit["category"] == "PERFORMANCE" and hit["unit"] == "ratio" and hit["targetId"] == INSTANCE
    assert [(p["value"], p["status"]) for p in hit["dataPoints"]] == [(0.97, "WARNING"), (0.8, "CRITICAL")]
    assert hit["dataPoints"][0]["timestamp"] == metrics.iso(minute)
    lag = series["replication_lag_seconds_max"]
    assert [(p["value"], p["status"]) for p in lag["dataPoints"]] == [(40.0, "WARNING"), (1.0, "NORMAL")]
    assert [p["value"] for p in series["commits_per_second"]["dataPoints"]] == [150.0, 50.0]
    assert "status" not in series["commits_per_second"]["dataPoints"][0] or (
        series["commits_per_second"]["dataPoints"][0]["status"] is None
    )
    assert [p["value"] for p in series["up"]["dataPoints"]] == [1.0, 1.0]


def test_hour_aggregation_category_and_scope(call: Any, fake_ports: Any, minute: datetime) -> None:
    _instance(fake_ports)
    _instance(fake_ports, OTHER, tenant="globex")
    hour = minute.replace(minute=0) - timedelta(hours=2)
    fake_ports.history.append(STREAM, [
        *(_sample(hour + timedelta(minutes=i), up=i % 4 != 0) for i in range(60)),
        _sample(hour + timedelta(minutes=5), target=OTHER, tenant="globex"),
    ])  # fmt: skip
    status, body = call(
        "GET", "/api/v1/monitoring/metrics?category=AVAILABILITY&timeRange=6h&aggregation=HOUR"
    )
    assert status == 200, body
    assert {s["category"] for s in body["metrics"]} == {"AVAILABILITY"}
    assert {s["targetId"] for s in body["metrics"]} == {INSTANCE}  # acme's token: acme's servers only
    up = next(s for s in body["metrics"] if s["name"] == "up")
    assert up["dataPoints"] == [{"timestamp": metrics.iso(hour), "value": 0.75, "status": "WARNING"}]
    status, body = call("GET", "/api/v1/monitoring/metrics?timeRange=6h", role="admin", tenant=None)
    assert status == 200 and {s["targetId"] for s in body["metrics"]} == {INSTANCE, OTHER}
    assert body["aggregation"] == "MINUTE"
    status, body = call("GET", "/api/v1/monitoring/metrics?category=SECURITY&timeRange=6h")
    assert status == 200 and body["metrics"] == []
    assert call("GET", f"/api/v1/monitoring/metrics?targetId={OTHER}")[0] == 404
    assert call("GET", "/api/v1/monitoring/metrics?tenantId=globex")[0] == 404


@pytest.mark.parametrize(
    "query",
    [
        "timeRange=40d",  # past the 30-day retention
        "timeRange=2026-12-02T10:00:00Z/2026-12-02T09:00:00Z",  # ends before it starts
        "timeRange=yesterday",
        "timeRange=20d&aggregation=MINUTE",  # more than a week of minutes a series
        "aggregation=WEEK",
        "category=COST",
        "targetId=pgx-0123",
    ],
)
def test_bad_queries_are_422(call: Any, fake_ports: Any, query: str) -> None:
    status, body = call("GET", f"/api/v1/monitoring/metrics?{query}")
    assert status == 422, body


def test_permission_is_monitoring_read(call: Any, fake_ports: Any) -> None:
    for path in ("/metrics", "/health", "/performance/dashboard"):
        assert call("GET", f"/api/v1/monitoring{path}", role="compliance_officer")[0] == 403
        assert call("GET", f"/api/v1/monitoring{path}", role=None)[0] == 401
        assert call("GET", f"/api/v1/monitoring{path}", role="user")[0] == 200


# --- GET /health ------------------------------------------------------------------------------


def test_health_components_from_the_newest_sample_with_trends(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    _instance(fake_ports, "pgi-000000000001")  # running, never sampled
    _instance(fake_ports, "pgi-000000000002", status="stopped")
    now = datetime.now(UTC)
    fake_ports.history.append(STREAM, [
        _sample(now - timedelta(minutes=59 - i), cache_hit_ratio=0.999 - 0.002 * i, connections_total=90)
        for i in range(60)
    ])  # fmt: skip
    status, body = call("GET", "/api/v1/monitoring/health")
    assert status == 200, body
    components = {c["component"]: c for c in body["components"]}
    server = components[f"server:{INSTANCE}"]
    assert server["status"] == "CRITICAL" and server["targetId"] == INSTANCE  # hit ratio 0.881 < 0.90
    found = {m["name"]: m for m in server["metrics"]}
    assert found["cache_hit_ratio"]["trend"] == "DEGRADING"
    assert found["cache_hit_ratio"]["threshold"] == {"warning": 0.98, "critical": 0.9}
    assert (
        found["connections_used_percent"]["value"] == 90.0
        and found["connections_used_percent"]["trend"] == "STABLE"
    )
    assert found["up"]["value"] == 1.0
    assert components["server:pgi-000000000001"]["status"] == "UNKNOWN"
    assert "stopped" in components["server:pgi-000000000002"]["message"]
    # a tenant's token sees the control plane as one component
    assert components["control-plane"]["metrics"] == [] and "queue" not in components
    assert body["overall"] == "CRITICAL" and body["lastUpdated"]


def test_health_of_a_down_server_and_of_the_control_plane(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    now = datetime.now(UTC)
    fake_ports.history.append(STREAM, [_sample(now - timedelta(minutes=1), up=False, error="connection refused",
                                               connections_total=None, connections_max=None)])  # fmt: skip
    fake_ports.scheduler.put(capture.CAPTURE_SCHEDULE)
    status, body = call("GET", "/api/v1/monitoring/health", role="admin", tenant=None)
    assert status == 200, body
    components = {c["component"]: c for c in body["components"]}
    assert components[f"server:{INSTANCE}"]["status"] == "CRITICAL"
    assert "connection refused" in components[f"server:{INSTANCE}"]["message"]
    assert {"queue", "metadata", "history", "scheduler"} <= set(components)
    assert components["scheduler"]["status"] == "HEALTHY", components["scheduler"]
    assert components["queue"]["metrics"][0]["threshold"] == {"warning": 100.0, "critical": 1000.0}


def test_health_scheduler_warns_when_the_capture_schedule_is_missing(call: Any, fake_ports: Any) -> None:
    status, body = call("GET", "/api/v1/monitoring/health", role="admin", tenant=None)
    assert status == 200
    scheduler = next(c for c in body["components"] if c["component"] == "scheduler")
    assert scheduler["status"] == "WARNING" and "missing" in scheduler["message"]


# --- GET /performance/dashboard ---------------------------------------------------------------


def test_ratings_follow_pghero_slow_queries() -> None:
    assert dashboard.rating(25.0, 150) == "POOR"  # PgHero: slow from 20 ms over 100 calls
    assert dashboard.rating(150.0, 100) == "CRITICAL"
    assert dashboard.rating(150.0, 10) == "GOOD"  # slow but rare
    assert dashboard.rating(1.0, 10_000) == "EXCELLENT"


def test_suggestions_are_computed_from_the_counters() -> None:
    s = dashboard.Statement(
        INSTANCE, "42", "SELECT * FROM orders WHERE note = $1", calls=200, mean_ms=30.0, total_ms=6000.0,
        rows=400_000, blks_hit=600, blks_read=400, temp_written=256, database="app",
    )  # fmt: skip
    found = dashboard.suggestions(s, {"shared_buffers": "128MB", "work_mem": "4MB", "block_size": 8192})
    assert any(f.startswith("slow: 30.0 ms on average over 200 calls") for f in found)
    assert any(f.startswith("reads 40% of its blocks from disk (3.1 MB)") and "128MB" in f for f in found)
    assert any(f.startswith("spills 2.0 MB to temp files") and "work_mem" in f for f in found)
    assert any(f.startswith("returns 2000 rows per call") for f in found)
    assert not any("/api/v1/performance" in f for f in found)  # no endpoint that does not exist


def test_dashboard_from_samples_when_statements_cannot_be_read(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    now = datetime.now(UTC)
    fake_ports.history.append(STREAM, [
        _sample(now - timedelta(minutes=10 - i), commits_per_second=100.0 + 10 * i, rollbacks_per_second=1.0,
                connections_active=3, cache_hit_ratio=0.99, cpu_percent=20.0 + i, memory_bytes=2**27,
                database_size_bytes=2**24)
        for i in range(10)
    ])  # fmt: skip
    status, body = call("GET", "/api/v1/monitoring/performance/dashboard?timeRange=1h")
    assert status == 200, body
    summary = body["summary"]
    assert summary["throughput"] == 191.0 and summary["activeConnections"] == 3
    assert summary["errorRate"] == round(1 / 191, 6) and summary["avgResponseTime"] is None
    assert body["topQueries"] == [] and body["notes"]  # no SQL seam on fake ports: said, not invented
    cpu = next(r for r in body["systemResources"] if r["resource"] == "cpu")
    assert (cpu["current"], cpu["average"], cpu["peak"]) == (29.0, 24.5, 29.0)
    trends = {t["metric"]: t for t in body["trends"]}
    assert trends["commits_per_second"]["direction"] == "STABLE"  # more throughput is not "better" or "worse"
    assert trends["cpu_percent"]["direction"] == "DEGRADING"


def test_dashboard_of_a_stopped_target_is_409(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports, status="stopped")
    assert call("GET", f"/api/v1/monitoring/performance/dashboard?targetId={INSTANCE}")[0] == 409


# --- the capture on fake ports ----------------------------------------------------------------


def test_rates_are_deltas_and_a_counter_that_went_down_has_none() -> None:
    at = datetime.now(UTC)
    before = HistoryRecord(STREAM, INSTANCE, "acme", at - timedelta(seconds=60), _data(
        xact_commit=1000, xact_rollback=10, blks_hit=9000, blks_read=1000, temp_bytes=0, deadlocks=5,
        wal_bytes=10_000, checkpoints=3, cpu_seconds=10.0))  # fmt: skip
    now = _data(xact_commit=1600, xact_rollback=70, blks_hit=9900, blks_read=1100, temp_bytes=6000, deadlocks=2,
                wal_bytes=70_000, checkpoints=4, cpu_seconds=13.0)  # fmt: skip
    capture.apply_rates(now, before, at)
    assert now["commits_per_second"] == 10.0 and now["rollbacks_per_second"] == 1.0
    assert now["rollback_ratio"] == round(60 / 660, 6) and now["cache_hit_ratio"] == 0.9
    assert now["temp_bytes_per_second"] == 100.0 and now["wal_bytes_per_second"] == 1000.0
    assert now["checkpoints_per_minute"] == 1.0 and now["cpu_percent"] == 5.0
    assert now["deadlocks_per_minute"] is None  # 5 -> 2: statistics reset, no rate
    first = _data(xact_commit=5)
    capture.apply_rates(first, None, at)
    assert first["commits_per_second"] is None and first["cache_hit_ratio"] is None


def test_scheduled_capture_samples_what_should_run_and_a_failure_is_a_sample(fake_ports: Any) -> None:
    _instance(fake_ports)  # running: sampled (fake ports have no SQL seam: it fails)
    _instance(fake_ports, "pgi-000000000001", status="failed")  # should run: sampled
    _instance(fake_ports, "pgi-000000000002", status="stopped")
    _instance(fake_ports, "pgi-000000000003", status="creating")
    actions = capture.scheduled_capture(fake_ports, {"task": capture.CAPTURE_TASK})
    assert actions[0].startswith("sampled 2 server(s): 0 up, 2 down")
    end = datetime.now(UTC) + timedelta(seconds=1)
    page = fake_ports.history.query(STREAM, start=end - timedelta(minutes=5), end=end, page_size=10)
    assert {r.target_id for r in page.items} == {INSTANCE, "pgi-000000000001"}
    for record in page.items:
        assert set(record.data) == set(capture.KEYS) and record.data["up"] is False and record.data["error"]
        assert record.tenant_id == "acme" and record.ttl_seconds == capture.SAMPLE_TTL_SECONDS
    assert {r.data["status"] for r in page.items} == {"running", "failed"}


def test_sampled_statuses() -> None:
    def server(status: str, desired: str = "running") -> servers.Server:
        return servers.Server("instance", {"id": INSTANCE, "status": status, "desired_state": desired})

    assert capture.sampled(server("running")) and capture.sampled(server("restarting"))
    assert not capture.sampled(server("paused", "paused")) and not capture.sampled(server("deleting"))
    assert not capture.sampled(server("stopped", "stopped"))


def test_capture_schedule_is_declared_by_the_domain() -> None:
    from pgfleet.domains import monitoring

    assert capture.CAPTURE_SCHEDULE in monitoring.DOMAIN.schedules
    assert monitoring.DOMAIN.tasks[capture.CAPTURE_TASK] is capture.scheduled_capture


def test_hour_chunks_answer_exactly_what_the_samples_do(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    hour = metrics.bucket_start(datetime.now(UTC).timestamp(), metrics.HOUR) - 3 * metrics.HOUR
    start = datetime.fromtimestamp(hour, UTC)
    # One sample a minute from three whole hours back until a minute ago (never in the future).
    count = int((datetime.now(UTC) - start).total_seconds() // 60) - 1
    fake_ports.history.append(STREAM, [
        _sample(start + timedelta(seconds=30 + 60 * i), cache_hit_ratio=0.9 + (i % 7) / 100,
                replication_lag_seconds_max=float(i % 13), commits_per_second=float(i))
        for i in range(count)
    ])  # fmt: skip
    path = f"/api/v1/monitoring/metrics?targetId={INSTANCE}&timeRange={metrics.iso(start + timedelta(minutes=7))}/"
    answers = []
    for aggregation in ("MINUTE", "HOUR"):
        status, raw = call("GET", f"{path}&aggregation={aggregation}")
        assert status == 200, raw
        answers.append(raw)
    # the capture's first sample of a new hour writes the chunk of the hour before
    for h in range(3):
        capture._compact(
            fake_ports, servers.Server("instance", {"id": INSTANCE, "tenant_id": "acme"}),
            start + timedelta(seconds=h * metrics.HOUR + 3590), start + timedelta(seconds=(h + 1) * metrics.HOUR + 30),
        )  # fmt: skip
    chunks = fake_ports.history.query(
        metrics.HOUR_STREAM, start=start, end=datetime.now(UTC), target_id=INSTANCE
    )
    assert chunks.total_items == 3 and chunks.items[0].data["samples"] == 60
    for aggregation, before in zip(("MINUTE", "HOUR"), answers, strict=True):
        status, body = call("GET", f"{path}&aggregation={aggregation}")
        assert status == 200 and body["metrics"] == before["metrics"], aggregation
    minutes = next(s for s in answers[0]["metrics"] if s["name"] == "commits_per_second")["dataPoints"]
    assert len(minutes) == count - 7  # from 7 minutes past the first hour to now
