"""Safe EXPLAIN and query analysis against real PostgreSQL 15 and 18 servers of the local engine,
through the SQL seam: the statement runs as the database's app role (over TCP with its
password from the secrets), never as a superuser; its transaction is always rolled back (a
DELETE or INSERT with ANALYZE leaves the table as it was); statement_timeout is honoured;
two statements, COMMIT and DDL are refused before anything connects; the findings see a seq
scan of a big table and a sort spilling to disk. Then pg_stat_statements, live and as the
deltas of two stored snapshots; a generic plan of a statement with placeholders on 18 (16+).
Metadata, secrets and history are the unit fakes; the servers are destroyed in finalizers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.core.paging import PageQuery
from pgfleet.domains import instances
from pgfleet.domains.performance import explain, queries
from pgfleet.domains.performance.queries_models import QueryAnalyzeRequest
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

VERSIONS = [v for v in ("15", "18") if v in local_pg.installed_binaries()]
pytestmark = pytest.mark.skipif("15" not in VERSIONS, reason="needs PostgreSQL 15")

HOST = "127.0.0.1"
APP_USER, APP_PASSWORD = "shop_app", "shop app pw"
ROWS = 60_000
ADMIN = Principal(sub="t", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-explain-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture(scope="module", params=VERSIONS)
def server(request: pytest.FixtureRequest, engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    spec = ServerSpec(f"pgi-00000000{request.param}ee", str(request.param), free_port(), memory_mb=256)
    try:
        engine.provision(spec)
        engine.start(spec)
        engine.ensure_database(spec.server_id, "shop", APP_USER, APP_PASSWORD)
        with engine.connect(spec.server_id, "shop") as conn:  # raw superuser: the fixture's own objects
            conn.execute(f"SET ROLE {APP_USER}")
            conn.execute("CREATE TABLE public.big (id int PRIMARY KEY, k int, note text)")
            conn.execute(
                "INSERT INTO public.big SELECT g, g %% 1000, md5(g::text) || repeat('x', 50) "
                "FROM generate_series(1, %s) g",
                (ROWS,),
            )
            conn.execute("ANALYZE public.big")
            conn.execute("RESET ROLE")
            conn.execute(
                "CREATE TABLE public.secret_stuff (v text)"
            )  # the superuser's: the app role may not read it
            conn.execute(f"ALTER ROLE {APP_USER} SET work_mem = '64kB'")  # so a sort of `big` spills
            conn.execute("CREATE ROLE shop_root LOGIN SUPERUSER PASSWORD 'root pw'")
        yield spec
    finally:
        engine.destroy(spec.server_id)


@pytest.fixture
def ports(home: Path, engine: LocalPostgresEngine, server: ServerSpec) -> Any:
    fake: Any = FakePorts(home)
    fake.target = server.server_id  # the server of this parameter, for the helpers below
    fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    record = {"id": server.server_id, "tenant_id": "acme", "status": "running", "name": "shop", "database": "shop",
              "username": APP_USER, "endpoint": {"host": HOST, "port": server.port},
              "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    fake.store.create("instance", record)
    fake.secrets.put(instances.secret_name(record), APP_PASSWORD)
    return fake


def _analyze(ports: Any, query: str, **kw: Any) -> Any:
    return explain.analyze(ports, ADMIN, QueryAnalyzeRequest(target_id=ports.target, query_text=query, **kw))


def _count(engine: LocalPostgresEngine, ports: Any) -> int:
    with engine.connect(ports.target, "shop") as conn:
        row = conn.execute("SELECT count(*) FROM public.big").fetchone()
        assert row is not None
        return int(row[0])


def test_runs_as_the_app_role_never_superuser(
    ports: Any, engine: LocalPostgresEngine, server: ServerSpec
) -> None:
    result = _analyze(ports, "SELECT current_user", explain_options={"analyze": True})
    assert result.role_name == APP_USER
    with pytest.raises(ValidationFailed, match="permission denied for table secret_stuff"):
        _analyze(ports, "SELECT * FROM public.secret_stuff", explain_options={"analyze": True})
    root = f"postgresql://shop_root:root%20pw@{HOST}:{server.port}/shop"
    with pytest.raises(InvalidState, match="never runs as a superuser"):  # the seam itself refuses one
        with ports.sql.customer_session(ports.target, root):
            pass


def test_data_changing_statements_are_always_rolled_back(ports: Any, engine: LocalPostgresEngine) -> None:
    result = _analyze(ports, "DELETE FROM public.big", explain_options={"analyze": True})
    assert result.execution_plan.analyzed and "rolled back" in " ".join(result.execution_plan.notes)
    assert result.execution_plan.plan[0]["Plan"]["Plans"][0]["Actual Rows"] == ROWS  # it did run...
    assert _count(engine, ports) == ROWS  # ...and deleted nothing
    _analyze(ports, "INSERT INTO public.big SELECT g + 1000000, 1, 'new' FROM generate_series(1, 500) g",
             explain_options={"analyze": True})  # fmt: skip
    _analyze(ports, "UPDATE public.big SET note = 'changed' WHERE k = $1", parameters=[3],
             explain_options={"analyze": True})  # fmt: skip
    _analyze(ports, "WITH d AS (DELETE FROM public.big RETURNING id) SELECT count(*) FROM d",
             explain_options={"analyze": True})  # fmt: skip
    assert _count(engine, ports) == ROWS
    with engine.connect(ports.target, "shop") as conn:
        assert conn.execute("SELECT count(*) FROM public.big WHERE note = 'changed'").fetchone() == (0,)
    # Without ANALYZE nothing runs at all: the plan only.
    plain = _analyze(ports, "DELETE FROM public.big WHERE id = 1")
    assert plain.execution_plan.analyzed is False and plain.performance.execution_time is None


def test_statement_timeout_is_honoured(ports: Any) -> None:
    started = datetime.now(UTC)
    with pytest.raises(explain.StatementTimedOut, match="statement_timeout of 300 ms"):
        _analyze(
            ports,
            "SELECT pg_catalog.pg_sleep(5)",
            explain_options={"analyze": True},
            statement_timeout_ms=300,
        )
    assert datetime.now(UTC) - started < timedelta(seconds=3)


@pytest.mark.parametrize(
    ("query", "said"),
    [("SELECT 1; DELETE FROM public.big", "2 statements"), ("COMMIT", "COMMIT"),
     ("DROP TABLE public.big", "DROP"), ("ALTER TABLE public.big ADD COLUMN x int", "ALTER TABLE"),
     ("SELECT 1; COMMIT; DELETE FROM public.big", "3 statements")],
)  # fmt: skip
def test_refused_before_anything_runs(ports: Any, engine: LocalPostgresEngine, query: str, said: str) -> None:
    with pytest.raises(ValidationFailed, match=said):
        _analyze(ports, query, explain_options={"analyze": True})
    assert _count(engine, ports) == ROWS


def test_parameters_are_bound_not_formatted(ports: Any, engine: LocalPostgresEngine) -> None:
    hostile = "x'); DROP TABLE public.big; --"
    result = _analyze(ports, "SELECT * FROM public.big WHERE note = $1 AND k = $2", parameters=[hostile, 7],
                      explain_options={"analyze": True})  # fmt: skip
    assert result.performance.actual_rows == 0
    assert _count(engine, ports) == ROWS


def test_findings_seq_scan_of_a_big_table_and_a_sort_spill(ports: Any) -> None:
    scan = _analyze(ports, "SELECT * FROM public.big WHERE k = $1", parameters=[5],
                    explain_options={"analyze": True, "buffers": True})  # fmt: skip
    found = {f.finding_type: f for f in scan.execution_plan.findings}
    assert found["SEQ_SCAN_LARGE_TABLE"].relation == "big"
    assert found["ROWS_REMOVED_BY_FILTER"].node_type == "Seq Scan"
    index = [s for s in scan.optimization_suggestions if s.type == "INDEX"]
    assert index[0].sql_suggestion == 'CREATE INDEX CONCURRENTLY ON "public"."big" ("k");'
    assert scan.performance.shared_blocks_hit is not None
    spill = _analyze(ports, "SELECT * FROM public.big ORDER BY note", explain_options={"analyze": True})
    disk = [f for f in spill.execution_plan.findings if f.finding_type == "DISK_SPILL"]
    assert disk and disk[0].node_type == "Sort" and "64kB" in disk[0].detail
    assert any(
        s.sql_suggestion and s.sql_suggestion.startswith("SET work_mem")
        for s in spill.optimization_suggestions
    )


def test_a_generic_plan_for_placeholders_from_16(ports: Any, server: ServerSpec) -> None:
    query = "SELECT * FROM public.big WHERE k = $1 AND note = $2"
    if server.version == "15":
        with pytest.raises(ValidationFailed, match="PostgreSQL 16"):
            _analyze(ports, query)
        return
    result = _analyze(ports, query)
    assert any("GENERIC_PLAN" in n for n in result.execution_plan.notes)
    assert result.execution_plan.plan[0]["Plan"]["Node Type"] in ("Seq Scan", "Gather")


def test_text_and_xml_formats(ports: Any) -> None:
    text = _analyze(ports, "SELECT * FROM public.big WHERE id = 1", explain_options={"format": "TEXT"})
    assert text.execution_plan.format == "TEXT" and "Index Scan" in text.execution_plan.plan
    xml = _analyze(ports, "SELECT * FROM public.big WHERE id = 1", explain_options={"format": "XML"})
    assert xml.execution_plan.plan.startswith("<explain")


def _workload(port: int, calls: int) -> None:
    uri = f"postgresql://{APP_USER}:shop%20app%20pw@{HOST}:{port}/shop"
    with psycopg.connect(uri, autocommit=True) as conn:
        for i in range(calls):
            conn.execute("SELECT count(*) FROM public.big WHERE k = %s", (i % 7,))


def test_analysis_live_and_over_snapshots(ports: Any, server: ServerSpec) -> None:
    _workload(server.port, 30)
    live = queries.query_analysis(
        ports, ADMIN, target_id=ports.target, tenant_id=None, database="shop", time_range_text=None, min_executions=None,
        performance_rating=None, sort_by="impact", page=PageQuery(),
    )  # fmt: skip
    mine = [q for q in live.queries if "public.big WHERE k" in q.query_text]
    assert mine and mine[0].statistics.total_executions >= 30 and mine[0].role_name == APP_USER
    assert all(q.role_name != "postgres" for q in live.queries)  # the platform's own are left out
    assert live.summary.source == "since_reset"
    queries.scheduled_snapshot(ports, {})
    _workload(server.port, 12)
    queries.scheduled_snapshot(ports, {})  # the next snapshot: the range's oldest and newest
    ranged = queries.query_analysis(
        ports, ADMIN, target_id=ports.target, tenant_id=None, database="shop", time_range_text="10m", min_executions=None,
        performance_rating=None, sort_by="frequency", page=PageQuery(),
    )  # fmt: skip
    (delta,) = [q for q in ranged.queries if "public.big WHERE k" in q.query_text]
    assert delta.statistics.total_executions == 12 and ranged.summary.source == "snapshots"
    assert "oldest in the range" in ranged.summary.notes[0]
