"""A new user's walk through the cluster API against the real local stack: Patroni, etcd and
PostgreSQL nodes behind the gateway, worker and ticker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from pgfleet.adapters.engines.local import patroni_rest
from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from tests.helpers import LocalStack, running_stack, wait_for

CLUSTERS = "/api/v1/postgres/cluster"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-ha-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def cluster(stack: LocalStack, token: str) -> dict:
    started = time.monotonic()
    status, body = stack.request(
        "POST", CLUSTERS, {"name": "ha-db", "node_count": 3, "replication_mode": "sync"}, token
    )
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=240)
    print(f"3-node cluster created in {time.monotonic() - started:.1f}s")
    return body


def _write(uri: str, value: int) -> None:
    with psycopg.connect(uri, connect_timeout=3, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events (id int primary key)")
        conn.execute("INSERT INTO events VALUES (%s)", (value,))


def _count(uri: str) -> int:
    with psycopg.connect(uri, connect_timeout=3) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _get(stack: LocalStack, token: str, cid: str) -> dict:
    status, body = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert status == 200, body
    return body


def test_write_and_replication_status(stack: LocalStack, token: str, cluster: dict) -> None:
    _write(cluster["credentials"]["uri"], 1)

    def streaming() -> dict | None:
        status, rs = stack.request("GET", f"{CLUSTERS}/{cluster['id']}/replication/status", token=token)
        assert status == 200, rs
        assert rs["primary"] and len(rs["replicas"]) == 2
        healthy = all(r["state"] == "streaming" and r["is_healthy"] for r in rs["replicas"])
        return rs if healthy else None

    # The first backup starts as the cluster turns running: its WAL switch shows as lag until
    # Patroni publishes the replicas' positions again (once a loop, 10 s).
    rs = wait_for(streaming, 30, interval=0.5, what="both replicas streaming and healthy")
    assert all(r["lag_bytes"] < 1024 * 1024 for r in rs["replicas"])
    assert _count(cluster["credentials"]["read_only_uri"]) == 1


def test_promote_keeps_every_row(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    got = _get(stack, token, cid)
    # Quorum commit: any healthy replica may be named, not only Patroni's synchronous standby.
    for candidate in sorted(n["id"] for n in got["nodes"] if n["role"] == "replica"):
        wait_for(
            lambda node=candidate: _ready_to_take_over(_get(stack, token, cid), node),
            timeout=60, interval=0.5, what=f"{candidate} streaming on the primary's timeline",
        )  # fmt: skip
        status, body = stack.request("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": candidate}, token)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], token)
        assert _get(stack, token, cid)["primary"] == candidate
    got = _get(stack, token, cid)
    assert got["primary"] == candidate
    _write(cluster["credentials"]["uri"], 2)
    assert _count(cluster["credentials"]["uri"]) == 2


def _ready_to_take_over(cluster: dict, node_id: str) -> bool:
    """What promote asks of a candidate: streaming on the primary's timeline, at most 1 MB behind
    (a first backup's WAL switch shows as lag until Patroni publishes the positions again)."""
    nodes = {n["id"]: n for n in cluster["nodes"]}
    primary = nodes.get(cluster["primary"] or "")
    node = nodes[node_id]
    caught_up = node.get("lag_bytes") is not None and node["lag_bytes"] <= 1024 * 1024
    return (
        primary is not None
        and node["state"] == "streaming"
        and node["timeline"] == primary["timeline"]
        and caught_up
    )


def test_primary_loss_fails_over_by_itself(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    engine = LocalPatroniEngine(stack.home / "data", f"http://127.0.0.1:{stack.etcd_port}")
    # In sync mode Patroni promotes only the synchronous standby (so no acknowledged commit is
    # lost): kill the primary once one is designated, as it is in steady state.
    wait_for(
        lambda: patroni_rest.sync_standbys(engine._observe(cid)[1]), timeout=60, what="a synchronous standby"
    )
    old_primary = _get(stack, token, cid)["primary"]
    engine.kill_node(cid, old_primary)
    killed = time.monotonic()

    def writable() -> bool:
        try:
            _write(cluster["credentials"]["uri"], 3)
            return True
        except psycopg.Error:
            return False

    wait_for(writable, timeout=60, interval=0.5, what="writes through the multi-host URI after failover")
    print(f"writes resumed {time.monotonic() - killed:.1f}s after kill -9 of the primary node")
    new_primary = _get(stack, token, cid)["primary"]
    assert new_primary and new_primary != old_primary
    status, rs = stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)
    assert rs["primary"] == new_primary
    # reconcile restarts the killed node (within a minute), which rejoins as a replica
    wait_for(
        lambda: {n["id"]: n for n in _get(stack, token, cid)["nodes"]}[old_primary]["state"] == "streaming",
        timeout=120, interval=2, what="the old primary to rejoin as a streaming replica",
    )  # fmt: skip
    assert _count(cluster["credentials"]["uri"]) == 3


def test_scale_up_then_down(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    for target in (5, 2):
        status, body = stack.request("POST", f"{CLUSTERS}/{cid}/scale", {"node_count": target}, token)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], token, timeout=240)
        got = _get(stack, token, cid)
        assert got["node_count"] == target and got["primary"] in {n["id"] for n in got["nodes"]}
        assert _count(cluster["credentials"]["uri"]) == 3


def test_stats_logs_stop_start_delete(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    status, stats = stack.request("GET", f"{CLUSTERS}/{cid}/stats", token=token)
    assert status == 200 and len(stats["nodes"]) == 2 and stats["cluster"]["database_size_bytes"] > 0
    status, logs = stack.request("GET", f"{CLUSTERS}/{cid}/logs?limit=50", token=token)
    assert status == 200 and logs["lines"] and all(ln["node"] for ln in logs["lines"])
    for action in ("stop", "start"):
        status, body = stack.request("POST", f"{CLUSTERS}/{cid}/{action}", token=token)
        assert status == 202, body
        stack.wait_operation(body["operation_id"], token, timeout=180)
    assert _count(cluster["credentials"]["uri"]) == 3
    status, body = stack.request("DELETE", f"{CLUSTERS}/{cid}", token=token)
    stack.wait_operation(body["operation_id"], token)
    assert stack.request("GET", f"{CLUSTERS}/{cid}", token=token)[0] == 404
    assert not (stack.home / "data" / "clusters" / cid).exists()
