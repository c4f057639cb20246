"""UC8 blue/green for a cluster, against the real local stack: a 2-node PostgreSQL 15 Patroni
cluster with data and a sequence is upgraded to 18 through a green cluster fed by logical
replication and a cutover, under a writer that never changes its URI. Afterwards the same
node endpoints answer with 18 (the primary writable, the replica streaming and read-only),
every acknowledged row is there, the sequence goes on past every value it gave out, and the
old cluster is kept stopped until the cluster is deleted. Before that, a cutover held up past
its timeout rolls back: the cluster serves writes on 15 again and green is gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

CLUSTERS = "/api/v1/postgres/cluster"
SEED_ROWS = 3000


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-bgc-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


class Writer(threading.Thread):
    """Commits one row after another through the cluster's read-write URI, ids from the
    table's sequence, reconnecting when a write fails; remembers every id it got a commit for."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.uri = uri
        self.acked: set[int] = set()
        self.failed_at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.uri, connect_timeout=2, autocommit=True)
                row = conn.execute("INSERT INTO events (via) VALUES ('writer') RETURNING id").fetchone()
                assert row is not None
                self.acked.add(int(row[0]))
            except psycopg.Error:
                self.failed_at.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def refused_seconds(self) -> float:
        return (max(self.failed_at) - min(self.failed_at)) if self.failed_at else 0.0


def _node_answers(creds: dict[str, Any], database: str, node: dict[str, Any]) -> tuple[int, bool, int]:
    """(major version, in recovery, rows of events) as the application role sees one node."""
    with psycopg.connect(
        host=node["endpoint"]["host"], port=node["endpoint"]["port"], user=creds["username"],
        password=creds["password"], dbname=database, connect_timeout=5, autocommit=True,
    ) as conn:  # fmt: skip
        version = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
        recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        rows = conn.execute("SELECT count(*) FROM events").fetchone()
    assert version and recovery and rows
    return int(version[0]), bool(recovery[0]), int(rows[0])


def _cluster_dirs(stack: LocalStack, cid: str) -> list[str]:
    root = next(p for p in stack.home.rglob("clusters") if p.is_dir() and (p / cid).exists())
    return sorted(p.name for p in Path(root).iterdir() if p.name.startswith(cid))


def _seconds(step: dict[str, Any]) -> str:
    started, finished = (
        datetime.fromisoformat(step[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at")
    )
    return f"{(finished - started).total_seconds():.2f}s"


def _green_leader_socket(stack: LocalStack, cid: str) -> Path:
    """The private socket directory of the green cluster's leader (its first node)."""
    root = next(p for p in stack.home.rglob("clusters") if p.is_dir() and (p / f"{cid}-green").exists())
    return Path(root) / f"{cid}-green" / "n1" / "socket"


def test_cluster_blue_green_upgrade_under_writes(stack: LocalStack, token: str) -> None:
    status, created = stack.request(
        "POST", CLUSTERS, {"name": "bgc-db", "node_count": 2, "version": "15"}, token
    )
    assert status == 202, created
    cid, creds = created["id"], created["credentials"]
    stack.wait_operation(created["operation_id"], token, timeout=180)
    stack.wait_first_backup(f"{CLUSTERS}/{cid}", token)
    with psycopg.connect(creds["uri"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, via text NOT NULL)")
        conn.execute("INSERT INTO events (via) SELECT 'seed' FROM generate_series(1, %s)", (SEED_ROWS,))
    before = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)[1]
    endpoints = {n["id"]: n["endpoint"] for n in before["nodes"]}

    status, report = stack.request(
        "GET", f"{CLUSTERS}/{cid}/upgrade/check?target_version=18&mode=blue_green", token=token
    )
    assert status == 200 and report["passed"], report
    checks = {c["name"]: c for c in report["checks"]}
    assert "restarts the primary once" in checks["wal_level"]["detail"], checks

    # A cutover that cannot finish in time rolls back: green's apply is held up by a row lock
    # taken on green's leader, so it never reaches blue's last position; 30 s after blue
    # refused writes, blue takes them again, still on 15, and green is gone.
    status, accepted = stack.request(
        "POST", f"{CLUSTERS}/{cid}/upgrade",
        {"target_version": "18", "mode": "blue_green", "cutover_timeout_seconds": 30}, token,
    )  # fmt: skip
    assert status == 202, accepted
    op_path = f"/api/v1/operations/{accepted['operation_id']}"
    wait_for(
        lambda: (stack.request("GET", op_path, token=token)[1].get("detail") or {}).get("phase")
        in ("analyzing", "catching_up"),
        120, interval=0.1, what="the initial copy",
    )  # fmt: skip
    green_leader = _green_leader_socket(stack, cid)
    green_port = int(next(green_leader.glob(".s.PGSQL.*[0-9]")).name.rsplit(".", 1)[1])
    held = psycopg.connect(
        host=str(green_leader), port=green_port, user="postgres", dbname=before["database"]
    )
    try:
        held.execute("SELECT * FROM events WHERE id = 1 FOR UPDATE")
        with psycopg.connect(creds["uri"], connect_timeout=5, autocommit=True) as conn:
            conn.execute("UPDATE events SET via = 'seed, updated on blue' WHERE id = 1")
        op = stack.wait_operation_any(accepted["operation_id"], token, timeout=150)
    finally:
        held.close()  # the roll-back destroyed green: its session is gone already
    assert op["status"] == "failed" and "within 30 s" in op["error"], op
    rolled = wait_for(
        lambda: (got := stack.request("GET", f"{CLUSTERS}/{cid}", token=token)[1])["status"] != "upgrading" and got,
        90, what="the roll-back",
    )  # fmt: skip
    assert rolled["status"] == "running" and rolled["version"] == "15", rolled
    assert stack.request("GET", op_path, token=token)[1]["detail"]["phase"] == "rolled_back"
    assert {n["id"]: n["endpoint"] for n in rolled["nodes"]} == endpoints, rolled
    with psycopg.connect(creds["uri"], connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT via FROM events WHERE id = 1").fetchone() == ("seed, updated on blue",)
        conn.execute("UPDATE events SET via = 'seed' WHERE id = 1")  # blue takes writes again
        assert conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone() == (15,)
    assert _cluster_dirs(stack, cid) == [cid], _cluster_dirs(stack, cid)

    writer = Writer(creds["uri"])
    writer.start()
    wait_for(lambda: len(writer.acked) > 50, 30, what="the writer's first commits")
    upgrade = {
        "target_version": "18",
        "mode": "blue_green",
        "cutover_timeout_seconds": 120,
        "keep_old_hours": 2,
    }
    for _ in range(3):  # a schedule's write to the record (quotas, each minute) is a 409 "retry"
        status, accepted = stack.request("POST", f"{CLUSTERS}/{cid}/upgrade", upgrade, token)
        if not (status == 409 and accepted["error"]["code"] == "conflict"):
            break
        time.sleep(1)
    assert status == 202, accepted
    lags: list[Any] = []

    def finished() -> dict[str, Any] | None:
        _, op = stack.request("GET", f"/api/v1/operations/{accepted['operation_id']}", token=token)
        if (op.get("detail") or {}).get("lag_bytes") is not None:
            lags.append(op["detail"]["lag_bytes"])
        return op if op["status"] in ("succeeded", "failed") else None

    op = wait_for(finished, 240, interval=0.5, what="the blue/green upgrade of the cluster")
    time.sleep(1)  # the writer commits on the new cluster for a moment
    writer.stop.set()
    writer.join(10)
    assert op["status"] == "succeeded", op
    assert lags, "the operation never showed the replication lag"
    cutover = [f"{st['name']} {_seconds(st)}" for st in op["steps"][7:14]]
    print(
        f"cluster blue/green cutover steps: {', '.join(cutover)}; "
        f"{op['detail'].get('writes_refused_seconds')} s of refused writes (operation), "
        f"{writer.refused_seconds():.1f} s (writer); {len(writer.acked)} commits"
    )

    status, after = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert status == 200 and after["status"] == "running" and after["version"] == "18", after
    assert {n["id"]: n["endpoint"] for n in after["nodes"]} == endpoints, after

    def streaming() -> dict[str, Any] | None:
        status, rs = stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)
        assert status == 200, rs
        ok = len(rs["replicas"]) == 1 and all(
            r["state"] == "streaming" and r["is_healthy"] for r in rs["replicas"]
        )
        return rs if ok else None

    rs = wait_for(streaming, 60, interval=0.5, what="the replica streaming on the new primary")
    with psycopg.connect(creds["uri"], connect_timeout=5, autocommit=True) as conn:  # the same URI
        present = {int(r[0]) for r in conn.execute("SELECT id FROM events WHERE via = 'writer'")}
        lost = writer.acked - present
        assert not lost, f"{len(lost)} acknowledged rows lost: {sorted(lost)[:10]}"
        assert conn.execute("SELECT count(*) FROM events WHERE via = 'seed'").fetchone() == (SEED_ROWS,)
        top = conn.execute("SELECT max(id) FROM events").fetchone()
        row = conn.execute("INSERT INTO events (via) VALUES ('after') RETURNING id").fetchone()
        assert top and row and row[0] > top[0], (top, row)
        total = conn.execute("SELECT count(*) FROM events").fetchone()
    assert total
    for node in after["nodes"]:  # every node endpoint: 18, its role, the rows (the replica catches up)
        wait_for(
            lambda node=node: _node_answers(creds, after["database"], node)[2] == int(total[0]),
            30, interval=0.2, what=f"the rows on {node['id']}",
        )  # fmt: skip
        version, recovery, _ = _node_answers(creds, after["database"], node)
        assert version == 18, node
        assert recovery == (node["id"] != rs["primary"]), node

    # Blue is kept, stopped; deleting the cluster removes it too.
    assert _cluster_dirs(stack, cid) == sorted([cid, f"{cid}-blue15"]), _cluster_dirs(stack, cid)
    status, deleted = stack.request("DELETE", f"{CLUSTERS}/{cid}", token=token)
    assert status == 202, deleted
    stack.wait_operation(deleted["operation_id"], token, timeout=180)
    root = next(p for p in stack.home.rglob("clusters") if p.is_dir())
    assert not [p.name for p in root.iterdir() if p.name.startswith(cid)], sorted(
        p.name for p in root.iterdir()
    )
