"""UC8 against the real local stack: a single instance with data (and a tenant, a quota, a
backup schedule) migrated into a 3-node Patroni cluster (a standby cluster of it), cut over by
hand under a writer that never stops and never changes its URI (the source's: after the
cutover it forwards to the cluster's primary), then a switchover on the new cluster with the
writer still on the old URI; no acknowledged row is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

MIGRATE = "/api/v1/postgres/migrate"
CLUSTERS = "/api/v1/postgres/cluster"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-mig-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


class Writer(threading.Thread):
    """Commits one row after another through one URI (the source's: the old endpoint, all
    along), reconnecting when a write fails; remembers every row it got a commit for, the port
    of the server that committed it, and when writes failed."""

    def __init__(self, uri: str, password: str) -> None:
        super().__init__(daemon=True)
        self.uri = uri
        self.password = password
        self.acked: dict[int, int] = {}  # id -> port of the server that committed it
        self.failed_at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        value = 1000
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            value += 1
            try:
                if conn is None:
                    conn = psycopg.connect(
                        self.uri, password=self.password, connect_timeout=2, autocommit=True
                    )
                row = conn.execute(
                    "INSERT INTO events (id, via) VALUES (%s, 'writer') RETURNING pg_catalog.inet_server_port()",
                    (value,),
                ).fetchone()
                assert row is not None
                self.acked[value] = int(row[0])
            except psycopg.Error:
                self.failed_at.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def refused_seconds(self, since: float, until: float) -> float:
        """From the first to the last failed write in [since, until]."""
        window = [t for t in self.failed_at if since <= t <= until]
        return (max(window) - min(window)) if window else 0.0


def _migration(stack: LocalStack, token: str, mid: str) -> dict:
    status, got = stack.request("GET", f"{MIGRATE}/{mid}", token=token)
    assert status == 200, got
    assert got["phase"] != "failed", got
    return got


def test_migrate_under_writes_then_switchover(stack: LocalStack, token: str) -> None:
    status, source = stack.request("POST", "/api/v1/postgres/single", {"name": "shop-db"}, token)
    assert status == 202, source
    stack.wait_created(source["operation_id"], token)
    password = source["credentials"]["password"]
    with psycopg.connect(source["credentials"]["uri"], autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int PRIMARY KEY, via text NOT NULL)")
        conn.execute("INSERT INTO events SELECT g, 'seed' FROM generate_series(1, 1000) g")

    # Bad input against the real stack.
    bad = {"source_id": source["id"], "target_type": "cluster", "node_count": 3}
    assert stack.request("POST", MIGRATE, {**bad, "node_count": 12}, token)[0] == 422
    assert stack.request("POST", MIGRATE, bad, stack.token("operator", "other"))[0] == 404

    # A tenant, a quota and a backup schedule that move with the data.
    status, tenant = stack.request(
        "POST", f"/api/v1/postgres/single/{source['id']}/tenants", {"tenant_id": "blue"}, token
    )
    assert status == 201, tenant
    quota = {"max_storage_mb": 2000, "max_connections": 50}
    assert stack.request("PUT", f"/api/v1/postgres/single/{source['id']}/quota", quota, token)[0] == 200
    schedule = {"full_backup_cron": "cron(0 3 * * ? *)", "retention_days": 9}
    assert (
        stack.request("PUT", f"/api/v1/postgres/single/{source['id']}/backup/schedule", schedule, token)[0]
        == 200
    )

    started = time.monotonic()
    status, body = stack.request("POST", MIGRATE, {**bad, "cutover_mode": "manual"}, token)
    assert status == 202, body
    assert body["credentials"]["password"] == password  # the role and password moved with the data
    assert {m["what"].split(" (")[0] for m in body["moved"]} >= {"tenants", "quota", "backup schedule"}, body
    mid = body["id"]
    # One migration of a source at a time.
    status, again = stack.request("POST", MIGRATE, bad, token)
    assert status == 409 and mid in again["error"]["message"], again
    old_uri = source["credentials"]["uri"]
    source_port = source["endpoint"]["port"]
    writer = Writer(old_uri, password)
    writer.start()
    try:
        ready = wait_for(
            lambda: (m := _migration(stack, token, mid))["phase"] == "ready" and m, timeout=150,
            interval=0.5, what="the migration ready for its cutover",
        )  # fmt: skip
        built = time.monotonic() - started
        print(f"cluster built and caught up in {built:.1f}s; lag {ready['lag_bytes']} bytes")
        assert ready["lag_bytes"] is not None and ready["steps"][-1]["name"] == "mark_ready"
        time.sleep(1)  # the writer keeps writing to the source while the cluster follows
        assert not writer.failed_at, "the source refused writes before the cutover"

        cut_started = time.monotonic()
        status, cut = stack.request("POST", f"{MIGRATE}/{mid}/cutover", token=token)
        assert status == 202, cut
        done = wait_for(
            lambda: (m := _migration(stack, token, mid))["phase"] == "completed" and m, timeout=90,
            interval=0.2, what="the cutover",
        )  # fmt: skip
        cut_done = time.monotonic()
        print(f"cutover took {cut_done - cut_started:.1f}s")
        # The old URI reaches the new primary: the writer commits there without changing URI.
        cid = done["cluster_id"]
        _, cluster = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
        node_ports = {n["endpoint"]["port"]: n["id"] for n in cluster["nodes"]}
        wait_for(lambda: any(p in node_ports for p in writer.acked.values()), timeout=30,
                 what="a write through the old URI on the new primary")  # fmt: skip
        refused_at_cutover = writer.refused_seconds(cut_started, time.monotonic())
        time.sleep(1)

        # A switchover on the new cluster, the writer still on the old URI.
        assert cluster["status"] == "running" and cluster["node_count"] == 3, cluster
        wait_for(
            lambda: (rs := stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)[1])
            and rs.get("replicas") and all(r["is_healthy"] for r in rs["replicas"]),
            timeout=60, interval=0.5, what="the cluster's replica streaming",
        )  # fmt: skip
        replica = next(n["id"] for n in cluster["nodes"] if n["role"] == "replica")
        switch_started = time.monotonic()
        status, promoted = stack.request("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": replica}, token)
        assert status == 202, promoted
        stack.wait_operation(promoted["operation_id"], token)
        new_port = next(p for p, n in node_ports.items() if n == replica)
        wait_for(lambda: new_port in list(writer.acked.values())[-5:], timeout=30,
                 what="writes through the old URI on the switched-over primary")  # fmt: skip
        refused_at_switchover = writer.refused_seconds(switch_started, time.monotonic())
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join(10)
    landed = list(writer.acked.values())
    print(
        f"writer (old URI all along): {landed.count(source_port)} rows on the source, "
        f"{sum(1 for p in landed if p in node_ports)} on the cluster; writes refused for "
        f"{refused_at_cutover:.1f}s at the cutover, {refused_at_switchover:.1f}s at the switchover"
    )
    assert landed.count(source_port) > 0 and landed.count(new_port) > 0

    # Every acknowledged row is on the new cluster, and the seed data too.
    target = done["target"]
    assert password not in target["uri"] and done["old_endpoint"].startswith("forwarded"), done
    with psycopg.connect(target["uri"], password=password, autocommit=True) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM events WHERE id > 0")}
        assert conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0] is False
    missing = set(writer.acked) - ids
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:5]}"
    assert set(range(1, 1001)) <= ids
    with psycopg.connect(old_uri, password=password, autocommit=True) as conn:
        assert conn.info.port == source_port
        assert conn.execute("SELECT pg_catalog.inet_server_port()").fetchone()[0] == new_port
    _, cluster = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert cluster["primary"] == replica
    got = _migration(stack, token, mid)
    assert got["old_endpoint"].endswith(f"(now {replica})"), got

    # The tenant, its quota and the backup schedule moved to the cluster.
    _, moved = stack.request("GET", f"{CLUSTERS}/{cid}/tenants", token=token)
    assert [t["tenant_id"] for t in moved["tenants"]] == ["blue"], moved
    with psycopg.connect(tenant["credentials"]["uri"], autocommit=True) as conn:  # its old URI, too
        assert conn.execute("SELECT pg_catalog.inet_server_port()").fetchone()[0] == new_port
    _, moved_quota = stack.request("GET", f"{CLUSTERS}/{cid}/quota", token=token)
    assert moved_quota["max_connections"] == 50, moved_quota
    _, moved_schedule = stack.request("GET", f"{CLUSTERS}/{cid}/backup/schedule", token=token)
    assert moved_schedule["full_backup_cron"] == "cron(0 3 * * ? *)", moved_schedule

    # The source is kept, stopped, its data on disk; it cannot start on the forwarded port.
    _, src = stack.request("GET", f"/api/v1/postgres/single/{source['id']}", token=token)
    assert src["status"] == "stopped" and f"migrated to cluster {cid}" in src["status_reason"], src
    status, refused = stack.request("POST", f"/api/v1/postgres/single/{source['id']}/start", token=token)
    assert status == 409, refused

    # Deleting the source stops the forwarding; the cluster stays.
    status, deleting = stack.request("DELETE", f"/api/v1/postgres/single/{source['id']}", token=token)
    assert status == 202, deleting
    wait_for(lambda: stack.request("GET", f"/api/v1/postgres/single/{source['id']}", token=token)[0] == 404,
             timeout=60, what="the source deleted")  # fmt: skip
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(old_uri, password=password, connect_timeout=2).close()
    with psycopg.connect(target["uri"], password=password, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE id > 0").fetchone()[0] >= len(writer.acked)
