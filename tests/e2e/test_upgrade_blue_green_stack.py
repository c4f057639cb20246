"""UC8 blue/green against the real local stack: a PostgreSQL 15 instance with data and a
sequence is upgraded to 18 by logical replication and a cutover, under a writer that never
changes its URI; afterwards the same host:port answers with 18, every acknowledged row is
there, and the sequence goes on past every value it gave out. Before that, the pre-flight
refuses a table without a primary key (409, nothing changed), and a dry run only reports."""

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

SINGLE = "/api/v1/postgres/single"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-bg-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


class Writer(threading.Thread):
    """Commits one row after another through one URI, ids from the table's sequence,
    reconnecting when a write fails; remembers every id it got a commit for, and when writes
    failed."""

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

    def refused_seconds(self, since: float) -> float:
        window = [t for t in self.failed_at if t >= since]
        return (max(window) - min(window)) if window else 0.0


def _upgrade(stack: LocalStack, token: str, iid: str, **extra: Any) -> tuple[int, Any]:
    body = {"target_version": "18", "mode": "blue_green", **extra}
    return stack.request("POST", f"{SINGLE}/{iid}/upgrade", body, token)


def test_blue_green_upgrade_under_writes(stack: LocalStack, token: str) -> None:
    status, created = stack.request("POST", SINGLE, {"name": "bg-db", "version": "15"}, token)
    assert status == 202, created
    iid, uri = created["id"], created["credentials"]["uri"]
    stack.wait_created(created["operation_id"], token)
    stack.wait_first_backup(f"{SINGLE}/{iid}", token)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, via text NOT NULL)")
        conn.execute("INSERT INTO events (via) SELECT 'seed' FROM generate_series(1, 5000)")
        conn.execute("CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text)")
    # A read replica, which the upgrade copies again from the new server.
    status, body = stack.request(
        "POST", f"{SINGLE}/{iid}/replicas", {"replica_count": 1, "memory": 512}, token
    )
    assert status == 202, body
    stack.wait_operation(body["operation_ids"][0], token)
    replica_port = body["replicas"][0]["endpoint"]["port"]
    replica_uri = uri.replace(f":{created['endpoint']['port']}/", f":{replica_port}/")

    # A tenant's database replicates too (one publication and subscription per database).
    status, tenant = stack.request("POST", f"{SINGLE}/{iid}/tenants", {"tenant_id": "blue"}, token)
    assert status == 201, tenant
    tenant_uri = tenant["credentials"]["uri"]
    wait_for(lambda: _try_sql(tenant_uri, "CREATE TABLE notes (id int PRIMARY KEY, body text)"), 60)
    with psycopg.connect(tenant_uri, autocommit=True) as conn:
        conn.execute("INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 300) g")

    # Pre-flight: a table without a primary key is a 409 naming it, and nothing changes.
    status, refused = _upgrade(stack, token, iid)
    assert status == 409, refused
    assert any("public.audit_log" in f for f in refused["error"]["details"]["findings"]), refused
    assert stack.request("GET", f"{SINGLE}/{iid}", token=token)[1]["status"] == "running"
    status, report = stack.request(
        "GET", f"{SINGLE}/{iid}/upgrade/check?target_version=18&mode=blue_green", token=token
    )
    assert status == 200 and not report["passed"], report
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_log REPLICA IDENTITY FULL")
        conn.execute("INSERT INTO audit_log (what) VALUES ('kept')")

    # A dry run reports and changes nothing: wal_level stays as it is, no green server.
    status, report = _upgrade(stack, token, iid, dry_run=True)
    assert status == 200 and report["passed"], report
    checks = {c["name"]: c for c in report["checks"]}
    assert "restarts the instance once" in checks["wal_level"]["detail"], checks
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
    servers = stack.home / "data" / "servers"
    assert not list(_server_dirs(servers, iid, "-green")), "a dry run made a green server"

    # A cutover that cannot finish in time rolls back: green's apply is held up by a row lock
    # taken on green, so it never reaches blue's last position; 30 s after blue refused writes,
    # blue takes them again, still on 15, and green is gone.
    status, accepted = _upgrade(stack, token, iid, cutover_timeout_seconds=30)
    assert status == 202, accepted
    op_path = f"/api/v1/operations/{accepted['operation_id']}"
    wait_for(
        lambda: (stack.request("GET", op_path, token=token)[1].get("detail") or {}).get("phase")
        in ("analyzing", "catching_up"),
        120, interval=0.1, what="the initial copy",
    )  # fmt: skip
    green_socket = next(_server_dirs(servers, iid, "-green")) / "socket"
    green_port = int(next(green_socket.glob(".s.PGSQL.*[0-9]")).name.rsplit(".", 1)[1])
    held = psycopg.connect(host=str(green_socket), port=green_port, user="postgres", dbname="app")
    try:
        held.execute("SELECT * FROM audit_log FOR UPDATE")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("UPDATE audit_log SET what = 'updated on blue'")
        op = stack.wait_operation_any(accepted["operation_id"], token, timeout=120)
    finally:
        held.close()  # the roll-back destroyed green: its session is gone already
    assert op["status"] == "failed" and "within 30 s" in op["error"], op
    # The roll-back runs once the operation has failed, then the instance leaves "upgrading".
    instance = wait_for(
        lambda: (got := stack.request("GET", f"{SINGLE}/{iid}", token=token)[1])["status"] != "upgrading" and got,
        60, what="the roll-back",
    )  # fmt: skip
    assert instance["status"] == "running" and instance["version"] == "15", instance
    assert stack.request("GET", op_path, token=token)[1]["detail"]["phase"] == "rolled_back"
    assert "rolled back" in instance["status_reason"], instance
    with psycopg.connect(uri, autocommit=True) as conn:
        assert conn.execute("SELECT what FROM audit_log").fetchall() == [("updated on blue",)]
        conn.execute("INSERT INTO events (via) VALUES ('after the roll-back')")
        assert conn.execute(
            "SELECT pg_catalog.current_setting('server_version_num')::int / 10000"
        ).fetchone() == (15,)
    assert not list(_server_dirs(servers, iid, "-green")), "the roll-back left the green server"

    writer = Writer(uri)
    writer.start()
    wait_for(lambda: len(writer.acked) > 50, 30, what="the writer's first commits")
    status, accepted = _upgrade(stack, token, iid, cutover_timeout_seconds=120, keep_old_hours=2)
    assert status == 202, accepted
    lags: list[Any] = []

    def finished() -> dict[str, Any] | None:
        _, op = stack.request("GET", f"/api/v1/operations/{accepted['operation_id']}", token=token)
        if (op.get("detail") or {}).get("lag_bytes") is not None:
            lags.append(op["detail"]["lag_bytes"])
        return op if op["status"] in ("succeeded", "failed") else None

    since = time.monotonic()
    op = wait_for(finished, 240, interval=0.5, what="the blue/green upgrade")
    time.sleep(1)  # the writer commits on the new server for a moment
    writer.stop.set()
    writer.join(10)
    assert op["status"] == "succeeded", op
    assert lags, "the operation never showed the replication lag"
    cutover = [f"{s['name']} {_seconds(s)}" for s in op["steps"][7:13]]
    print(
        f"cutover steps: {', '.join(cutover)}; refused writes at the cutover: {writer.refused_seconds(since):.1f} s (writer), "
        f"{op['detail'].get('writes_refused_seconds')} s (operation); {len(writer.acked)} commits"
    )

    status, instance = stack.request("GET", f"{SINGLE}/{iid}", token=token)
    assert status == 200 and instance["status"] == "running" and instance["version"] == "18", instance
    assert instance["endpoint"] == created["endpoint"], instance
    with psycopg.connect(uri, autocommit=True) as conn:  # the same URI: the same host:port
        version = conn.execute("SELECT pg_catalog.version()").fetchone()
        assert version and version[0].startswith("PostgreSQL 18"), version
        present = {int(r[0]) for r in conn.execute("SELECT id FROM events WHERE via = 'writer'")}
        lost = writer.acked - present
        assert not lost, f"{len(lost)} acknowledged rows lost: {sorted(lost)[:10]}"
        assert conn.execute("SELECT count(*) FROM events WHERE via = 'seed'").fetchone() == (5000,)
        assert conn.execute("SELECT what FROM audit_log").fetchall() == [("updated on blue",)]
        top = conn.execute("SELECT max(id) FROM events").fetchone()
        row = conn.execute("INSERT INTO events (via) VALUES ('after') RETURNING id").fetchone()
        assert top and row and row[0] > top[0], (top, row)

    status, listing = stack.request("GET", f"{SINGLE}/{iid}/replicas", token=token)
    assert status == 200 and listing["replicas"][0]["status"] == "running", listing
    wait_for(
        lambda: _try_sql(replica_uri, "SELECT 1 WHERE (SELECT count(*) FROM events) >= %s", len(writer.acked) + 5000),
        60, what="the writer's rows on the rebuilt replica",
    )  # fmt: skip
    with psycopg.connect(replica_uri, autocommit=True) as conn:
        assert conn.execute(
            "SELECT pg_catalog.current_setting('server_version_num')::int / 10000"
        ).fetchone() == (18,)
    with psycopg.connect(tenant_uri, autocommit=True) as conn:  # the tenant's role, password and rows
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (300,)
        conn.execute("INSERT INTO notes VALUES (301, 'on 18')")

    # Blue is kept, stopped; deleting the instance removes it too.
    assert list(_server_dirs(servers, iid, "-blue15")), sorted(p.name for p in servers.iterdir())
    assert not list(_server_dirs(servers, iid, "-green"))
    status, deleted = stack.request("DELETE", f"{SINGLE}/{iid}", token=token)
    assert status == 202, deleted
    stack.wait_operation(deleted["operation_id"], token, timeout=180)
    assert not list(_server_dirs(servers, iid, "")), sorted(p.name for p in servers.iterdir())


def _seconds(step: dict[str, Any]) -> str:
    started, finished = (
        datetime.fromisoformat(step[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at")
    )
    return f"{(finished - started).total_seconds():.2f}s"


def _try_sql(uri: str, statement: str, *params: Any) -> bool:
    """Whether `statement` ran (and, for a query, returned a row)."""
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=2) as conn:
            cur = conn.execute(statement, params or None)
            return cur.description is None or cur.fetchone() is not None
    except psycopg.Error:
        return False


def _server_dirs(servers: Path, iid: str, suffix: str) -> Iterator[Path]:
    return (p for p in servers.iterdir() if p.name.startswith(iid) and p.name.endswith(suffix))
