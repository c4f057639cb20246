"""Tenants, a tenant quota, a rolling resize and pause/resume on a real 2-node Patroni cluster.

The services run for real on the local Patroni engine; metadata, queue and secrets are the
in-memory fakes and the worker is `drain()`. Tests run in file order on one cluster.
Timings are printed (run with -s), not asserted tightly.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_process
from pgfleet.adapters.engines.local.cgroups import CgroupLimits
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.core import resources
from pgfleet.core.auth import Principal
from pgfleet.core.models import utcnow_iso
from pgfleet.domains.clusters import service as clusters
from pgfleet.domains.quotas import service as quotas
from pgfleet.domains.sizing import service as sizing
from pgfleet.domains.sizing.models import ResizeRequest
from pgfleet.domains.tenants import service as tenants
from pgfleet.domains.tenants.models import TenantCreate
from pgfleet.local import etcd
from tests.helpers import scratch_home
from tests.unit.fakes import FakePorts

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/etcd").exists() or not Path("/usr/lib/postgresql/15/bin/postgres").exists(),
    reason="needs etcd and PostgreSQL 15",
)

HOST = "127.0.0.1"
APP_PASSWORD = secrets.token_urlsafe(16)
OPERATOR = Principal(
    sub="tester", tenant_id="acme", roles=("operator",), permissions=frozenset({"postgres:*"})
)
CREDENTIALS: dict[str, dict[str, Any]] = {}


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def ports() -> Iterator[FakePorts]:
    with scratch_home("pgfleet-ct-") as home:
        client, peer = free_ports(2)
        server = etcd.EtcdServer(home / "etcd", client, peer)
        server.start()
        fake = FakePorts(home)
        fake.cluster_engine = LocalPatroniEngine(home / "data", server.endpoint)  # type: ignore[assignment]
        try:
            yield fake
        finally:
            server.stop()
            patroni_process.kill_everything_under(home)
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ports: FakePorts) -> Iterator[dict[str, Any]]:
    """A running 2-node cluster registered as `clusters.create` would leave it."""
    cid = f"pgc-{secrets.token_hex(6)}"
    p = free_ports(4)
    now = utcnow_iso()
    record = {
        "id": cid, "tenant_id": "acme", "name": "ct-db", "status": "running", "status_reason": "",
        "desired_state": "running", "version": "15", "node_count": 2, "replication_mode": "async",
        "primary": None, "cpu": 1, "memory": 512, "storage": 2, "database": "app", "username": "app_admin",
        "created_at": now, "updated_at": now, "operation_id": None,
        "nodes": [
            {"id": f"n{i + 1}", "name": f"ct-db-n{i + 1}", "role": "unknown", "state": "creating",
             "endpoint": {"host": HOST, "port": p[2 * i]}, "rest_port": p[2 * i + 1],
             "timeline": None, "lag_bytes": None}
            for i in range(2)
        ],
    }  # fmt: skip
    engine = ports.cluster_engine
    spec = clusters.cluster_spec(record)
    started = time.monotonic()
    for node in spec.nodes:
        engine.provision_node(spec, node)
    with ThreadPoolExecutor(len(spec.nodes)) as pool:
        list(pool.map(lambda node: engine.start_node(spec, node), spec.nodes))
    engine.wait_until_healthy(spec, timeout=120)
    engine.ensure_database(cid, "app", "app_admin", APP_PASSWORD)
    print(f"\n2-node cluster up in {time.monotonic() - started:.1f}s")
    ports.store.create("cluster", record)
    clusters.refresh_topology(ports, ports.store.get("cluster", cid))  # type: ignore[arg-type]
    yield ports.store.get("cluster", cid)  # type: ignore[misc]
    engine.destroy(cid)
    assert not CgroupLimits().directory("memory", f"{cid}.n1").exists()


def _uri(cluster: dict[str, Any], user: str, password: str, database: str) -> str:
    hosts = ",".join(f"{HOST}:{n['endpoint']['port']}" for n in cluster["nodes"])
    return (
        f"postgresql://{user}:{password}@{hosts}/{database}?target_session_attrs=read-write&connect_timeout=3"
    )


def _connect(cluster: dict[str, Any], creds: dict[str, Any], database: str) -> psycopg.Connection:
    return psycopg.connect(_uri(cluster, creds["username"], creds["password"], database), autocommit=True)


def _on_node(cluster: dict[str, Any], node_id: str, database: str = "app") -> psycopg.Connection:
    port = next(n["endpoint"]["port"] for n in cluster["nodes"] if n["id"] == node_id)
    return psycopg.connect(
        host=HOST, port=port, user="app_admin", password=APP_PASSWORD, dbname=database, autocommit=True,
        connect_timeout=3,
    )  # fmt: skip


def test_tenants_on_the_primary_each_in_its_own_database(ports: FakePorts, cluster: dict[str, Any]) -> None:
    for body in ({"tenant_id": "tenant-x", "quota": {"max_storage_mb": 12}}, {"tenant_id": "tenant-y"}):
        created = tenants.create(ports, OPERATOR, "cluster", cluster["id"], TenantCreate(**body))  # type: ignore[arg-type]
        CREDENTIALS[created["tenant_id"]] = created["credentials"]
        assert "target_session_attrs=read-write" in created["credentials"]["uri"]
    x, y = CREDENTIALS["tenant-x"], CREDENTIALS["tenant-y"]
    with _connect(cluster, x, "tenant_x") as conn:
        conn.execute("CREATE TABLE notes (id int, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'x only')")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(cluster, y, "tenant_x")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        _connect(cluster, x, "tenant_y")
    listed = {
        t["tenant_id"]: t for t in tenants.list_tenants(ports, OPERATOR, "cluster", cluster["id"])["tenants"]
    }
    assert listed["tenant-x"]["quota_used"]["storage_mb"] > 5


def test_a_tenant_over_its_quota_reads_but_cannot_write(ports: FakePorts, cluster: dict[str, Any]) -> None:
    x = CREDENTIALS["tenant-x"]
    with _connect(cluster, x, "tenant_x") as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 120000) g"
        )
    lines = quotas.run(ports)
    assert any("tenant tenant-x: writes suspended" in line for line in lines), lines
    with _connect(cluster, x, "tenant_x") as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO notes VALUES (2, 'over quota')")
        conn.execute("TRUNCATE filler")
    lines = quotas.run(ports)
    assert any("tenant tenant-x: writes restored" in line for line in lines), lines
    with _connect(cluster, x, "tenant_x") as conn:
        conn.execute("INSERT INTO notes VALUES (2, 'back under')")


def test_rolling_resize_restarts_replicas_then_switches_over(
    ports: FakePorts, cluster: dict[str, Any]
) -> None:
    cid = cluster["id"]
    old_primary = ports.store.get("cluster", cid)["primary"]  # type: ignore[index]
    with _connect(cluster, {"username": "app_admin", "password": APP_PASSWORD}, "app") as conn:
        conn.execute("CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    stop = threading.Event()
    written: list[float] = []

    def writer() -> None:
        uri = _uri(cluster, "app_admin", APP_PASSWORD, "app")
        while not stop.is_set():
            try:
                with psycopg.connect(uri, autocommit=True) as conn:
                    while not stop.is_set():
                        conn.execute("INSERT INTO ticks DEFAULT VALUES")
                        written.append(time.monotonic())
                        time.sleep(0.05)
            except psycopg.Error:
                time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started = time.monotonic()
    record = sizing.resize(ports, OPERATOR, "cluster", cid, ResizeRequest(cpu=2, memory=1024))
    assert record["status"] == "resizing"
    ports.drain()
    took = time.monotonic() - started
    time.sleep(0.5)
    stop.set()
    thread.join(10)
    record = ports.store.get("cluster", cid)
    assert record["status"] == "running", record["status_reason"]
    op = ports.store.get("operation", record["operation_id"])
    assert op["status"] == "succeeded", op["error"]
    assert record["primary"] and record["primary"] != old_primary  # the old primary went last
    for node in record["nodes"]:
        with _on_node(cluster, node["id"]) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == ("256MB",)
            assert conn.execute("SHOW max_connections").fetchone()[0] == "102"
    gaps = [b - a for a, b in zip(written, written[1:], strict=False)]
    longest = max(gaps, default=took)
    print(f"rolling resize took {took:.1f}s; {len(written)} writes, longest pause {longest:.1f}s")
    assert written and longest < took  # writes went on through the replicas' restarts
    limits = CgroupLimits()
    if limits.unavailable_reason() is None:
        for node in record["nodes"]:
            assert limits.memory_limit_bytes(f"{cid}.{node['id']}") == 1024 * 2**20
            assert limits.pids("memory", f"{cid}.{node['id']}"), node["id"]
        assert "enforced by cgroup v1" in record["status_reason"]
    with _connect(cluster, CREDENTIALS["tenant-x"], "tenant_x") as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (2,)


def test_pause_and_resume_a_cluster(ports: FakePorts, cluster: dict[str, Any]) -> None:
    cid = cluster["id"]
    resources.transition(ports, OPERATOR, clusters.CLUSTER, cid, "pause")
    ports.drain()
    assert ports.store.get("cluster", cid)["status"] == "paused"  # type: ignore[index]
    for node in cluster["nodes"]:
        with pytest.raises(psycopg.OperationalError):
            _on_node(cluster, node["id"])
        assert not CgroupLimits().directory("memory", f"{cid}.{node['id']}").exists()
    resources.transition(ports, OPERATOR, clusters.CLUSTER, cid, "resume")
    ports.drain()
    assert ports.store.get("cluster", cid)["status"] == "running"  # type: ignore[index]
    with _connect(cluster, CREDENTIALS["tenant-x"], "tenant_x") as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (2,)
