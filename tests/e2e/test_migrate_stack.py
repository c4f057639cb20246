"""UC8 against the real local stack: a single instance with data migrated into a 3-node Patroni
cluster (a standby cluster of it), cut over by hand under a writer that never stops, then a
switchover on the new cluster."""

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
    """Commits one row after another, to the source while it takes writes, then to the
    cluster's read-write URI; remembers every row it got a commit for and when writes failed."""

    def __init__(self, source_uri: str, cluster_uri: str, password: str) -> None:
        super().__init__(daemon=True)
        self.uris = {"source": source_uri, "cluster": cluster_uri}
        self.password = password
        self.acked: dict[int, str] = {}
        self.failed_at: list[float] = []
        self.stop = threading.Event()

    def _insert(self, target: str, value: int) -> None:
        with psycopg.connect(
            self.uris[target], password=self.password, connect_timeout=2, autocommit=True
        ) as c:
            c.execute("INSERT INTO events (id, via) VALUES (%s, %s)", (value, target))

    def run(self) -> None:
        value, target = 1000, "source"
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            value += 1
            try:
                if conn is None:
                    conn = psycopg.connect(
                        self.uris[target], password=self.password, connect_timeout=2, autocommit=True
                    )
                conn.execute("INSERT INTO events (id, via) VALUES (%s, %s)", (value, target))
                self.acked[value] = target
            except psycopg.Error:
                self.failed_at.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                if target == "source":  # the source refuses writes: is the cluster writable yet?
                    try:
                        self._insert("cluster", -value)  # a probe, not counted
                        target = "cluster"
                    except psycopg.Error:
                        time.sleep(0.05)
                else:
                    time.sleep(0.05)
        if conn is not None:
            conn.close()


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

    started = time.monotonic()
    status, body = stack.request("POST", MIGRATE, {**bad, "cutover_mode": "manual"}, token)
    assert status == 202, body
    assert body["credentials"]["password"] == password  # the role and password moved with the data
    mid = body["id"]
    writer = Writer(source["credentials"]["uri"], body["credentials"]["uri"], password)
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
        print(f"cutover took {time.monotonic() - cut_started:.1f}s")
        wait_for(lambda: "cluster" in writer.acked.values(), timeout=30, what="a write on the new primary")
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join(10)
    refused = (max(writer.failed_at) - min(writer.failed_at)) if writer.failed_at else 0.0
    vias = list(writer.acked.values())
    print(
        f"writer: {vias.count('source')} rows on the source, {vias.count('cluster')} on the cluster;"
        f" writes refused for {refused:.1f}s"
    )
    assert vias.count("source") > 0 and vias.count("cluster") > 0

    # Every acknowledged row is on the new cluster, and the seed data too.
    target = done["target"]
    assert password not in target["uri"] and done["old_endpoint"].startswith("read-only")
    with psycopg.connect(target["uri"], password=password, autocommit=True) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM events WHERE id > 0")}
        assert conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0] is False
    missing = set(writer.acked) - ids
    assert not missing, f"{len(missing)} acknowledged rows lost, e.g. {sorted(missing)[:5]}"
    assert set(range(1, 1001)) <= ids

    # The source is kept, read-only.
    with psycopg.connect(source["credentials"]["uri"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE id <= 1000").fetchone()[0] == 1000
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO events VALUES (-1, 'late')")
    _, src = stack.request("GET", f"/api/v1/postgres/single/{source['id']}", token=token)
    assert src["status"] == "running" and "read-only" in src["status_reason"]

    # The new cluster: replicas stream, and a switchover keeps every row.
    cid = done["cluster_id"]
    wait_for(
        lambda: (rs := stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)[1])
        and rs.get("replicas") and all(r["is_healthy"] for r in rs["replicas"]),
        timeout=60, interval=0.5, what="the cluster's replica streaming",
    )  # fmt: skip
    _, cluster = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert cluster["status"] == "running" and cluster["node_count"] == 3, cluster
    replica = next(n["id"] for n in cluster["nodes"] if n["role"] == "replica")
    status, promoted = stack.request("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": replica}, token)
    assert status == 202, promoted
    stack.wait_operation(promoted["operation_id"], token)
    with psycopg.connect(target["uri"], password=password, autocommit=True) as conn:
        conn.execute("INSERT INTO events VALUES (-2, 'after switchover')")
        count = conn.execute("SELECT count(*) FROM events WHERE id > 0").fetchone()[0]
    assert count == len(ids)
    _, cluster = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert cluster["primary"] == replica
