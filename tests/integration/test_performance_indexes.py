"""The index advisor against a real PostgreSQL 15 server with hypopg, through the SQL seam:
a 200k-row table read by a non-indexed column gets exactly that index, proven by what-if cost;
its write-heavy twin gets a lower priority with its write rate; an unused and a duplicate
index are found; optimize builds the index concurrently while a writer inserts, and the plan
then uses it. Metadata is the unit fakes; the server is destroyed in a finalizer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.postgres.roles import ensure_role_and_database
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core import operations
from pgfleet.core.auth import Principal
from pgfleet.domains.performance import indexes, workflows
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

HOST = "127.0.0.1"
HYPOPG = Path("/usr/share/postgresql/15/extension/hypopg.control").exists()
needs_15 = pytest.mark.skipif(
    "15" not in local_pg.installed_binaries() or not HYPOPG, reason="needs PostgreSQL 15 with hypopg"
)
needs_18 = pytest.mark.skipif("18" not in local_pg.installed_binaries(), reason="needs PostgreSQL 18")
SERVER_ID = "pgi-0000000015cd"
SERVER_18 = "pgi-0000000018cd"
ROWS = 200_000
PASSWORD = "not-a-secret-1"
CALLER = Principal("ops", "acme", ("operator",))
READS = {
    "readers": "SELECT id, note FROM public.readers WHERE email = %s",
    "writers": "SELECT id, note FROM public.writers WHERE email = %s",
}


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-indexes-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture(scope="module")
def server(engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    spec = ServerSpec(SERVER_ID, "15", free_port(), memory_mb=256)
    try:
        engine.provision(spec)
        engine.start(spec)
        with engine.connect(SERVER_ID) as conn:
            ensure_role_and_database(conn, "shop", "shop_app", PASSWORD)
        with engine.connect(SERVER_ID, "shop") as conn:
            conn.execute("SET ROLE shop_app")
            for table in ("readers", "writers"):
                conn.execute(
                    f"CREATE TABLE public.{table} (id bigserial PRIMARY KEY, email text NOT NULL,"
                    " created date NOT NULL, note text)"
                )
                conn.execute(
                    f"INSERT INTO public.{table} (email, created, note) SELECT 'user' || g || '@example.com',"  # noqa: S608 (fixed names)
                    f" date '2020-01-01' + (g % 1000), md5(g::text) FROM generate_series(1, {ROWS}) g"
                )
            conn.execute("CREATE INDEX readers_note_idx ON public.readers (note)")  # never used
            conn.execute(
                "CREATE INDEX readers_created_idx ON public.readers (created)"
            )  # a prefix of the next
            conn.execute("CREATE INDEX readers_created_note_idx ON public.readers (created, note)")
            conn.execute("CREATE TABLE public.tiny (id int, email text)")
            conn.execute("INSERT INTO public.tiny SELECT g, g::text FROM generate_series(1, 100) g")
            conn.execute("ANALYZE")
            conn.execute("RESET ROLE")
            conn.execute("SELECT pg_catalog.pg_stat_reset()")
        with engine.connect(SERVER_ID) as conn:
            conn.execute("SELECT pgfleet_stats.pg_stat_statements_reset()")
        yield spec
    finally:
        engine.destroy(SERVER_ID)


@pytest.fixture
def ports(home: Path, engine: LocalPostgresEngine, server: ServerSpec) -> Any:
    fake = FakePorts(home)
    fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    _register(fake, SERVER_ID, server.port)
    return fake


def _register(ports: Any, server_id: str, port: int) -> None:
    """The instance record and its app role's password, as the instances domain keeps them."""
    ports.store.create("instance", {
        "id": server_id, "tenant_id": "acme", "status": "running", "desired_state": "running",
        "database": "shop", "username": "shop_app", "endpoint": {"host": HOST, "port": port},
        "name": server_id, "created_at": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    ports.secrets.put(f"instances/{server_id}/shop_app", PASSWORD)


def _app(engine: LocalPostgresEngine, server_id: str = SERVER_ID) -> psycopg.Connection:
    info = engine.admin_socket(server_id)
    conn = psycopg.connect(
        host=str(info.socket), port=info.port, user="postgres", dbname="shop", autocommit=True
    )
    conn.execute("SET ROLE shop_app")
    return conn


def _workload(engine: LocalPostgresEngine, calls: int, writes: int) -> None:
    with _app(engine) as conn:
        for i in range(calls):
            for table in ("readers", "writers"):
                conn.execute(READS[table], (f"user{i * 7 + 1}@example.com",))
            conn.execute("SELECT * FROM public.tiny WHERE email = %s", (str(i),))
        for _ in range(writes // 500):
            conn.execute(
                "INSERT INTO public.writers (email, created) SELECT 'w' || g, current_date FROM generate_series(1, 500) g"
            )


@needs_15
def test_the_advisor_recommends_exactly_the_useful_index_and_optimize_builds_it(
    ports: Any, engine: LocalPostgresEngine
) -> None:
    _workload(engine, calls=40, writes=20_000)
    result = indexes.analyze(ports, CALLER, SERVER_ID, None)
    creates = [r for r in result.recommendations if r.type == "CREATE"]
    assert sorted((r.table_name, tuple(r.columns)) for r in creates) == [
        ("readers", ("email",)), ("writers", ("email",))
    ], [(r.table_name, r.columns, r.reasoning) for r in creates]  # fmt: skip
    readers = next(r for r in creates if r.table_name == "readers")
    writers = next(r for r in creates if r.table_name == "writers")
    for rec in (readers, writers):
        assert rec.benefit is not None and rec.benefit.improvement_percent >= 50
        assert rec.benefit.cost_after < rec.benefit.cost_before / 2
        assert (
            rec.write_cost is not None
            and rec.write_cost.index_size_bytes
            and rec.write_cost.index_size_bytes > 0
        )
        assert rec.sql and rec.sql.startswith("CREATE INDEX CONCURRENTLY")
    assert readers.priority == "HIGH", readers.reasoning
    assert (
        writers.write_cost
        and writers.write_cost.writes_per_hour > 0
        and writers.write_cost.write_share >= 0.5
    )
    order = ("LOW", "MEDIUM", "HIGH")
    assert order.index(writers.priority) < order.index(readers.priority), writers.reasoning

    by_name = {i.index_name: i for i in result.indexes}
    assert "UNUSED" in by_name["readers_note_idx"].findings
    assert by_name["readers_note_idx"].recommendation == "DROP"
    assert "DUPLICATE" in by_name["readers_created_idx"].findings
    assert "DUPLICATE" not in by_name["readers_created_note_idx"].findings
    assert by_name["readers_pkey"].findings == []  # a primary key is never unused
    assert (
        by_name["readers_pkey"].bloat_percentage is not None and by_name["readers_pkey"].bloat_percentage < 30
    )
    assert (
        result.summary.what_if
        and result.summary.unused_indexes >= 1
        and result.summary.duplicate_indexes == 1
    )

    # optimize while a writer inserts: the concurrent build does not block it
    stop = threading.Event()
    inserted = [0]

    def writer() -> None:
        with _app(engine) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO public.readers (email, created) VALUES ('during', current_date)")
                inserted[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        record, _ = indexes.find_recommendation(ports, CALLER, readers.id)
        op = workflows.start(ports, record, [readers.id], 5000)
        line = operations.run(ports, op["id"])
    finally:
        stop.set()
        thread.join()
    assert line.endswith("succeeded"), ports.store.get("operation", op["id"])
    assert inserted[0] > 0
    _, applied = indexes.find_recommendation(ports, CALLER, readers.id)
    assert applied["status"] == "APPLIED"
    assert applied["measured"]["plan_uses_index"] is True
    assert applied["measured"]["cost_after"] < applied["measured"]["cost_before"] / 2
    with engine.connect(SERVER_ID, "shop") as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.readers_email_idx'::regclass"
        ).fetchone()
    assert valid == (True,)

    # the calls after the build give the measured mean
    _workload(engine, calls=20, writes=0)
    measured = workflows.measured_after(ports, record, applied)
    assert measured["sample_runs"] >= 20 and measured["improvement_factor"] > 2, measured

    again = indexes.analyze(ports, CALLER, SERVER_ID, None)
    assert [r.table_name for r in again.recommendations if r.type == "CREATE"] == ["writers"]
    shown = indexes.analyze(ports, CALLER, SERVER_ID, None, measure=workflows.measured_after)
    (done,) = [r for r in shown.recommendations if r.id == readers.id]
    assert done.status == "APPLIED" and done.measured and done.measured.plan_uses_index
    assert done.measured.improvement_factor and done.measured.improvement_factor > 2
    assert shown.summary.missing_indexes == 1


@needs_15
def test_a_concurrent_build_that_times_out_leaves_no_invalid_index(
    ports: Any, engine: LocalPostgresEngine
) -> None:
    _workload(engine, calls=10, writes=0)
    result = indexes.analyze(ports, CALLER, SERVER_ID, None)
    (writers,) = [r for r in result.recommendations if r.type == "CREATE" and r.table_name == "writers"]
    # An open snapshot in the database: the build waits for it past its lock_timeout.
    with _app(engine) as blocker:
        blocker.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM public.tiny")
        record, _ = indexes.find_recommendation(ports, CALLER, writers.id)
        op = workflows.start(ports, record, [writers.id], 300)
        line = operations.run(ports, op["id"])
        blocker.execute("ROLLBACK")
    assert "failed at apply" in line and "lock" in line, line
    assert "dropped the invalid index" in line, line
    with engine.connect(SERVER_ID, "shop") as conn:
        left = conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'writers_email_idx'").fetchone()
    assert left == (0,)
    _, failed = indexes.find_recommendation(ports, CALLER, writers.id)
    assert failed["status"] == "FAILED"


@pytest.fixture(scope="module")
def server_18(engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    spec = ServerSpec(SERVER_18, "18", free_port(), memory_mb=256)
    try:
        engine.provision(spec)
        engine.start(spec)
        with engine.connect(SERVER_18) as conn:
            ensure_role_and_database(conn, "shop", "shop_app", PASSWORD)
        with _app(engine, SERVER_18) as conn:
            conn.execute(
                "CREATE TABLE public.readers (id bigserial PRIMARY KEY, email text NOT NULL, note text)"
            )
            conn.execute(
                "INSERT INTO public.readers (email, note) SELECT 'u' || g, md5(g::text) FROM generate_series(1, 20000) g"
            )
            conn.execute("CREATE INDEX readers_note_idx ON public.readers (note)")
            conn.execute("ANALYZE")
        yield spec
    finally:
        engine.destroy(SERVER_18)


@needs_18
def test_without_hypopg_pg18_says_so_and_suggests_nothing_unproven(
    home: Path, engine: LocalPostgresEngine, server_18: ServerSpec
) -> None:
    ports = FakePorts(home)
    ports.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    _register(ports, SERVER_18, server_18.port)
    with _app(engine, SERVER_18) as conn:
        for i in range(20):
            conn.execute("SELECT note FROM public.readers WHERE email = %s", (f"u{i}",))
            conn.execute("SELECT note FROM public.readers WHERE id = %s", (i,))
    result = indexes.analyze(ports, CALLER, SERVER_18, None)
    assert [r for r in result.recommendations if r.type == "CREATE"] == []
    assert not result.summary.what_if and result.summary.statements_analyzed >= 2
    assert any("hypopg is not installed" in n for n in result.summary.notes), result.summary.notes
    by_name = {i.index_name: i for i in result.indexes}
    assert by_name["readers_note_idx"].findings == ["UNUSED"]
    assert by_name["readers_pkey"].usage_statistics.scans >= 20
    assert by_name["readers_pkey"].usage_statistics.last_used is not None  # last_idx_scan, 16+
