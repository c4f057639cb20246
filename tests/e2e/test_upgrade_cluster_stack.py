"""A 3-node PostgreSQL 15 cluster upgraded in place to 18 through the local stack (issue 12,
"On a cluster"): same rows, every node on 18, the replicas streaming again, and a switchover
that works on the upgraded cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

CLUSTERS = "/api/v1/postgres/cluster"
ROWS = 5000


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-upc-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def cluster(stack: LocalStack, token: str) -> dict:
    status, body = stack.request("POST", CLUSTERS, {"name": "up-db", "node_count": 3, "version": "15"}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=180)
    # The first backup runs as its own operation once the cluster is running.
    stack.wait_first_backup(f"{CLUSTERS}/{body['id']}", token)
    with psycopg.connect(body["credentials"]["uri"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, label text NOT NULL)")
        conn.execute(
            "INSERT INTO public.items SELECT g, 'item ' || g FROM pg_catalog.generate_series(1, %s) g",
            (ROWS,),
        )
    return body


def _get(stack: LocalStack, token: str, cid: str) -> dict:
    status, body = stack.request("GET", f"{CLUSTERS}/{cid}", token=token)
    assert status == 200, body
    return body


def _node_answers(cluster: dict, node: dict) -> tuple[str, int, bool]:
    """(major version, rows, in recovery) as the application role sees one node."""
    creds = cluster["credentials"]
    with psycopg.connect(
        host=node["endpoint"]["host"], port=node["endpoint"]["port"], user=creds["username"],
        password=creds["password"], dbname=cluster["database"], connect_timeout=5,
    ) as conn:  # fmt: skip
        version = str(conn.execute("SHOW server_version_num").fetchone()[0])[:2]
        rows = int(conn.execute("SELECT count(*) FROM public.items").fetchone()[0])
        recovery = bool(conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0])
    return version, rows, recovery


def test_bad_targets_are_refused(stack: LocalStack, token: str, cluster: dict) -> None:
    for target, code in (("15", 422), ("14", 422), ("99", 422)):
        status, body = stack.request(
            "POST", f"{CLUSTERS}/{cluster['id']}/upgrade", {"target_version": target}, token
        )
        assert status == code, (target, body)
    status, report = stack.request(
        "GET", f"{CLUSTERS}/{cluster['id']}/upgrade/check?target_version=18&mode=in_place", token=token
    )
    assert status == 200 and report["passed"], report
    assert {c["name"] for c in report["checks"]} >= {"version", "disk", "pg_upgrade --check"}


def test_upgrade_to_18_keeps_rows_and_replicas_stream(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    started = time.monotonic()
    status, body = stack.request(
        "POST", f"{CLUSTERS}/{cid}/upgrade", {"target_version": "18", "mode": "in_place"}, token
    )
    assert status == 202, body
    assert body["status"] == "upgrading" and body["passed"]
    op = stack.wait_operation(body["operation_id"], token, timeout=240)
    took = time.monotonic() - started
    print(
        f"cluster upgraded 15 -> 18 in place in {took:.1f}s; "
        f"{op['detail'].get('down_seconds')} s without a writable primary"
    )
    got = _get(stack, token, cid)
    assert got["status"] == "running" and got["version"] == "18", got
    assert len(got["nodes"]) == 3

    def streaming() -> dict | None:
        status, rs = stack.request("GET", f"{CLUSTERS}/{cid}/replication/status", token=token)
        assert status == 200, rs
        ok = len(rs["replicas"]) == 2 and all(
            r["state"] == "streaming" and r["is_healthy"] for r in rs["replicas"]
        )
        return rs if ok else None

    rs = wait_for(streaming, 60, interval=0.5, what="both replicas streaming on the upgraded primary")
    for node in got["nodes"]:
        version, rows, recovery = _node_answers(cluster, node)
        assert version == "18", node
        assert rows == ROWS, node
        assert recovery == (node["id"] != rs["primary"]), node


def test_switchover_after_upgrade(stack: LocalStack, token: str, cluster: dict) -> None:
    cid = cluster["id"]
    got = _get(stack, token, cid)
    candidate = sorted(n["id"] for n in got["nodes"] if n["id"] != got["primary"])[0]
    status, body = stack.request("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": candidate}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=120)
    assert _get(stack, token, cid)["primary"] == candidate
    with psycopg.connect(cluster["credentials"]["uri"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("INSERT INTO public.items VALUES (%s, 'after switchover')", (ROWS + 1,))
        assert int(conn.execute("SELECT count(*) FROM public.items").fetchone()[0]) == ROWS + 1
