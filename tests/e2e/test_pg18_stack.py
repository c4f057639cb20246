"""PostgreSQL 18 through the API of the real local stack: a user asks for `"version": "18"`
and gets an 18 single instance (with a read replica) and a 2-node 18 cluster (streaming,
promotable), each with its first backup completed; a version that is not installed is
refused with the installed ones listed.

The first backups go through the backup engine for 18 (Barman, behind the BackupEngine port;
pgBackRest 2.45 cannot back up 18); a cluster's through its primary's private socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgfleet.adapters.engines.local import postgres as local_pg
from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"
CLUSTERS = "/api/v1/postgres/cluster"
VERSION = "18"

pytestmark = pytest.mark.skipif(
    VERSION not in local_pg.installed_binaries(), reason=f"PostgreSQL {VERSION} is not installed"
)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-pg18-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def created(stack: LocalStack, token: str) -> dict[str, dict[str, Any]]:
    """Both resources asked for at once (the worker builds them side by side), returned
    once each create has succeeded."""
    started = time.monotonic()
    status, single = stack.request("POST", SINGLE, {"name": "orders-18", "version": VERSION}, token)
    assert status == 202, single
    status, cluster = stack.request(
        "POST",
        CLUSTERS,
        {"name": "ha-18", "version": VERSION, "node_count": 2, "replication_mode": "sync"},
        token,
    )
    assert status == 202, cluster
    assert single["version"] == cluster["version"] == VERSION
    stack.wait_created(single["operation_id"], token, timeout=240)
    stack.wait_created(cluster["operation_id"], token, timeout=240)
    print(f"\n18 single and 2-node 18 cluster created in {time.monotonic() - started:.1f}s")
    return {"single": single, "cluster": cluster}


def connect(uri: str, endpoint: dict[str, Any] | None = None) -> psycopg.Connection:
    """With the resource's credentials, to `endpoint` (a node's or a replica's) when given."""
    params = conninfo_to_dict(uri)
    if endpoint is not None:
        params.update(host=endpoint["host"], port=str(endpoint["port"]))
        params.pop("target_session_attrs", None)  # a cluster's URI asks for the primary
    return psycopg.connect(**params, connect_timeout=3, autocommit=True)


def server_version(uri: str, endpoint: dict[str, Any] | None = None) -> str:
    with connect(uri, endpoint) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


def version_when_reachable(uri: str, endpoint: dict[str, Any]) -> str:
    """server_version at `endpoint` once the app database is there (a replica replays its
    creation a moment after the primary committed it: quorum commit waits for the WAL only)."""

    def version() -> str | None:
        try:
            return server_version(uri, endpoint)
        except psycopg.OperationalError:
            return None

    return str(wait_for(version, 15, what=f"the app database at {endpoint}"))


def count(uri: str, endpoint: dict[str, Any] | None = None) -> int:
    try:
        with connect(uri, endpoint) as conn:
            return int(conn.execute("SELECT count(*) FROM orders").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return -1


def get(stack: LocalStack, token: str, path: str) -> dict[str, Any]:
    status, body = stack.request("GET", path, token=token)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def test_a_version_not_installed_is_refused(stack: LocalStack, token: str) -> None:
    installed = sorted(local_pg.installed_binaries(), key=int)
    for path, body in ((SINGLE, {"name": "old-db"}), (CLUSTERS, {"name": "old-ha", "node_count": 2})):
        status, refused = stack.request("POST", path, {**body, "version": "11"}, token)
        assert status == 422, refused
        assert refused["error"]["details"] == {"field": "version", "supported": installed}, refused


def test_single_18_serves_18(stack: LocalStack, token: str, created: dict[str, dict[str, Any]]) -> None:
    single = created["single"]
    got = get(stack, token, f"{SINGLE}/{single['id']}")
    assert got["status"] == "running" and got["version"] == VERSION
    uri = single["credentials"]["uri"]
    assert server_version(uri).startswith(f"{VERSION}.")
    with connect(uri) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 20) g")


def test_read_replica_of_the_18_single(
    stack: LocalStack, token: str, created: dict[str, dict[str, Any]]
) -> None:
    single = created["single"]
    path = f"{SINGLE}/{single['id']}/replicas"
    status, body = stack.request("POST", path, {"replica_count": 1, "cpu": 1, "memory": 512}, token)
    assert status == 202, body
    (replica,) = body["replicas"]
    stack.wait_operation(body["operation_ids"][0], token)
    uri, endpoint = single["credentials"]["uri"], replica["endpoint"]
    assert version_when_reachable(uri, endpoint).startswith(f"{VERSION}.")
    assert wait_for(lambda: count(uri, endpoint) == 20, 15, what="the rows on the replica")
    (listed,) = get(stack, token, path)["replicas"]
    assert listed["status"] == "running" and listed["state"] == "streaming"
    status, deleting = stack.request("DELETE", f"{path}/{replica['id']}", token=token)
    assert status == 202, deleting
    stack.wait_operation(deleting["operation_id"], token)


def test_cluster_18_streams(stack: LocalStack, token: str, created: dict[str, dict[str, Any]]) -> None:
    cluster = created["cluster"]
    cid, uri = cluster["id"], cluster["credentials"]["uri"]
    got = get(stack, token, f"{CLUSTERS}/{cid}")
    assert got["status"] == "running" and got["version"] == VERSION and len(got["nodes"]) == 2
    for node in got["nodes"]:
        assert version_when_reachable(uri, node["endpoint"]).startswith(f"{VERSION}."), node
    with connect(uri) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 30) g")

    def streaming() -> dict[str, Any] | None:
        rs = get(stack, token, f"{CLUSTERS}/{cid}/replication/status")
        healthy = len(rs["replicas"]) == 1 and all(
            r["state"] == "streaming" and r["is_healthy"] for r in rs["replicas"]
        )
        return rs if healthy else None

    rs = wait_for(streaming, 30, interval=0.5, what="the replica streaming and healthy")
    assert rs["primary"] == got["primary"]
    replica = next(n for n in got["nodes"] if n["id"] != got["primary"])
    assert wait_for(lambda: count(uri, replica["endpoint"]) == 30, 15, what="the rows on the replica")


def test_cluster_18_promote(stack: LocalStack, token: str, created: dict[str, dict[str, Any]]) -> None:
    cid, uri = created["cluster"]["id"], created["cluster"]["credentials"]["uri"]
    # A switchover ends the base backup streaming from the old primary: let the first one finish.
    stack.wait_first_backup(f"{CLUSTERS}/{cid}", token)
    before = get(stack, token, f"{CLUSTERS}/{cid}")
    candidate = next(n["id"] for n in before["nodes"] if n["id"] != before["primary"])
    status, body = stack.request("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": candidate}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token)
    after = get(stack, token, f"{CLUSTERS}/{cid}")
    assert after["primary"] == candidate
    with connect(uri) as conn:
        conn.execute("INSERT INTO orders VALUES (31, 'after promote')")
    assert count(uri) == 31


def test_single_18_first_backup(stack: LocalStack, token: str, created: dict[str, dict[str, Any]]) -> None:
    got = stack.wait_first_backup(f"{SINGLE}/{created['single']['id']}", token)
    assert got["first_backup_id"]


def test_cluster_18_first_backup(stack: LocalStack, token: str, created: dict[str, dict[str, Any]]) -> None:
    got = stack.wait_first_backup(f"{CLUSTERS}/{created['cluster']['id']}", token)
    assert got["first_backup_id"]
