"""The metric capture against real PostgreSQL servers of the local engine (15 and 18), through
the SQL seam: two captures around a workload give rates that are the deltas of the counters
over the time between them; a read replica's lag is sampled; a server that should run but
does not answer is sampled as down; pg_stat_statements feeds the dashboard once created.
Metadata and history are the unit fakes; everything started is destroyed in finalizers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.domains import servers
from pgfleet.domains.monitoring import capture, dashboard, metrics
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

HOST = "127.0.0.1"
VERSIONS = [v for v in ("15", "18") if v in local_pg.installed_binaries()]
pytestmark = pytest.mark.skipif(not VERSIONS, reason="needs PostgreSQL 15 or 18")


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-monitoring-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture
def ports(home: Path, engine: LocalPostgresEngine) -> Any:
    fake = FakePorts(home)
    fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    return fake


def _server(ports: Any, server_id: str, status: str = "running") -> servers.Server:
    record = {"id": server_id, "tenant_id": "acme", "status": status, "desired_state": "running",
              "database": "postgres", "name": server_id, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    ports.store.create("instance", record)
    return servers.Server("instance", record)


@pytest.fixture(scope="module", params=VERSIONS)
def primary(request: pytest.FixtureRequest, engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    version = str(request.param)
    spec = ServerSpec(f"pgi-00000000{version}aa", version, free_port(), memory_mb=256)
    try:
        engine.provision(spec)
        engine.start(spec)
        yield spec
    finally:
        engine.destroy(spec.server_id)


def _workload(engine: LocalPostgresEngine, server_id: str, commits: int, rollbacks: int) -> None:
    with engine.connect(server_id) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.work (id int, note text)")
        for i in range(commits):
            conn.execute("INSERT INTO public.work VALUES (%s, repeat('x', 200))", (i,))
        for _ in range(rollbacks):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO public.work VALUES (-1, 'gone')")
            conn.execute("ROLLBACK")


def test_two_captures_around_a_workload_give_the_deltas_as_rates(
    ports: Any, engine: LocalPostgresEngine, primary: ServerSpec
) -> None:
    server = _server(ports, primary.server_id)
    (first,) = capture.capture(ports, [server])
    assert first.data["up"] is True, first.data
    assert set(first.data) == set(capture.KEYS)
    assert first.previous is None and first.data["commits_per_second"] is None  # no previous: no rate
    assert first.data["checkpoints"] is not None  # pg_stat_checkpointer on 18, pg_stat_bgwriter on 15
    assert (
        first.data["timeline"] == 1
        and first.data["xid_remaining"] == capture.XID_LIMIT - first.data["xid_age"]
    )
    assert first.data["connections_max"] > 0 and first.data["database_size_bytes"] > 0
    assert first.data["resource_source"] in ("cgroup", "proc") and first.data["memory_bytes"] > 0

    _workload(engine, primary.server_id, commits=300, rollbacks=40)
    with engine.connect(primary.server_id) as conn:
        conn.execute("CHECKPOINT")
    time.sleep(1.0)
    (second,) = capture.capture(ports, [server])
    data, before = second.data, second.previous
    assert before is not None and before["xact_commit"] == first.data["xact_commit"]
    seconds = (second.at - first.at).total_seconds()
    commits = data["xact_commit"] - first.data["xact_commit"]
    rollbacks = data["xact_rollback"] - first.data["xact_rollback"]
    assert commits >= 300 and rollbacks >= 40
    assert data["commits_per_second"] == pytest.approx(commits / seconds, rel=1e-4)
    assert data["rollbacks_per_second"] == pytest.approx(rollbacks / seconds, rel=1e-4)
    assert data["rollback_ratio"] == pytest.approx(rollbacks / (commits + rollbacks), rel=1e-4)
    wal = data["wal_bytes"] - first.data["wal_bytes"]
    assert wal > 300 * 200 and data["wal_bytes_per_second"] == pytest.approx(wal / seconds, rel=1e-4)
    assert data["checkpoints"] > first.data["checkpoints"] and data["checkpoints_per_minute"] > 0
    assert data["cache_hit_ratio"] is not None and 0 < data["cache_hit_ratio"] <= 1
    assert data["cpu_percent"] is not None and data["cpu_percent"] >= 0
    stored = ports.history.query(
        "metrics", start=first.at, end=datetime.now(UTC), target_id=primary.server_id
    )
    assert stored.total_items == 2


def test_a_read_replica_lag_is_sampled(ports: Any, engine: LocalPostgresEngine, primary: ServerSpec) -> None:
    replica = ServerSpec(f"pgr-00000000{primary.version}bb", primary.version, free_port(), memory_mb=256)
    try:
        engine.provision_replica(replica, primary.server_id)
        engine.start(replica)
        server = _server(ports, primary.server_id)
        deadline = time.monotonic() + 30
        while True:
            (sample,) = capture.capture(ports, [server])
            streaming = [r for r in sample.data["replication"] if r["state"] == "streaming"]
            if streaming or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert streaming, sample.data["replication"]
        assert isinstance(streaming[0]["lag_bytes"], int) and streaming[0]["name"]
        assert sample.data["replication_lag_bytes_max"] is not None
    finally:
        engine.destroy(replica.server_id)


def test_a_server_that_should_run_but_does_not_answer_is_sampled_down(
    ports: Any, engine: LocalPostgresEngine
) -> None:
    spec = ServerSpec("pgi-0000000000dd", VERSIONS[0], free_port(), memory_mb=256)
    try:
        engine.provision(spec)  # never started
        server = _server(ports, spec.server_id, status="failed")
        (sample,) = capture.capture(ports, [server])
        assert sample.data["up"] is False and sample.data["error"]
        assert sample.data["status"] == "failed" and sample.data["commits_per_second"] is None
    finally:
        engine.destroy(spec.server_id)


def test_statements_feed_the_dashboard_once_the_extension_exists(
    ports: Any, engine: LocalPostgresEngine, primary: ServerSpec
) -> None:
    server = _server(ports, primary.server_id)
    target = metrics.Target(server)
    (missing,) = dashboard.statements_of(ports, [target], 10)
    with engine.connect(primary.server_id) as conn:
        has = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'"
        ).fetchone()
    if not has:
        assert missing.note and "CREATE EXTENSION pg_stat_statements" in missing.note
    with engine.connect(primary.server_id) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE ROLE monitoring_app NOLOGIN")
        conn.execute("SET ROLE monitoring_app")  # a customer's statements, not the platform's
        for _ in range(120):
            conn.execute("SELECT pg_catalog.pg_sleep(0.001) AS monitoring_probe")
    (read,) = dashboard.statements_of(ports, [target], 50)
    assert read.note is None and read.settings["work_mem"]
    probe = next(s for s in read.statements if "monitoring_probe" in s.query)
    assert probe.calls >= 120 and probe.mean_ms >= 1.0
    assert dashboard.rating(probe.mean_ms, probe.calls) in ("EXCELLENT", "GOOD")
    admin = Principal(sub="t", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))
    answer: Any = dashboard.performance_dashboard(
        ports, admin, target_id=primary.server_id, tenant_id=None, time_range_text="1h", limit=50
    )
    assert any("monitoring_probe" in q.query_text for q in answer.top_queries)
    assert not any(
        "pg_stat_activity" in q.query_text for q in answer.top_queries
    )  # not the capture's own SQL
    assert answer.summary.avg_response_time is not None and answer.summary.avg_response_time >= 1.0
