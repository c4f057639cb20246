"""The local engine against real PostgreSQL servers.

One server runs for the whole module; tests leave it running. Every server is destroyed in a
finalizer, and the module checks that no PostgreSQL process is left in its home.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.ports import port_is_free
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ServerSpec
from tests.helpers import scratch_home

pytestmark = pytest.mark.skipif(not local_pg.installed_binaries(), reason="no PostgreSQL binaries installed")

HOST = "127.0.0.1"
DATABASE = "app"
USERNAME = "app_owner"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    assert port_is_free(HOST, port)
    return port


def tcp_connect(port: int, password: str = PASSWORD, user: str = USERNAME) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST,
        port=port,
        user=user,
        password=password,
        dbname=DATABASE,
        connect_timeout=3,
        autocommit=True,
    )


def processes_under(home: Path) -> list[int]:
    """PostgreSQL processes working anywhere below `home`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres" and cwd.startswith(str(home)):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalPostgresEngine]:
    with scratch_home("pgfleet-pg-") as home:
        eng = LocalPostgresEngine(home, host=HOST)
        yield eng
        assert processes_under(eng.home) == []


@pytest.fixture(scope="module")
def spec(engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    server = ServerSpec(server_id="main", version="15", port=free_port(), memory_mb=256, cpu=2)
    try:
        engine.provision(server)
        engine.start(server)
        yield server
    finally:
        engine.destroy(server.server_id)


@pytest.fixture(scope="module")
def tenant(engine: LocalPostgresEngine, spec: ServerSpec) -> ServerSpec:
    """The server with the tenant database and one row in it."""
    assert "created role" in engine.ensure_database(spec.server_id, DATABASE, USERNAME, PASSWORD)
    with tcp_connect(spec.port) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items VALUES (1, 'kept')")
    return spec


def assert_row_kept(port: int) -> None:
    with tcp_connect(port) as conn:
        assert conn.execute("SELECT name FROM items WHERE id = 1").fetchone() == ("kept",)


def test_supported_versions(engine: LocalPostgresEngine) -> None:
    assert "15" in engine.supported_versions()
    assert engine.host == HOST


def test_provision_and_start_are_idempotent(engine: LocalPostgresEngine, spec: ServerSpec) -> None:
    assert engine.provision(spec).startswith("already provisioned")
    assert engine.start(spec) == "already running"
    state = engine.state(spec.server_id)
    assert state.exists and state.running and state.accepting_connections
    assert state.pid is not None
    data = engine.paths(spec.server_id).data
    assert data.stat().st_mode & 0o777 == 0o700
    assert data.stat().st_uid == local_pg.process.data_plane_ids()[0]


def test_configuration_from_spec(engine: LocalPostgresEngine, spec: ServerSpec) -> None:
    with engine.connect(spec.server_id) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("64MB",)
        assert conn.execute("SHOW port").fetchone() == (str(spec.port),)
        assert conn.execute("SHOW max_parallel_workers").fetchone() == ("2",)
        assert conn.execute("SHOW listen_addresses").fetchone() == (HOST,)
        # pgaudit too where Debian's postgresql-15-pgaudit is installed (`make system-packages`).
        preload = "pg_stat_statements,pgaudit" if local_pg.audit_available("15") else "pg_stat_statements"
        assert conn.execute("SHOW shared_preload_libraries").fetchone() == (preload,)
        assert conn.execute("SHOW log_connections").fetchone() == ("on",)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    hba = (engine.paths(spec.server_id).data / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules == [
        ["local", "all", "postgres", "trust"],
        ["local", "replication", "postgres", "trust"],
        # a standby cluster (a migration) only: no server has this role until one is migrated
        ["hostssl", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"],
        ["hostssl", "all", "all", "127.0.0.1/32", "scram-sha-256"],
    ]


def test_settings_override_and_managed_settings_refused(engine: LocalPostgresEngine) -> None:
    spec = ServerSpec("tuned", "15", free_port(), settings={"work_mem": "7MB", "Statement_Timeout": "5s"})
    try:
        assert engine.provision(spec) == "created data directory from template"
        engine.start(spec)
        with engine.connect(spec.server_id) as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        for bad in ({"port": "1"}, {"log_directory": "/tmp"}, {"work_mem": "1MB'\nport = 1"}, {"x y": "1"}):
            with pytest.raises(EngineError):
                engine.provision(ServerSpec("tuned", "15", spec.port, settings=bad))
    finally:
        engine.destroy(spec.server_id)


def test_ensure_database_and_scram_login(engine: LocalPostgresEngine, tenant: ServerSpec) -> None:
    assert_row_kept(tenant.port)
    # Idempotent: the role's password is updated, the database kept.
    assert engine.ensure_database(tenant.server_id, DATABASE, USERNAME, PASSWORD) == "updated role"
    assert_row_kept(tenant.port)
    with engine.connect(tenant.server_id) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (USERNAME,)).fetchone()
        assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")
        # Other roles cannot connect to a tenant's database.
        assert conn.execute(
            "SELECT has_database_privilege('public', %s, 'CONNECT')", (DATABASE,)
        ).fetchone() == (False,)
    # The password never reaches the logs.
    for path in engine.paths(tenant.server_id).log.iterdir():
        assert PASSWORD not in path.read_text(errors="replace")


def test_wrong_password_and_superuser_over_tcp_are_refused(tenant: ServerSpec) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        tcp_connect(tenant.port, password="wrong")
    with pytest.raises(psycopg.OperationalError):
        tcp_connect(tenant.port, user="postgres", password="")


def test_tcp_is_tls_only_and_verifies_against_the_engines_ca(
    engine: LocalPostgresEngine, tenant: ServerSpec
) -> None:
    ca = engine.tls_files().ca_cert
    with psycopg.connect(host=HOST, port=tenant.port, user=USERNAME, password=PASSWORD, dbname=DATABASE,
                         sslmode="verify-full", sslrootcert=str(ca), connect_timeout=3) as conn:  # fmt: skip
        row = conn.execute(
            "SELECT ssl, version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()"
        )
        assert row.fetchone() == (True, "TLSv1.3")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(host=HOST, port=tenant.port, user=USERNAME, password=PASSWORD, dbname=DATABASE,
                        sslmode="disable", connect_timeout=3)  # fmt: skip


def test_a_server_made_before_tls_gets_it_without_a_restart(
    engine: LocalPostgresEngine, tenant: ServerSpec
) -> None:
    paths = engine.paths(tenant.server_id)
    old_config = "".join(
        line for line in paths.config.read_text().splitlines(keepends=True) if not line.startswith("ssl")
    )
    paths.config.write_text(old_config)
    (paths.data / "pg_hba.conf").write_text(local_pg.render_hba(HOST, ssl=False))
    with engine.connect(tenant.server_id) as conn:
        conn.execute("SELECT pg_catalog.pg_reload_conf()")
        started = conn.execute("SELECT pg_catalog.pg_postmaster_start_time()").fetchone()
    time.sleep(0.3)
    with tcp_connect(tenant.port) as conn:  # sslmode prefer: plaintext works again
        pass
    assert "TLS turned on" in (engine.ensure_tls(tenant) or "")
    assert engine.ensure_tls(tenant) is None  # done once
    time.sleep(0.3)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(host=HOST, port=tenant.port, user=USERNAME, password=PASSWORD, dbname=DATABASE,
                        sslmode="disable", connect_timeout=3)  # fmt: skip
    with engine.connect(tenant.server_id) as conn:
        assert conn.execute("SELECT pg_catalog.pg_postmaster_start_time()").fetchone() == started
    assert_row_kept(tenant.port)


def test_ensure_database_refuses_superuser_and_bad_names(
    engine: LocalPostgresEngine, spec: ServerSpec
) -> None:
    with pytest.raises(EngineError, match="refusing to manage role 'postgres'"):
        engine.ensure_database(spec.server_id, "other", "postgres", "x")
    with pytest.raises(EngineError):
        engine.ensure_database(spec.server_id, "a" * 64, USERNAME, "x")
    # Identifiers are quoted, never formatted into SQL.
    odd = 'we"ird; DROP TABLE items; --'
    engine.ensure_database(spec.server_id, odd, odd, "pw")
    with engine.connect(spec.server_id) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (odd,)).fetchone() == (1,)


def test_stats(engine: LocalPostgresEngine, tenant: ServerSpec) -> None:
    with tcp_connect(tenant.port):
        stats = engine.stats(tenant.server_id, DATABASE)
    assert stats.connections_total >= 1
    assert stats.connections_idle >= 1
    assert stats.connections_active + stats.connections_idle <= stats.connections_total
    assert stats.connections_max == 25
    assert stats.database_size_bytes > 1_000_000
    assert stats.uptime_seconds >= 0
    assert stats.commits > 0
    assert stats.rollbacks >= 0 and stats.deadlocks == 0
    assert 0 < stats.cache_hit_ratio <= 1
    assert abs((datetime.now(UTC) - stats.collected_at).total_seconds()) < 5
    with pytest.raises(EngineError, match="does not exist"):
        engine.stats(tenant.server_id, "missing")


def test_logs(engine: LocalPostgresEngine, spec: ServerSpec) -> None:
    lines = engine.logs(spec.server_id, limit=1000)
    assert any("ready to accept connections" in line.message for line in lines)
    assert [line.timestamp for line in lines] == sorted(line.timestamp for line in lines)
    assert all(line.timestamp.tzinfo is not None and line.severity for line in lines)
    assert len(engine.logs(spec.server_id, limit=2)) == 2
    assert engine.logs(spec.server_id, limit=2) == lines[-2:]
    assert engine.logs(spec.server_id, limit=0) == []
    assert engine.logs(spec.server_id, limit=10, since=datetime.now(UTC) + timedelta(hours=1)) == []
    cut = lines[-1].timestamp
    recent = engine.logs(spec.server_id, limit=1000, since=cut)
    assert recent and all(line.timestamp >= cut for line in recent)
    assert len(recent) < len(lines)


def test_stop_refuses_connections_then_start(engine: LocalPostgresEngine, tenant: ServerSpec) -> None:
    assert engine.stop(tenant.server_id) == "stopped"
    assert engine.stop(tenant.server_id) == "already stopped"
    state = engine.state(tenant.server_id)
    assert state.exists and not state.running and not state.accepting_connections
    with pytest.raises(psycopg.OperationalError):
        tcp_connect(tenant.port)
    with pytest.raises(EngineError):
        engine.stats(tenant.server_id, DATABASE)
    assert engine.start(tenant) == "started"
    assert_row_kept(tenant.port)


def test_restart_keeps_data(engine: LocalPostgresEngine, tenant: ServerSpec) -> None:
    before = engine.state(tenant.server_id).pid
    assert engine.restart(tenant) == "restarted"
    state = engine.state(tenant.server_id)
    assert state.accepting_connections and state.pid != before
    assert_row_kept(tenant.port)


def test_kill_9_then_start_recovers(
    engine: LocalPostgresEngine, tenant: ServerSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_pg.postmaster, "ORPHAN_GRACE_S", 1.0)
    with tcp_connect(tenant.port) as conn:
        conn.execute("INSERT INTO items VALUES (2, 'committed before the crash')")
    # A CPU-bound query does not notice the postmaster's death: its backend stays an orphan
    # that start must get rid of before a new postmaster may run.
    busy = tcp_connect(tenant.port)
    worker = threading.Thread(
        target=lambda: pytest.raises(
            psycopg.Error, busy.execute, "SELECT count(*) FROM generate_series(1, 10000000000)"
        ),
        daemon=True,
    )
    worker.start()
    time.sleep(0.3)
    pid = engine.state(tenant.server_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while engine.state(tenant.server_id).running and time.monotonic() < deadline:
        time.sleep(0.05)
    state = engine.state(tenant.server_id)
    assert not state.running and "stale" in state.reason
    assert engine.start(tenant) == "started after unclean shutdown (stale postmaster.pid)"
    worker.join(timeout=10)
    busy.close()
    assert engine.state(tenant.server_id).accepting_connections
    assert_row_kept(tenant.port)
    with tcp_connect(tenant.port) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
    assert engine.logs(tenant.server_id, limit=1000, since=datetime.now(UTC) - timedelta(seconds=30))


def test_missing_server(engine: LocalPostgresEngine) -> None:
    state = engine.state("nope")
    assert not state.exists and not state.running and state.reason == "not provisioned"
    assert not engine.state("../etc").exists
    assert engine.stop("nope") == "not provisioned"
    assert engine.destroy("nope") == "already destroyed"
    with pytest.raises(EngineError, match="not provisioned"):
        engine.start(ServerSpec("nope", "15", free_port()))
    with pytest.raises(EngineError):
        engine.stats("nope", "postgres")
    assert engine.logs("nope", limit=10) == []
    with pytest.raises(EngineError, match="not installed"):
        engine.provision(ServerSpec("nope", "9", free_port()))


def test_lifecycle_twice_is_idempotent_and_destroy_removes_everything(engine: LocalPostgresEngine) -> None:
    spec = ServerSpec("twice", "15", free_port())
    root = engine.paths(spec.server_id).root
    try:
        assert engine.provision(spec) == "created data directory from template"
        assert engine.provision(spec).startswith("already provisioned")
        assert engine.start(spec) == "started"
        assert engine.start(spec) == "already running"
        assert not port_is_free(HOST, spec.port)
        assert engine.stop(spec.server_id) == "stopped"
        assert engine.stop(spec.server_id) == "already stopped"
        assert engine.start(spec) == "started"
    finally:
        assert engine.destroy(spec.server_id) == "destroyed"
    assert engine.destroy(spec.server_id) == "already destroyed"
    assert not root.exists()
    assert not list(root.parent.glob(".twice*"))
    assert processes_under(root) == []
    assert port_is_free(HOST, spec.port)


def test_concurrent_provisions_make_one_template() -> None:
    with scratch_home("pgfleet-pg-") as home:
        _concurrent_provisions_make_one_template(home)


def _concurrent_provisions_make_one_template(tmp_path: Path) -> None:
    engine = LocalPostgresEngine(tmp_path / "home")
    specs = [ServerSpec(f"c{i}", "15", free_port()) for i in range(3)]
    results: dict[str, str] = {}

    def provision(spec: ServerSpec) -> None:
        results[spec.server_id] = engine.provision(spec)

    threads = [threading.Thread(target=provision, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert results == {spec.server_id: "created data directory from template" for spec in specs}
        assert sorted(p.name for p in (engine.home / "templates").iterdir()) == ["15"]
        for spec in specs:
            assert local_pg.is_data_dir(engine.paths(spec.server_id).data)
    finally:
        for spec in specs:
            engine.destroy(spec.server_id)


def test_a_failed_login_is_logged_with_its_source_and_role(
    engine: LocalPostgresEngine, tenant: ServerSpec
) -> None:
    from pgfleet.domains.security import threat_detect

    before = datetime.now(UTC)
    with pytest.raises(psycopg.OperationalError):
        tcp_connect(tenant.port, password="not-the-password")
    deadline = time.monotonic() + 5
    failures: list[threat_detect.LoginFailure] = []
    while not failures and time.monotonic() < deadline:
        lines = engine.logs(tenant.server_id, 200, before)
        failures = [f for f in map(threat_detect.login_failure, lines) if f is not None]
        time.sleep(0.1)
    assert failures, lines
    # sslmode=prefer tries again without TLS, which no pg_hba.conf line admits: a second failure.
    assert failures[0] == threat_detect.LoginFailure(HOST, USERNAME, DATABASE, "password")
    assert {(f.source_ip, f.role) for f in failures} == {(HOST, USERNAME)}


def test_blocked_sources_are_refused_across_rewrites_until_unblocked(
    engine: LocalPostgresEngine, tenant: ServerSpec
) -> None:
    assert HOST in engine.set_blocked_sources(tenant.server_id, [HOST])
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        tcp_connect(tenant.port)
    engine.provision(tenant)  # pg_hba.conf rewritten: the block stays
    assert (
        f"host    all          all       {HOST}/32"
        in (engine.paths(tenant.server_id).data / "pg_hba.conf").read_text()
    )
    engine.set_blocked_sources(tenant.server_id, [])
    with tcp_connect(tenant.port) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_configured_before_gets_the_signals_at_its_restart(
    engine: LocalPostgresEngine, tenant: ServerSpec
) -> None:
    paths = engine.paths(tenant.server_id)
    older = "".join(
        line
        for line in paths.config.read_text().splitlines(keepends=True)
        if not line.startswith(("log_connections", "log_min_error_statement", "pgaudit"))
    ).replace(",pgaudit", "")
    paths.config.write_text(older)
    engine.restart(tenant)
    with engine.connect(tenant.server_id) as conn:
        assert conn.execute("SHOW log_connections").fetchone() == ("on",)
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert preload == (
        ("pg_stat_statements,pgaudit" if local_pg.audit_available("15") else "pg_stat_statements"),
    )
