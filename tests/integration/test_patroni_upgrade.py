"""The way back of an in-place major-version upgrade of a Patroni cluster (15 -> 18): after
the primary was upgraded and even started on 18, `roll_back_upgrade` brings the 15 cluster back
as it was, every node streaming again with every row. (The way forward is the e2e test
tests/e2e/test_upgrade_cluster_stack.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_process
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from tests.helpers import free_port, scratch_home

FROM, TO = "15", "18"
HOST = "127.0.0.1"
CLUSTER = "upgback"
DATABASE, USERNAME, PASSWORD = "appdb", "app", "upgrade secret"
ROWS = 1000

pytestmark = pytest.mark.skipif(not Path("/usr/bin/etcd").exists(), reason="needs etcd (Debian etcd-server)")


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    with scratch_home("pgfleet-upgback-") as path:
        try:
            yield path
        finally:
            patroni_process.kill_everything_under(path)


@pytest.fixture(scope="module")
def engine(home: Path) -> Iterator[LocalPatroniEngine]:
    server = etcd.EtcdServer(home / "etcd", free_port(), free_port())
    server.start()
    eng = LocalPatroniEngine(home / "pgfleet", server.endpoint)
    if not {FROM, TO} <= set(eng.supported_versions()):
        server.stop()
        pytest.skip(f"PostgreSQL {FROM} and {TO} are both needed ({eng.supported_versions()})")
    try:
        yield eng
    finally:
        try:
            eng.destroy(CLUSTER)
        finally:
            patroni_process.kill_everything_under(home / "pgfleet")
            server.stop()


def _start(engine: LocalPatroniEngine, spec: ClusterSpec, first: str | None = None) -> str:
    for node in spec.nodes:
        engine.provision_node(spec, node)
    if first is not None:
        print(engine.start_leader(spec, first))
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    return engine.wait_until_healthy(spec, timeout=120)


def _rows(port: int) -> int:
    with psycopg.connect(
        host=HOST, port=port, dbname=DATABASE, user=USERNAME, password=PASSWORD, connect_timeout=3
    ) as conn:
        return int(conn.execute("SELECT count(*) FROM public.items").fetchone()[0])  # type: ignore[index]


def _primary(engine: LocalPatroniEngine) -> str:
    primaries = [m.node_id for m in engine.members(CLUSTER) if m.role == "primary" and m.running]
    assert len(primaries) == 1, engine.members(CLUSTER)
    return primaries[0]


def test_roll_back_after_the_upgraded_primary_started(engine: LocalPatroniEngine) -> None:
    nodes = tuple(NodeSpec(f"n{i}", free_port(), free_port()) for i in (1, 2, 3))
    old = ClusterSpec(CLUSTER, FROM, nodes, cpu=1, memory_mb=256)
    new = ClusterSpec(CLUSTER, TO, nodes, cpu=1, memory_mb=256)
    _start(engine, old)
    engine.ensure_database(CLUSTER, DATABASE, USERNAME, PASSWORD)
    primary = _primary(engine)
    with psycopg.connect(
        host=HOST, port=old.node(primary).port, dbname=DATABASE, user=USERNAME, password=PASSWORD,
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute("CREATE TABLE public.items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.items SELECT pg_catalog.generate_series(1, %s)", (ROWS,))

    assert engine.upgrade_check(CLUSTER, TO, link=False) == []
    data, free = engine.upgrade_space(CLUSTER)
    assert 0 < data < free

    with pytest.raises(Exception, match="still run"):
        engine.upgrade_primary(new, primary, link=False)
    for node in sorted(nodes, key=lambda n: n.node_id == primary):
        engine.stop_node(CLUSTER, node.node_id)
    print(engine.upgrade_primary(new, primary, link=False))
    assert "already upgraded" in engine.upgrade_primary(new, primary, link=False)
    print(engine.start_leader(new, primary))
    assert engine.node_version(CLUSTER, primary).startswith(f"{TO}.")

    # The way back, e.g. after a failed verification: the 15 cluster as it was.
    print(engine.roll_back_upgrade(old, primary, TO))
    print(_start(engine, old, first=primary))
    assert _primary(engine) == primary
    for node in nodes:
        assert engine.node_version(CLUSTER, node.node_id).startswith(f"{FROM}."), node
        assert _rows(node.port) == ROWS, node
    status = engine.replication_status(CLUSTER)
    assert all(r.state == "streaming" and r.is_healthy for r in status.replicas), status
    assert not list((home_of(engine) / CLUSTER).glob(f"*/data.before-{TO}"))
    assert not list((home_of(engine) / CLUSTER).glob(f"*/data.upgrade-{TO}"))


def home_of(engine: LocalPatroniEngine) -> Path:
    return engine.cluster_dir(CLUSTER).parent
