"""Blue/green between two real Patroni clusters (the engine methods of a cluster's blue/green
upgrade): a 2-node PostgreSQL 15 cluster replicates logically into a green 18 cluster; after
the swap the 18 data serves on blue's id and node ports, with blue's credentials; and
`unswap_clusters` puts the 15 cluster back, its old primary first, taking writes again (the
roll-back of a cutover that failed after the swap).
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
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from tests.helpers import free_port, scratch_home, wait_for

HOST = "127.0.0.1"
BLUE, GREEN, KEPT = "bgblue", "bgblue-green", "bgblue-blue15"
DATABASE, USERNAME, PASSWORD = "appdb", "app", "blue green secret"

pytestmark = pytest.mark.skipif(not Path("/usr/bin/etcd").exists(), reason="needs etcd (Debian etcd-server)")


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalPatroniEngine]:
    with scratch_home("pgfleet-bgc-") as home:
        server = etcd.EtcdServer(home / "etcd", free_port(), free_port())
        server.start()
        eng = LocalPatroniEngine(home / "pgfleet", server.endpoint)
        if not {"15", "18"} <= set(eng.supported_versions()):
            server.stop()
            pytest.skip(f"needs PostgreSQL 15 and 18 for clusters ({eng.supported_versions()})")
        try:
            yield eng
        finally:
            try:
                for cluster_id in (BLUE, GREEN, KEPT):
                    eng.destroy(cluster_id)
            finally:
                patroni_process.kill_everything_under(home / "pgfleet")
                server.stop()


def _spec(cluster_id: str, version: str, nodes: tuple[NodeSpec, ...]) -> ClusterSpec:
    return ClusterSpec(cluster_id, version, nodes, cpu=1, memory_mb=256)


def _start(engine: LocalPatroniEngine, spec: ClusterSpec) -> None:
    for node in spec.nodes:
        engine.provision_node(spec, node)
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    engine.wait_until_healthy(spec, timeout=120)


def _primary(engine: LocalPatroniEngine, cluster_id: str) -> str:
    return next(m.node_id for m in engine.members(cluster_id) if m.role == "primary" and m.running)


def _stop(engine: LocalPatroniEngine, cluster_id: str) -> None:
    leader = _primary(engine, cluster_id)
    for node_id in sorted(engine.node_ids(cluster_id), key=lambda n: n == leader):  # the leader last
        engine.stop_node(cluster_id, node_id)


def _answers(port: int) -> tuple[int, int]:
    """(major version, rows) as the application role sees the server at `port`."""
    with psycopg.connect(
        host=HOST, port=port, dbname=DATABASE, user=USERNAME, password=PASSWORD, connect_timeout=3
    ) as conn:
        version = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
        rows = conn.execute("SELECT count(*) FROM items").fetchone()
    assert version and rows
    return int(version[0]), int(rows[0])


def test_swap_and_unswap(engine: LocalPatroniEngine) -> None:
    nodes = tuple(NodeSpec(f"n{i}", free_port(), free_port()) for i in (1, 2))
    blue = _spec(BLUE, "15", nodes)
    _start(engine, blue)
    engine.ensure_database(BLUE, DATABASE, USERNAME, PASSWORD)
    leader_port = blue.node(_primary(engine, BLUE)).port
    with psycopg.connect(
        host=HOST, port=leader_port, dbname=DATABASE, user=USERNAME, password=PASSWORD, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items (note) SELECT 'row ' || g FROM generate_series(1, 1000) g")

    print(engine.enable_logical_decoding(blue))
    green = _spec(GREEN, "18", tuple(NodeSpec(n.node_id, free_port(), free_port()) for n in nodes))
    print(engine.provision_logical_copy(green, BLUE))
    print(engine.subscribe(GREEN, BLUE))
    wait_for(
        lambda: (p := engine.subscription_progress(GREEN, BLUE)).tables_ready == p.tables_total
        and p.confirmed_position is not None,
        60, what="the initial copy",
    )  # fmt: skip
    final = engine.set_read_only(BLUE, True)
    wait_for(
        lambda: (engine.subscription_progress(GREEN, BLUE).confirmed_position or 0) >= final,
        30,
        what="the apply",
    )
    assert engine.schema_differences(GREEN, BLUE) == []
    print(engine.copy_sequences(GREEN, BLUE), engine.unsubscribe(GREEN, BLUE))
    blue_primary, green_leader = _primary(engine, BLUE), _primary(engine, GREEN)
    _stop(engine, GREEN)
    _stop(engine, BLUE)

    at_18 = _spec(BLUE, "18", nodes)
    print(engine.swap_clusters(at_18, GREEN, KEPT))
    assert engine.cluster_major_version(BLUE) == "18" and engine.cluster_major_version(KEPT) == "15"
    started = time.monotonic()
    print(engine.start_leader(at_18, green_leader, timeout=120))
    engine.start_node(at_18, at_18.node(next(n.node_id for n in nodes if n.node_id != green_leader)))
    print(engine.wait_until_healthy(at_18, timeout=120), f"{time.monotonic() - started:.1f}s after the swap")
    for node in nodes:  # blue's ports, blue's credentials, the rows
        assert _answers(node.port) == (18, 1000), node

    # The way back: the 15 cluster under its id again, its old primary first, taking writes.
    _stop(engine, BLUE)
    print(engine.unswap_clusters(blue, GREEN, KEPT))
    assert engine.cluster_major_version(BLUE) == "15" and engine.cluster_major_version(GREEN) == "18"
    print(engine.start_leader(blue, blue_primary, timeout=120))
    for node in nodes:
        engine.start_node(blue, node)
    engine.wait_until_healthy(blue, timeout=120)
    engine.set_read_only(BLUE, False)
    with psycopg.connect(
        host=HOST, port=blue.node(blue_primary).port, dbname=DATABASE, user=USERNAME, password=PASSWORD,
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute("INSERT INTO items (note) VALUES ('after the way back')")
    for node in nodes:
        wait_for(lambda node=node: _answers(node.port) == (15, 1001), 30, what=f"the row on {node.node_id}")
