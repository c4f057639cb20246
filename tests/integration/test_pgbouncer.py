"""connections/configure against a real PostgreSQL 15 server and a real PgBouncer (Debian
`pgbouncer`): the operation creates the lookup role and function through the SQL seam and
starts PgBouncer as the data-plane user; the app role logs in through it with SCRAM
(auth_query), a superuser cannot, the pool mode and size are what was asked, and reconcile
starts a killed PgBouncer again. Metadata is the unit fakes; everything started is destroyed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.pgbouncer import PGBOUNCER, LocalPgBouncer
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.sql import LocalSqlTarget
from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.domains import servers
from pgfleet.domains.performance import pooling
from pgfleet.domains.performance.pooling_models import ConnectionConfigureRequest
from pgfleet.handlers import domains
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home
from tests.unit.fakes import FakePorts

HOST = "127.0.0.1"
SERVER = "pgi-0000000015bb"
pytestmark = pytest.mark.skipif(
    "15" not in local_pg.installed_binaries() or not Path(PGBOUNCER).exists(),
    reason="needs PostgreSQL 15 and pgbouncer",
)
ADMIN = Principal(sub="t", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({PLATFORM}))
APP_PASSWORD = "app-secret-1"


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-pgbouncer-") as path:
        yield path


@pytest.fixture(scope="module")
def ports(home: Path) -> Iterator[Any]:
    domains.install()
    engine = LocalPostgresEngine(home, host=HOST)
    spec = ServerSpec(SERVER, "15", free_port(), memory_mb=512)
    fake = FakePorts(home)
    fake.engine = engine
    fake.sql = LocalSqlTarget(engine, LocalPatroniEngine(home, "http://127.0.0.1:1", host=HOST))
    fake.pooler = LocalPgBouncer(home, HOST)
    try:
        engine.provision(spec)
        engine.start(spec)
        engine.ensure_database(SERVER, "app", "app_admin", APP_PASSWORD)
        with fake.sql.session(SERVER) as session:
            session.execute("CREATE ROLE boss SUPERUSER LOGIN PASSWORD 'boss-secret'")
        fake.store.create("instance", {
            "id": SERVER, "tenant_id": "acme", "name": "pooled", "status": "running", "desired_state": "running",
            "version": "15", "cpu": 1, "memory": 512, "storage": 1, "endpoint": {"host": HOST, "port": spec.port},
            "database": "app", "username": "app_admin", "created_at": "2026-01-01T00:00:00Z",
        })  # fmt: skip
        fake.secrets.put(f"instances/{SERVER}/app_admin", APP_PASSWORD)
        yield fake
    finally:
        fake.pooler.stop(SERVER, remove=True)
        engine.destroy(SERVER)


def _configure(ports: Any, **pooler: Any) -> Any:
    body = ConnectionConfigureRequest.model_validate({"targetId": SERVER, "poolerConfiguration": pooler})
    answer = pooling.configure(ports, ADMIN, body)
    ports.drain()
    op = ports.store.get("operation", answer.operation_id)
    assert op["status"] == "succeeded", op
    return answer


def _backend_pid(uri: str) -> tuple[psycopg.Connection, int]:
    conn = psycopg.connect(uri, autocommit=True, connect_timeout=5)
    row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
    assert row is not None
    return conn, int(row[0])


def test_app_role_logs_in_through_the_pooler_and_a_superuser_cannot(ports: Any) -> None:
    answer = _configure(ports, poolMode="transaction", defaultPoolSize=1, maxClientConnections=20)
    uri = answer.credentials.pooler_uri
    assert f":{answer.pooler.port}/app" in uri
    with psycopg.connect(uri, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, 40 + 2").fetchone() == ("app_admin", 42)
    bad = uri.replace(APP_PASSWORD, "wrong")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bad, connect_timeout=5)
    superuser = f"postgresql://boss:boss-secret@{HOST}:{answer.pooler.port}/app"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(superuser, connect_timeout=5)
    # The lookup returns nothing for a superuser even when its owner runs it.
    with ports.sql.session(SERVER, database="app") as session:
        assert session.fetch_one("SELECT * FROM pgfleet_pooler.user_lookup('boss')") == (None, None)
        assert session.fetch_one("SELECT uname FROM pgfleet_pooler.user_lookup('app_admin')") == (
            "app_admin",
        )
        assert session.fetch_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'pgfleet_pooler'"
        ) == (False,)
    # PgBouncer runs as the data-plane user, on the loopback only.
    state = ports.pooler.state(SERVER)
    assert state.running and state.pid is not None
    assert Path(f"/proc/{state.pid}").stat().st_uid == process.data_plane_ids()[0]
    record = ports.store.get("instance", SERVER)
    assert record["pooler"]["status"] == "running" and record["pooler"]["host"] == HOST


def test_pool_mode_and_size_are_applied(ports: Any) -> None:
    uri = _configure(
        ports, poolMode="transaction", defaultPoolSize=1, maxClientConnections=20
    ).credentials.pooler_uri
    first, pid_a = _backend_pid(uri)
    second, pid_b = _backend_pid(uri)
    try:
        # Transaction pooling, a pool of one: two connected clients share one server connection.
        assert pid_a == pid_b
    finally:
        first.close()
        second.close()
    uri = _configure(
        ports, poolMode="session", defaultPoolSize=2, maxClientConnections=20
    ).credentials.pooler_uri
    first, pid_a = _backend_pid(uri)
    second, pid_b = _backend_pid(uri)
    try:
        assert pid_a != pid_b  # session pooling: one server connection per connected client
    finally:
        first.close()
        second.close()


def test_reconcile_starts_a_killed_pgbouncer(ports: Any) -> None:
    answer = _configure(ports, poolMode="transaction", defaultPoolSize=2, maxClientConnections=20)
    pid = ports.pooler.state(SERVER).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ports.pooler.state(SERVER).running and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = pooling.reconcile_poolers(ports)
    assert any("pgbouncer was not running" in line for line in lines), lines
    assert ports.pooler.state(SERVER).pid != pid
    with psycopg.connect(answer.credentials.pooler_uri, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert ports.store.get("instance", SERVER)["pooler"]["status_reason"].startswith("reconcile at")


def test_max_connections_is_applied_with_a_restart_and_the_pooler_serves_again(ports: Any) -> None:
    body = ConnectionConfigureRequest.model_validate({"targetId": SERVER, "maxConnections": 40})
    answer = pooling.configure(ports, ADMIN, body)
    assert answer.restart_required and ports.store.get("instance", SERVER)["status"] == "restarting"
    ports.drain()
    op = ports.store.get("operation", answer.operation_id)
    assert op["status"] == "succeeded", op
    with ports.sql.session(SERVER) as session:
        assert session.fetch_one("SHOW max_connections") == ("40",)
    record = ports.store.get("instance", SERVER)
    assert record["status"] == "running" and "max_connections is 40" in record["status_reason"]
    uri = pooling.pooler_uri(servers.Server("instance", record), record["pooler"], APP_PASSWORD)
    with psycopg.connect(uri, connect_timeout=5) as conn:  # PgBouncer reconnects to the restarted server
        assert conn.execute("SELECT 1").fetchone() == (1,)
