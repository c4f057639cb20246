"""A new user upgrades a PostgreSQL 15 instance with data to 18 in place, through the real
local stack: the pre-flight report, the refusals (422, 409 with every finding), then the
upgrade itself: same endpoint, same rows, 18 answering, a writer that only loses its
connection for the downtime, and a backup and a point-in-time restore on 18 afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-upg-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", SINGLE, {"name": "upgraded-db", "version": "15"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    stack.wait_first_backup(f"{SINGLE}/{body['id']}", token)
    with _connect(body["credentials"]["uri"]) as conn:
        conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO items (note) SELECT 'before ' || g FROM generate_series(1, 1000) g")
        conn.execute("CREATE INDEX items_note ON items (note)")
    return body


def _connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, connect_timeout=3, autocommit=True)


def _sql(uri: str, statement: str) -> list[tuple[Any, ...]]:
    with _connect(uri) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def test_bad_versions_are_refused_with_the_installed_ones(
    stack: LocalStack, token: str, instance: dict
) -> None:
    iid = instance["id"]
    for version, words in (("15", "already runs"), ("14", "not installed"), ("99", "not installed")):
        status, body = stack.request("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": version}, token)
        assert status == 422, (version, body)
        assert words in body["error"]["message"], body
    status, body = stack.request("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "99"}, token)
    assert body["error"]["details"]["installed"] == ["15", "18"], body
    status, body = stack.request(
        "POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18", "mode": "x"}, token
    )
    assert status == 422, body
    status, body = stack.request("POST", f"{SINGLE}/pg-000000000000/upgrade", {"target_version": "18"}, token)
    assert status == 404, body


def test_a_failed_check_is_a_409_with_every_finding_and_changes_nothing(
    stack: LocalStack, token: str, instance: dict
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    # pg_upgrade cannot carry reg* columns (their OIDs are not preserved).
    _sql(uri, "CREATE TABLE fn_refs (f regproc)")
    try:
        status, refused = stack.request("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18"}, token)
        assert status == 409, refused
        findings = refused["error"]["details"]["findings"]
        assert any(
            "reg*" in f and "public.fn_refs.f" in f and f.startswith("pg_upgrade --check: ") for f in findings
        ), findings
        _, got = stack.request("GET", f"{SINGLE}/{iid}", token=token)
        assert got["status"] == "running" and got["version"] == "15"
        status, report = stack.request("GET", f"{SINGLE}/{iid}/upgrade/check?target_version=18", token=token)
        assert status == 200 and report["passed"] is False and report["findings"] == findings, report
    finally:
        _sql(uri, "DROP TABLE fn_refs")
    status, report = stack.request(
        "POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18", "dry_run": True}, token
    )
    assert status == 200 and report["passed"] is True, report
    assert [c["name"] for c in report["checks"]] == ["version", "disk", "pg_upgrade --check"], report
    assert report["link"] is False  # the disk holds a copy: the old directory stays intact


def test_upgrade_in_place_keeps_endpoint_and_rows(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    acknowledged: list[int] = []
    refused: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            try:
                with _connect(uri) as conn:
                    while not stop.is_set():
                        row = conn.execute(
                            "INSERT INTO items (note) VALUES ('during') RETURNING id"
                        ).fetchone()
                        acknowledged.append(int(row[0]))
                        time.sleep(0.01)
            except psycopg.Error:
                refused.append(time.monotonic())
                time.sleep(0.1)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        status, accepted = stack.request("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18"}, token)
        assert status == 202, accepted
        assert accepted["status"] == "upgrading" and accepted["from_version"] == "15", accepted
        status, again = stack.request("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18"}, token)
        assert status == 409, again  # one operation at a time
        op = stack.wait_operation(accepted["operation_id"], token, timeout=300)
        wait_for(
            lambda: len(acknowledged) > 0 and acknowledged[-1] > max(acknowledged[:-1] or [0]), timeout=10
        )
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=10)
    steps = [s["name"] for s in op["steps"]]
    assert (
        steps[:4] == ["backup", "prepare_new_cluster", "stop", "pg_upgrade"] and steps[-1] == "mark_running"
    ), steps
    assert op["detail"]["phase"] == "completed" and op["detail"]["down_seconds"] is not None, op
    assert _sql(uri, "SHOW server_version")[0][0].startswith("18.")
    ids = {r[0] for r in _sql(uri, "SELECT id FROM items")}
    assert len(ids) >= 1000 and not [a for a in acknowledged if a not in ids], "acknowledged rows lost"
    assert _sql(uri, "SELECT count(*) FROM items WHERE note LIKE 'before %'") == [(1000,)]
    # Statistics were rebuilt: the planner knows the table's size.
    assert _sql(uri, "SELECT reltuples > 0 FROM pg_class WHERE relname = 'items'") == [(True,)]
    _, got = stack.request("GET", f"{SINGLE}/{iid}", token=token)
    assert got["status"] == "running" and got["version"] == "18", got
    assert "upgraded in place from PostgreSQL 15 to 18" in got["status_reason"], got
    old = stack.home / "data" / "servers" / iid / "data.before-18"
    assert not old.exists()  # verified, so the way back is gone


def test_backup_and_point_in_time_restore_after_the_upgrade(
    stack: LocalStack, token: str, instance: dict
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    _sql(uri, "INSERT INTO items (note) VALUES ('kept')")
    time.sleep(1.1)
    target = _sql(uri, "SELECT clock_timestamp()")[0][0]
    time.sleep(0.2)
    _sql(uri, "INSERT INTO items (note) VALUES ('after target')")
    status, restored = stack.request(
        "POST",
        f"{SINGLE}/{iid}/restore",
        {"restore_mode": "new_instance", "pitr_target": target.isoformat()},
        token,
    )
    assert status == 202, restored
    stack.wait_operation(restored["operation_id"], token, timeout=300)
    new_uri = restored["credentials"]["uri"]
    assert _sql(new_uri, "SHOW server_version")[0][0].startswith("18.")
    notes = {r[0] for r in _sql(new_uri, "SELECT note FROM items WHERE note IN ('kept', 'after target')")}
    assert notes == {"kept"}, notes
    stack.request("DELETE", f"{SINGLE}/{restored['target_id']}", token=token)
