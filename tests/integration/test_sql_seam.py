"""The SQL seam (pgfleet.ports.sql) against real PostgreSQL 15 servers of the local engine.

One primary and one streaming replica run for the whole module, plus a server that is
provisioned but never started. Everything is destroyed in finalizers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.ports.engine import ServerSpec
from pgfleet.ports.sql import StatementCancelled
from tests.helpers import free_port, scratch_home

pytestmark = pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15")

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-sql-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture(scope="module")
def primary(engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    # The server's own defaults differ from what a platform session is pinned to.
    settings = {"statement_timeout": "0", "lock_timeout": "0", "search_path": '"$user", public'}
    spec = ServerSpec("pgi-sqlseam", "15", free_port(), memory_mb=256, settings=settings)
    try:
        engine.provision(spec)
        engine.start(spec)
        engine.ensure_database(spec.server_id, "app", "app_owner", "app password")
        with engine.connect(spec.server_id) as conn:  # raw: creates an object of its own
            conn.execute("CREATE TABLE public.held (id int)")
        yield spec
    finally:
        engine.destroy(spec.server_id)


@pytest.fixture(scope="module")
def replica(engine: LocalPostgresEngine, primary: ServerSpec) -> Iterator[ServerSpec]:
    spec = ServerSpec("pgr-sqlseam", "15", free_port(), memory_mb=256)
    try:
        engine.provision_replica(spec, primary.server_id)
        engine.start(spec)
        yield spec
    finally:
        engine.destroy(spec.server_id)


@pytest.fixture(scope="module")
def target(engine: LocalPostgresEngine, home: Path) -> LocalSqlTarget:
    # The cluster engine is only asked about clusters on disk here: no etcd is needed.
    return LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))


def test_session_is_pinned(target: LocalSqlTarget, primary: ServerSpec) -> None:
    with target.session(primary.server_id, statement_timeout_ms=2000, lock_timeout_ms=1500) as session:
        row = session.fetch_one(
            "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('lock_timeout'),"
            " pg_catalog.current_setting('statement_timeout'), pg_catalog.current_database()"
        )
        assert row == ("pg_catalog, pg_temp", "1500ms", "2s", "postgres")
        # Nothing a tenant creates in public stands in for what the platform names unqualified.
        assert session.fetch_one("SELECT pg_catalog.current_schemas(false)") == (["pg_catalog"],)


def test_defaults_and_database(target: LocalSqlTarget, primary: ServerSpec) -> None:
    with target.session(primary.server_id, database="app") as session:
        assert session.fetch_all(
            "SELECT pg_catalog.current_database(), pg_catalog.current_setting('statement_timeout'),"
            " pg_catalog.current_setting('lock_timeout')"
        ) == [("app", "30s", "5s")]
        assert session.fetch_all("SET application_name = 'x'") == []
    with pytest.raises(EngineError, match="cannot connect to server pgi-sqlseam"):
        with target.session(primary.server_id, database="no_such_database"):
            pass


def test_the_engine_administers_through_pinned_sessions(
    engine: LocalPostgresEngine, primary: ServerSpec
) -> None:
    with engine.administer(primary.server_id, "checking") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog, pg_temp",)
    with engine.connect(primary.server_id) as conn:  # the raw connection for tools and tests
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)


def test_identifiers_through_psycopg_sql(target: LocalSqlTarget, primary: ServerSpec) -> None:
    query = sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(sql.Identifier("public", "held"))
    with target.session(primary.server_id) as session:
        assert session.fetch_one(query) == (0,)


def test_long_statement_is_cancelled(target: LocalSqlTarget, primary: ServerSpec) -> None:
    with target.session(primary.server_id, statement_timeout_ms=200) as session:
        started = time.monotonic()
        with pytest.raises(StatementCancelled, match="statement_timeout of 200 ms") as caught:
            session.execute("SELECT pg_catalog.pg_sleep(5)")
        assert time.monotonic() - started < 3
        assert "pgi-sqlseam" in str(caught.value) and "canceling statement" in str(caught.value)
        assert session.fetch_one("SELECT 1") == (1,)  # the session survives


def test_lock_wait_is_cancelled(
    engine: LocalPostgresEngine, target: LocalSqlTarget, primary: ServerSpec
) -> None:
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.connect(primary.server_id) as conn, conn.transaction():
            conn.execute("LOCK TABLE public.held IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert locked.wait(10)
        with target.session(primary.server_id, lock_timeout_ms=200) as session:
            with pytest.raises(StatementCancelled, match="lock_timeout of 200 ms"):
                session.execute("SELECT pg_catalog.count(*) FROM public.held")
    finally:
        release.set()
        holder.join(10)


def test_other_errors_name_the_server(target: LocalSqlTarget, primary: ServerSpec) -> None:
    with target.session(primary.server_id) as session:
        with pytest.raises(EngineError, match="statement on server pgi-sqlseam failed") as caught:
            session.execute("SELECT * FROM public.no_such_table")
        assert not isinstance(caught.value, StatementCancelled)


def test_replica_resolves_to_the_standby(
    target: LocalSqlTarget, primary: ServerSpec, replica: ServerSpec
) -> None:
    with target.session(replica.server_id) as session:
        assert session.fetch_one("SELECT pg_catalog.pg_is_in_recovery()") == (True,)
        assert session.fetch_one("SELECT pg_catalog.current_setting('search_path')") == (
            "pg_catalog, pg_temp",
        )
    with target.session(primary.server_id) as session:
        assert session.fetch_one("SELECT pg_catalog.pg_is_in_recovery()") == (False,)


def test_unknown_and_stopped_servers(
    engine: LocalPostgresEngine, target: LocalSqlTarget, primary: ServerSpec
) -> None:
    for unknown in ("pgi-nope", "pgc-nope", "../etc"):
        with pytest.raises(NotFound):
            with target.session(unknown):
                pass
    with pytest.raises(NotFound, match="not a cluster"):
        with target.session(primary.server_id, node="node-1"):
            pass
    stopped = ServerSpec("pgi-sqlseam-stopped", "15", free_port(), memory_mb=128)
    try:
        engine.provision(stopped)
        with pytest.raises(InvalidState, match="not running"):
            with target.session(stopped.server_id):
                pass
    finally:
        engine.destroy(stopped.server_id)
    with pytest.raises(ValueError):
        with target.session(primary.server_id, statement_timeout_ms=0):
            pass
