"""Connection pool analysis and cache analysis without a server: the rules on measured numbers
(and none without them), the trends from monitoring samples, and the routes (scope, 403, 404,
409, 422) through the api handler. The SQL itself runs against a real server in
tests/integration/test_performance_cache.py; here a canned session answers the two reads of
the connection analysis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgfleet.domains.performance import cache, connections
from pgfleet.domains.performance import sql_connections as q
from pgfleet.domains.performance.connections_models import ConnectionPoolStatus
from pgfleet.ports.history import HistoryRecord

INSTANCE = "pgi-0123456789ab"
OTHER = "pgi-ba9876543210"
MB = 1024 * 1024


def _session(
    state: str = "idle", app: str = "web", idle_xact: float | None = None, db: str = "app"
) -> connections.Session:
    return connections.Session(db, "app_user", app, state, False, 30.0, idle_xact)


SETTINGS = {"max_connections": 100, "superuser_reserved_connections": 3, "reserved_connections": 0}


def _status(sessions: list[connections.Session], **settings: int) -> ConnectionPoolStatus:
    return connections.status_of(sessions, {**SETTINGS, **settings}, INSTANCE)


def _samples(count: int, every: timedelta = timedelta(minutes=1), **data: Any) -> list[HistoryRecord]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - every * count  # at the call: never stale
    return [
        HistoryRecord("metrics", INSTANCE, "acme", start + every * i, {"connections_max": 100, **data})
        for i in range(count)
    ]


def _kinds(found: list[Any]) -> list[str]:
    return [r.type for r in found]


def _recommend(
    status: ConnectionPoolStatus, samples: list[HistoryRecord], memory_mb: int | None = 4096
) -> list[Any]:
    stats = connections.sample_stats(samples)
    util = connections.utilization_of(INSTANCE, status, stats)
    return connections.recommend(INSTANCE, status, util, stats, memory_mb=memory_mb, work_mem_bytes=4 * MB)


# --- the current status -----------------------------------------------------------------------


def test_status_counts_states_against_the_usable_connections() -> None:
    sessions = [_session("active"), _session(), _session(), _session("idle in transaction", idle_xact=12.0),
                _session("active", app="batch", db="other")]  # fmt: skip
    sessions[0] = connections.Session("app", "app_user", "web", "active", True, 99.0, None)
    status = _status(sessions, reserved_connections=2)
    assert (status.current_connections, status.active_connections, status.idle_connections) == (5, 2, 2)
    assert status.waiting_connections == 1 and status.idle_in_transaction_connections == 1
    assert status.usable_connections == 95 and status.utilization_percentage == round(500 / 95, 2)
    assert status.oldest_connection_age_seconds == 99.0 and status.oldest_idle_in_transaction_seconds == 12.0
    assert [(c.name, c.connections) for c in status.by_application] == [("web", 4), ("batch", 1)]
    assert [(c.name, c.connections) for c in status.by_database] == [("app", 4), ("other", 1)]
    total = connections.total_of([status, _status([_session(app="batch")])])
    assert total.current_connections == 6 and total.max_connections == 200 and total.target_id is None
    assert {c.name: c.connections for c in total.by_application} == {"web": 4, "batch": 2}


def test_setting_bytes_reads_pg_settings_units() -> None:
    assert connections.setting_bytes("16384", "8kB") == 128 * MB
    assert connections.setting_bytes("4096", "kB") == 4 * MB
    assert connections.setting_bytes("on", None) is None and connections.setting_bytes("5", "ms") is None


# --- the rules --------------------------------------------------------------------------------


def test_no_samples_no_recommendation_but_idle_in_transaction_now() -> None:
    assert _recommend(_status([_session()]), []) == []
    (found,) = _recommend(_status([_session("idle in transaction", idle_xact=75.0)]), [])
    assert found.type == "OPTIMIZE_QUERIES" and found.current_value == 1 and found.recommended_value == 0
    assert found.evidence["oldestIdleInTransactionSecondsNow"] == 75.0
    assert "idle_in_transaction_session_timeout (now off)" in found.reasoning


def test_a_high_peak_with_mostly_idle_connections_asks_for_a_pooler() -> None:
    samples = _samples(30, connections_total=90, connections_active=8, connections_idle=80)
    (found,) = _recommend(_status([_session()]), samples)
    assert found.type == "CONFIGURE_POOLER" and found.recommended_value == 10  # ceil(8 x 1.25)
    assert found.evidence["peakUtilizationPercentage"] == round(9000 / 97, 2)
    assert found.evidence["idleSharePercentage"] > 50 and found.evidence["samples"] == 30


def test_a_high_peak_of_busy_connections_increases_the_pool_within_memory() -> None:
    samples = _samples(30, connections_total=90, connections_active=85, connections_idle=5)
    (found,) = _recommend(_status([_session()]), samples)
    assert found.type == "INCREASE_POOL" and found.current_value == 100
    assert found.recommended_value == 132  # ceil(90 / 0.70) + 3 reserved
    # 1 GB of memory affords 102 connections (one per 10 MB): a pooler instead
    (instead,) = _recommend(_status([_session()]), samples, memory_mb=1024)
    assert instead.type == "CONFIGURE_POOLER" and "1024 MB" in instead.reasoning


def test_decrease_needs_a_day_of_samples_and_gives_the_work_mem_bound() -> None:
    status = _status([_session()], max_connections=400)
    hour = timedelta(hours=1)
    day = _samples(
        25, every=hour, connections_total=20, connections_active=5, connections_idle=15, connections_max=400
    )
    (found,) = _recommend(status, day)
    assert found.type == "DECREASE_POOL" and found.recommended_value == 100  # max(100, 2 x 20 + 3)
    assert found.evidence["memoryBoundBytes"] == 300 * 4 * MB and "1200 MB" in found.estimated_impact
    assert _recommend(status, day[-12:]) == []  # half a day: not enough to lower it
    small = _status([_session()], max_connections=100)
    assert _recommend(small, day) == []  # 100 or fewer: never lowered


def test_idle_in_transaction_seen_in_the_samples_asks_to_optimize() -> None:
    samples = _samples(5, connections_total=10, idle_in_transaction_max_seconds=600.0)
    (found,) = _recommend(_status([_session()]), samples)
    assert found.type == "OPTIMIZE_QUERIES" and found.evidence["idleInTransactionMaxSecondsInRange"] == 600.0


def test_trends_are_buckets_of_the_samples() -> None:
    samples = _samples(120, connections_total=10, connections_active=4, connections_idle=6,
                       connections_idle_in_transaction=0)  # fmt: skip
    samples[5].data["connections_total"] = 40
    points = connections.trends(INSTANCE, samples, 3600, 3)
    assert sum(p.samples for p in points) == 120 and max(p.peak_connections for p in points) == 40
    assert points[0].average_active == 4.0 and points[0].max_connections == 100
    assert connections.trends(INSTANCE, [], 60, 3) == []
    assert connections.aggregation_for(3600) == "MINUTE" and connections.aggregation_for(86400) == "HOUR"
    assert connections.aggregation_for(30 * 86400) == "DAY"


# --- cache rules --------------------------------------------------------------------------------


def test_shared_buffers_is_raised_only_for_a_full_cache_that_misses() -> None:
    args = dict(effective_cache_size=3 * 1024 * MB)
    raised = cache.cache_recommendations(
        INSTANCE, 4096, 128 * MB, hit=0.95, buffers_used=16384, buffers_total=16384, **args
    )  # type: ignore[arg-type]
    (found,) = raised
    assert (
        found.setting == "shared_buffers"
        and found.recommended_size == 1024 * MB
        and found.current_size == 128 * MB
    )
    assert found.estimated_improvement is None
    # not full: misses are first reads; good hit ratio: nothing to fix; no hit ratio: nothing measured
    for hit, used in ((0.95, 8000), (0.995, 16384), (None, 16384)):
        assert (
            cache.cache_recommendations(
                INSTANCE, 4096, 128 * MB, hit=hit, buffers_used=used, buffers_total=16384, **args
            )
            == []
        )  # type: ignore[arg-type]
    (lower,) = cache.cache_recommendations(
        INSTANCE, 4096, 2048 * MB, hit=0.999, buffers_used=1, buffers_total=2, **args
    )  # type: ignore[arg-type]
    assert lower.setting == "shared_buffers" and lower.recommended_size == 1024 * MB
    assert cache.cache_recommendations(INSTANCE, None, 128 * MB, 1, 0.5, 1, 1) == []  # no memory: no sizing


def test_effective_cache_size_is_kept_within_half_to_three_quarters_of_memory() -> None:
    (low,) = cache.cache_recommendations(INSTANCE, 1024, 256 * MB, 192 * MB, None, None, None)
    assert low.setting == "effective_cache_size" and low.recommended_size == 768 * MB
    assert cache.cache_recommendations(INSTANCE, 1024, 256 * MB, 768 * MB, None, None, None) == []


def _reading(**values: Any) -> cache.Reading:
    r = cache.Reading(INSTANCE, "app")
    r.settings = {"server_version_num": ("150010", None), "block_size": ("8192", None),
                  "plan_cache_mode": ("auto", None), "shared_buffers": ("16384", "8kB")}  # fmt: skip
    for key, value in values.items():
        setattr(r, key, value)
    return r


def test_cache_entries_say_what_was_not_measured() -> None:
    bare = cache.shared_buffers_entry(_reading())
    assert (
        bare.status == "PARTIAL"
        and bare.hit_ratio is None
        and bare.size == 128 * MB
        and bare.used_size is None
    )
    assert any("PostgreSQL 15 counts none" in n for n in bare.notes) and bare.evictions is None
    read = cache.shared_buffers_entry(_reading(buffers=(16384, 16000, 10, 0), database_blocks=(990, 10)))
    assert read.status == "AVAILABLE" and read.hit_ratio == 0.99 and read.efficiency_score == 99.0
    missing = cache.plan_cache_entry(_reading())
    assert missing.hit_ratio is None and any("not created" in n for n in missing.notes)
    r = _reading(plans=(0, 5000))
    r.settings["pg_stat_statements.track_planning"] = ("off", None)
    off = cache.plan_cache_entry(r)
    assert off.hit_ratio is None and off.plan_cache.track_planning is False
    assert any("track_planning is off" in n for n in off.notes)
    r.settings["pg_stat_statements.track_planning"] = ("on", None)
    r.plans = (4000, 5000)
    on = cache.plan_cache_entry(r)
    assert on.hit_ratio == 0.2 and on.status == "AVAILABLE" and on.recommendations
    none = cache.query_cache_entry(INSTANCE)
    assert none.status == "NOT_AVAILABLE" and none.hit_ratio is None and none.size is None


# --- routes -----------------------------------------------------------------------------------


class CannedSession:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        if query == q.SESSIONS:
            return self.rows
        if query == q.SETTINGS:
            return [("max_connections", "100", None), ("superuser_reserved_connections", "3", None),
                    ("work_mem", "4096", "kB"), ("idle_in_transaction_session_timeout", "0", "ms")]  # fmt: skip
        raise AssertionError(f"unexpected {query}")


class CannedSql:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    @contextlib.contextmanager
    def session(self, server_id: str, **_: Any) -> Iterator[CannedSession]:
        yield CannedSession(self.rows)


def _instance(
    fake_ports: Any, instance_id: str = INSTANCE, tenant: str = "acme", status: str = "running"
) -> None:
    fake_ports.store.create("instance", {
        "id": instance_id, "tenant_id": tenant, "name": f"db-{instance_id[-4:]}", "status": status,
        "desired_state": "running", "database": "app", "memory": 1024, "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip


def test_connection_analysis_route_reads_live_sessions_and_samples(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    rows = [("app", "u", "web", "idle", False, 5.0, None)] * 3 + [
        ("app", "u", "web", "active", False, 9.0, None)
    ]
    fake_ports.sql = CannedSql(rows)
    fake_ports.history.append(
        "metrics", _samples(30, connections_total=90, connections_active=8, connections_idle=80)
    )
    status, body = call("GET", f"/api/v1/performance/connections/analysis?targetId={INSTANCE}&timeRange=2h")
    assert status == 200, body
    assert body["currentStatus"]["currentConnections"] == 4 and body["currentStatus"]["idleConnections"] == 3
    assert body["currentStatus"]["usableConnections"] == 97 and body["aggregation"] == "MINUTE"
    (util,) = body["utilization"]
    assert util["samples"] == 30 and util["peakConnections"] == 90
    assert [r["type"] for r in body["recommendations"]] == ["CONFIGURE_POOLER"]
    assert sum(p["samples"] for p in body["historicalTrends"]) == 30 and body["notes"] == []


def test_routes_check_permission_scope_and_input(call: Any, fake_ports: Any) -> None:
    _instance(fake_ports)
    _instance(fake_ports, OTHER, tenant="globex")
    _instance(fake_ports, "pgi-00000000ffff", status="stopped")
    for path in ("/connections/analysis", "/cache/analysis"):
        base = f"/api/v1/performance{path}"
        assert call("GET", base, role="user")[0] == 403  # no performance:read
        assert call("GET", base, role=None)[0] == 401
        assert call("GET", f"{base}?targetId=nope")[0] == 422
        assert call("GET", f"{base}?targetId={OTHER}")[0] == 404  # another tenant's
        assert call("GET", f"{base}?tenantId=globex")[0] == 404
        assert call("GET", f"{base}?targetId=pgi-00000000ffff")[0] == 409
    assert call("GET", "/api/v1/performance/connections/analysis?timeRange=forever")[0] == 422
    assert call("GET", "/api/v1/performance/connections/analysis?timeRange=90d")[0] == 422  # past retention
    status, body = call("GET", "/api/v1/performance/cache/analysis?database=app")
    assert status == 422 and "targetId" in body["error"]["message"]
    assert call("GET", "/api/v1/performance/cache/analysis?targetId=pgi-0123456789ab&database=x;y")[0] == 422


def test_an_empty_scope_answers_with_a_note(call: Any, fake_ports: Any) -> None:
    status, body = call("GET", "/api/v1/performance/connections/analysis", role="viewer")
    assert status == 200 and body["servers"] == [] and body["notes"] == ["no running server in scope"]
    status, body = call("GET", "/api/v1/performance/cache/analysis", role="viewer")
    assert status == 200 and body["cacheTypes"] == [] and body["overallEfficiency"] is None


@pytest.mark.parametrize("database", ["app", None])
def test_cache_database_defaults_to_the_targets_own(fake_ports: Any, database: str | None) -> None:
    from pgfleet.domains import servers

    _instance(fake_ports)
    (target,) = servers.targets(fake_ports, _admin(), INSTANCE, None)
    assert cache.database_for(fake_ports, target, database) == "app"
    fake_ports.store.create("tenant", {"id": "pgt-1", "tenant_id": "acme", "parent_id": INSTANCE, "name": "t1",
                                       "database_name": "tenant_t1", "status": "active"})  # fmt: skip
    assert cache.database_for(fake_ports, target, "tenant_t1") == "tenant_t1"


def _admin() -> Any:
    from pgfleet.core.auth import PLATFORM, Principal

    return Principal(sub="t", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))
