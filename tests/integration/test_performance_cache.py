"""The cache and connection analyses against real PostgreSQL servers of the local engine (15,
and 18 where the wheel is installed),
through the SQL seam: pg_buffercache is created in the platform's schema when missing and
shows the buffers of a table just read, by name; the hit ratios, and the evictions of
pg_stat_io (18) or the bgwriter's writes instead (15), are the server's; the connections are the sessions opened by the test, by state and
application, with a trend from a real monitoring capture. Metadata and history are the unit
fakes; everything started is destroyed in finalizers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.core.errors import NotFound
from pgfleet.domains import servers
from pgfleet.domains.monitoring import capture
from pgfleet.domains.performance import cache, connections
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

HOST = "127.0.0.1"
VERSIONS = [v for v in ("15", "18") if v in local_pg.installed_binaries()]
pytestmark = pytest.mark.skipif("15" not in VERSIONS, reason="needs PostgreSQL 15")
ADMIN = Principal(sub="t", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))
MB = 1024 * 1024


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-perf-cache-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture(scope="module", params=VERSIONS)
def server(request: pytest.FixtureRequest, engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    spec = ServerSpec(f"pgi-00000000{request.param}cc", str(request.param), free_port(), memory_mb=256)
    try:
        engine.provision(spec)
        engine.start(spec)
        yield spec
    finally:
        engine.destroy(spec.server_id)


@pytest.fixture
def ports(home: Path, engine: LocalPostgresEngine) -> Any:
    fake = FakePorts(home)
    fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    return fake


def _record(ports: Any, server_id: str, database: str, memory: int) -> servers.Server:
    record = {"id": server_id, "tenant_id": "acme", "status": "running", "desired_state": "running",
              "database": database, "name": "perf", "memory": memory, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    ports.store.create("instance", record)
    return servers.Server("instance", record)


def _one(response: Any, kind: str) -> Any:
    (entry,) = [e for e in response.cache_types if e.cache_type == kind]
    return entry


def test_buffercache_is_created_in_the_platform_schema_and_names_the_table_just_read(
    ports: Any, engine: LocalPostgresEngine, server: ServerSpec
) -> None:
    with engine.connect(server.server_id) as conn:
        had_schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'pgfleet_stats'").fetchone()
        conn.execute("DROP EXTENSION IF EXISTS pg_buffercache")
    engine.ensure_database(server.server_id, "app", "app_owner", "s3cret-pw")
    with engine.connect(server.server_id, "app") as conn:
        conn.execute("CREATE TABLE public.cached_rows AS SELECT g AS id, repeat('x', 500) AS pad "
                     "FROM generate_series(1, 20000) g")  # fmt: skip
        conn.execute("CREATE INDEX cached_rows_id ON public.cached_rows (id)")
        for _ in range(3):
            conn.execute("SELECT count(*) FROM public.cached_rows WHERE pad <> ''").fetchone()
            conn.execute("SELECT id FROM public.cached_rows WHERE id = 42").fetchone()
    _record(ports, server.server_id, "app", memory=1024)

    answer = cache.cache_analysis(ports, ADMIN, target_id=server.server_id, tenant_id=None)

    with engine.connect(server.server_id) as conn:
        where = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_buffercache'"
        ).fetchone()
        public_usage = conn.execute(
            "SELECT has_schema_privilege('public', 'pgfleet_stats', 'USAGE')"
        ).fetchone()
        shared = conn.execute(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'shared_buffers'"
        ).fetchone()
        hit, read = conn.execute(
            "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = 'app'"
        ).fetchone()
    assert where == ("pgfleet_stats",) and public_usage == (False,), (had_schema, where, public_usage)

    buffers = _one(answer, "SHARED_BUFFERS")
    detail = buffers.shared_buffers
    assert buffers.status == "AVAILABLE" and detail.database_name == "app"
    assert detail.buffers_total == shared[0] and buffers.size == shared[0] * 8192
    assert 0 < detail.buffers_used <= detail.buffers_total and buffers.used_size == detail.buffers_used * 8192
    assert sum(detail.usage_count_distribution.values()) == detail.buffers_total
    names = {(r.schema_name, r.relation_name): r for r in detail.top_relations}
    table = names[("public", "cached_rows")]
    assert table.relation_kind == "r" and table.buffers > 1000 and table.bytes == table.buffers * 8192
    assert all(r.relation_name for r in detail.top_relations)  # catalogs of the database resolve too
    # hit ratio of the app database, as pg_stat_database has it (counters only grow)
    assert buffers.hit_ratio is not None and 0 < buffers.hit_ratio <= 1
    assert 0 < detail.hit_ratios.blocks_hit <= hit and detail.hit_ratios.tables is not None
    assert buffers.hit_ratio == pytest.approx(hit / (hit + read), abs=0.05)
    if server.version == "15":  # no eviction counter: null, and the bgwriter's writes named as writes
        assert buffers.evictions is None and detail.evictions_source == "pg_stat_bgwriter (writes)"
        assert detail.backend_writes is not None and any(
            "PostgreSQL 15 counts none" in n for n in buffers.notes
        )
    else:  # pg_stat_io
        with engine.connect(server.server_id) as conn:
            (now,) = conn.execute(
                "SELECT sum(evictions) FROM pg_stat_io WHERE object = 'relation'"
            ).fetchone()
        assert buffers.evictions is not None and 0 <= buffers.evictions <= now
        assert detail.evictions_source == "pg_stat_io" and detail.backend_writes is None

    plans = _one(answer, "PLAN_CACHE")
    assert plans.status in ("AVAILABLE", "PARTIAL") and plans.plan_cache.plan_cache_mode == "auto"
    if plans.plan_cache.track_planning is not True:
        assert plans.hit_ratio is None and any(
            "track_planning" in n or "not created" in n for n in plans.notes
        )
    query = _one(answer, "QUERY_CACHE")
    assert query.status == "NOT_AVAILABLE" and query.hit_ratio is None and query.recommendations

    # 1024 MB of memory on a server sized for 256: effective_cache_size (192 MB) is under 50 %;
    # shared_buffers is not full, so no shared_buffers advice is made up.
    by_setting = {r.setting: r for r in answer.recommendations}
    assert by_setting["effective_cache_size"].recommended_size == 768 * MB
    assert by_setting["effective_cache_size"].current_size == 192 * MB
    if detail.buffers_used / detail.buffers_total < cache.FULL_BUFFERS:
        assert "shared_buffers" not in by_setting
    assert answer.overall_efficiency == buffers.efficiency_score

    with pytest.raises(NotFound):
        cache.cache_analysis(
            ports, ADMIN, target_id=server.server_id, tenant_id=None, database="not_a_tenant"
        )


def test_connection_analysis_counts_the_sessions_opened(
    ports: Any, engine: LocalPostgresEngine, server: ServerSpec
) -> None:
    record = _record(ports, server.server_id, "postgres", memory=256)
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(engine.connect(server.server_id)) for _ in range(5)]
        for conn in opened:
            conn.execute("SET application_name = 'perf-pool-test'")
        for conn in opened[:2]:
            conn.execute("BEGIN")
            conn.execute("SELECT 1").fetchone()  # idle in transaction from here
        capture.capture(ports, [record])  # one real monitoring sample for the trend

        answer = connections.connection_analysis(
            ports, ADMIN, target_id=server.server_id, tenant_id=None, time_range_text="1h"
        )

        for conn in opened[:2]:
            conn.execute("ROLLBACK")
    status = answer.current_status
    app = next(a for a in status.by_application if a.name == "perf-pool-test")
    assert (app.connections, app.idle, app.idle_in_transaction) == (5, 3, 2)
    assert status.current_connections >= 5 and status.idle_in_transaction_connections >= 2
    assert status.max_connections > 0 and status.superuser_reserved_connections == 3
    assert status.usable_connections == status.max_connections - 3
    assert status.utilization_percentage == pytest.approx(
        100 * status.current_connections / status.usable_connections, abs=0.01
    )
    assert status.oldest_idle_in_transaction_seconds is not None and status.target_id == server.server_id
    (util,) = answer.utilization
    assert util.samples == 1 and util.peak_connections is not None and util.peak_connections >= 5
    (point,) = answer.historical_trends
    assert (
        point.samples == 1
        and point.peak_connections == util.peak_connections
        and answer.aggregation == "MINUTE"
    )
    # idle in transaction for a second, not 60: no OPTIMIZE_QUERIES; one sample: no DECREASE_POOL
    assert answer.recommendations == [] and answer.notes == []
