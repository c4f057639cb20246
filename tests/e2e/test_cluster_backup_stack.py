"""Backups and restores of an HA cluster through the real local stack: every node archives,
backups run against the current primary, a point-in-time restore makes a new cluster, and an
in-place restore rebuilds the replicas from the restored primary."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

CLUSTERS = "/api/v1/postgres/cluster"
BACKUP = "/api/v1/backup"
TARGETS: dict[str, datetime] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-hbk-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def cluster(stack: LocalStack, token: str) -> dict[str, Any]:
    """A cluster, checked on its way: running before its first backup completes, a restore
    refused (409) until then; returned once that backup is complete."""
    status, body = stack.request("POST", CLUSTERS, {"name": "ha-db", "node_count": 2}, token)
    assert status == 202, body
    cid = body["id"]
    created = stack.wait_created(body["operation_id"], token, timeout=300)
    assert [s["name"] for s in created["steps"]][-2:] == ["create_database", "mark_running"]
    with stack.worker_held():  # the first backup cannot complete while we look
        _, got = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
        assert got["status"] == "running" and got["backup_status"] in ("pending", "running"), got
        match = re.search(r"\(operation (op-[0-9a-f]{12})\)", got["backup_status_reason"])
        assert match, got
        status, listing = stack.request("GET", f"{CLUSTERS}/{cid}/backups", token=token)
        assert status == 200 and [b["backup_id"] for b in listing["backups"]] == [got["first_backup_id"]]
        assert listing["backups"][0]["status"] in ("pending", "running"), listing
        status, refused = stack.request("POST", f"{CLUSTERS}/{cid}/restore", {}, token)
        assert status == 409, refused
        assert refused["error"]["message"].startswith("no backup yet: the first backup of this cluster is ")
        assert refused["error"]["message"].endswith(f"(operation {match[1]})"), refused
    backup = stack.wait_operation(match[1], token, timeout=180)
    assert backup["type"] == "backup.initial" and backup["finished_at"] > created["finished_at"]
    stack.wait_first_backup(f"{CLUSTERS}/{cid}", token)
    return body


def _sql(uri: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri, connect_timeout=5, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _phase(uri: str, phase: int) -> None:
    _sql(uri, "INSERT INTO items SELECT %s, g FROM generate_series(1, 100) g", (phase,))


def _phases(uri: str) -> dict[int, int]:
    return dict(_sql(uri, "SELECT phase, count(*)::int FROM items GROUP BY phase ORDER BY phase"))


def _restore(stack: LocalStack, token: str, cid: str, body: dict[str, Any]) -> dict[str, Any]:
    status, restored = stack.request("POST", f"{CLUSTERS}/{cid}/restore", body, token)
    assert status == 202, restored
    stack.wait_operation(restored["operation_id"], token, timeout=300)
    return restored


def _healthy_replicas(stack: LocalStack, token: str, cid: str) -> list[dict[str, Any]]:
    status, rs = stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)
    assert status == 200, rs
    return [r for r in rs["replicas"] if r["is_healthy"]]


def test_every_node_archives_and_backups_run_on_the_primary(
    stack: LocalStack, token: str, cluster: dict
) -> None:
    cid, uri = cluster["id"], cluster["credentials"]["uri"]
    _sql(uri, "CREATE TABLE items (phase int NOT NULL, n int NOT NULL)")
    _phase(uri, 1)
    for node_uri in (uri, cluster["credentials"]["read_only_uri"]):
        assert _sql(node_uri, "SHOW archive_mode") == [("on",)]
    body = {"backupType": "FULL", "targetId": cid}
    status, executed = stack.request("POST", f"{BACKUP}/execute", body, token)
    assert status == 202, executed
    wait_for(
        lambda: stack.request("GET", f"{BACKUP}/status/{executed['backupId']}", token=token)[1]["status"]
        == "COMPLETED",
        timeout=120, what="the cluster backup",
    )  # fmt: skip
    status, listing = stack.request("GET", f"{CLUSTERS}/{cid}/backups", token=token)
    assert status == 200 and len(listing["backups"]) == 2, listing
    time.sleep(1.2)
    TARGETS["t1"] = _sql(uri, "SELECT clock_timestamp()")[0][0]
    time.sleep(0.1)
    _phase(uri, 2)


def test_point_in_time_restore_into_a_new_cluster(stack: LocalStack, token: str, cluster: dict) -> None:
    restored = _restore(stack, token, cluster["id"], {"pitr_target": TARGETS["t1"].isoformat()})
    new_id = restored["target_id"]
    assert new_id != cluster["id"] and restored["credentials"]["read_only_uri"]
    assert _phases(restored["credentials"]["uri"]) == {1: 100}
    assert len(_healthy_replicas(stack, token, new_id)) == 1
    _phase(restored["credentials"]["uri"], 9)  # the new cluster takes writes
    stack.request("DELETE", f"{CLUSTERS}/{new_id}", token=token)


def test_restore_in_place_rebuilds_the_replicas(stack: LocalStack, token: str, cluster: dict) -> None:
    cid, uri = cluster["id"], cluster["credentials"]["uri"]
    restored = _restore(
        stack, token, cid, {"restore_mode": "overwrite", "pitr_target": TARGETS["t1"].isoformat()}
    )
    assert restored["target_id"] == cid
    assert _phases(uri) == {1: 100}
    _, got = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert got["status"] == "running" and "restored in place" in got["status_reason"]
    wait_for(lambda: len(_healthy_replicas(stack, token, cid)) == 1, timeout=60, what="the rebuilt replica")
    _phase(uri, 3)
    wait_for(
        lambda: _phases(cluster["credentials"]["read_only_uri"]) == {1: 100, 3: 100},
        timeout=30, what="the replica to stream the new timeline",
    )  # fmt: skip
    _, state = stack.request("GET", f"{BACKUP}/recovery/status/{restored['restore_id']}", token=token)
    assert state["status"] == "COMPLETED", state
