"""Read replicas of the local engine: streaming standbys of a real PostgreSQL server.

One primary with a tenant database and one replica run for the whole module; the last test
drops the replica. Everything is destroyed in finalizers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ReplicaLag, ServerSpec, replication_slot_name
from tests.helpers import free_port, scratch_home, wait_for

pytestmark = pytest.mark.skipif(not local_pg.installed_binaries(), reason="no PostgreSQL binaries installed")

HOST = "127.0.0.1"
DATABASE = "app"
USERNAME = "app_owner"
PASSWORD = "replicated secret"


def tcp_connect(port: int) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST,
        port=port,
        user=USERNAME,
        password=PASSWORD,
        dbname=DATABASE,
        connect_timeout=3,
        autocommit=True,
    )


def item_count(port: int) -> int:
    with tcp_connect(port) as conn:
        row = conn.execute("SELECT count(*) FROM items").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-replicas-") as path:
        yield path


@pytest.fixture(scope="module")
def engine(home: Path) -> LocalPostgresEngine:
    return LocalPostgresEngine(home, host=HOST)


@pytest.fixture(scope="module")
def primary(engine: LocalPostgresEngine) -> Iterator[ServerSpec]:
    """A running primary with the tenant database and two rows."""
    spec = ServerSpec(server_id="pgi-primary", version="15", port=free_port(), memory_mb=512)
    try:
        engine.provision(spec)
        engine.start(spec)
        engine.ensure_database(spec.server_id, DATABASE, USERNAME, PASSWORD)
        with tcp_connect(spec.port) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
            conn.execute("INSERT INTO items VALUES (1, 'first'), (2, 'second')")
        yield spec
    finally:
        engine.destroy(spec.server_id)


@pytest.fixture(scope="module")
def replica(engine: LocalPostgresEngine, primary: ServerSpec) -> Iterator[ServerSpec]:
    # Less memory than the primary: max_connections must still follow the primary's.
    spec = ServerSpec(server_id="pgr-replica1", version="15", port=free_port(), memory_mb=256)
    try:
        started = time.monotonic()
        reason = engine.provision_replica(spec, primary.server_id)
        assert engine.start(spec) == "started"
        print(f"\nreplica provisioned and started in {time.monotonic() - started:.2f}s ({reason})")
        assert "pg_basebackup" in reason and "created slot pgr_replica1" in reason
        yield spec
    finally:
        engine.destroy(spec.server_id)


def lag_of(engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec) -> ReplicaLag | None:
    slot = replication_slot_name(replica.server_id)
    return next((lag for lag in engine.replica_status(primary.server_id) if lag.slot == slot), None)


def test_replica_serves_the_primary_rows_to_the_app_user(replica: ServerSpec) -> None:
    with tcp_connect(replica.port) as conn:
        assert conn.execute("SELECT id, name FROM items ORDER BY id").fetchall() == [
            (1, "first"),
            (2, "second"),
        ]
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)


def test_replica_refuses_writes(replica: ServerSpec) -> None:
    with tcp_connect(replica.port) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO items VALUES (3, 'nope')")


def test_writes_stream_to_the_replica_and_lag_is_reported(
    engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec
) -> None:
    with tcp_connect(primary.port) as conn:
        conn.execute("INSERT INTO items SELECT g, 'bulk' FROM generate_series(10, 1009) g")
    wait_for(lambda: item_count(replica.port) == 1002, timeout=10, what="rows on the replica")

    def caught_up() -> ReplicaLag | None:
        lag = lag_of(engine, primary, replica)
        return lag if lag is not None and lag.lag_bytes == 0 else None

    lag = wait_for(caught_up, timeout=10, what="zero replay lag")
    assert lag.state == "streaming" and lag.application_name == replica.server_id
    assert lag.lag_seconds is not None and lag.lag_seconds < 5


def test_standby_configuration(engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec) -> None:
    with engine.connect(primary.server_id) as conn:
        primary_max = conn.execute("SHOW max_connections").fetchone()
    with engine.connect(replica.server_id) as conn:
        assert conn.execute("SHOW max_connections").fetchone() == primary_max
        assert conn.execute("SHOW port").fetchone() == (str(replica.port),)
        assert conn.execute("SHOW primary_slot_name").fetchone() == ("pgr_replica1",)
        assert conn.execute("SHOW hot_standby").fetchone() == ("on",)
    paths = engine.paths(replica.server_id)
    assert (paths.data / "standby.signal").exists()
    assert any(paths.log.glob("*.json")), "the replica logs into its own directory"


def test_provision_replica_is_idempotent(
    engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec
) -> None:
    assert engine.provision_replica(replica, primary.server_id).startswith("already provisioned")
    assert engine.start(replica) == "already running"
    assert item_count(replica.port) >= 2


def test_stopped_replica_shows_disconnected_then_catches_up(
    engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec
) -> None:
    engine.stop(replica.server_id)
    with tcp_connect(primary.port) as conn:
        conn.execute("INSERT INTO items VALUES (2000, 'while the replica was down')")
    lag = lag_of(engine, primary, replica)
    assert lag is not None and lag.state == "disconnected" and lag.application_name == ""
    assert lag.lag_bytes > 0 and lag.lag_seconds is None
    engine.start(replica)
    wait_for(lambda: item_count(replica.port) == 1003, timeout=15, what="the replica to catch up")


def test_source_must_run(engine: LocalPostgresEngine) -> None:
    with pytest.raises(EngineError, match="not provisioned"):
        engine.provision_replica(ServerSpec("pgr-orphan", "15", free_port()), "pgi-missing")
    with pytest.raises(EngineError):
        engine.replica_status("pgi-missing")


def test_drop_the_replica_and_its_slot(
    engine: LocalPostgresEngine, primary: ServerSpec, replica: ServerSpec
) -> None:
    slot = replication_slot_name(replica.server_id)
    assert engine.destroy(replica.server_id) == "destroyed"
    assert engine.drop_replication_slot(primary.server_id, slot) == f"dropped slot {slot}"
    assert engine.drop_replication_slot(primary.server_id, slot) == f"slot {slot} already dropped"
    assert engine.replica_status(primary.server_id) == []
    assert item_count(primary.port) == 1003
