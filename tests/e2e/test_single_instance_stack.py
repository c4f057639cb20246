"""A new user's walk through the single-instance API, against the real local stack:
moto server, the gateway, the worker loop, the ticker, and real PostgreSQL servers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack() as s:
        yield s


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, operator: str) -> dict:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "orders-db"}, operator)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], operator)
    return body


def _connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, connect_timeout=3, autocommit=True)


def _postmaster_pid(stack: LocalStack, instance_id: str) -> int:
    pid_file = stack.home / "data" / "servers" / instance_id / "data" / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0])


def test_create_and_write_a_row(stack: LocalStack, operator: str, instance: dict) -> None:
    _, got = stack.request("GET", f"/api/v1/postgres/single/{instance['id']}", token=operator)
    assert got["status"] == "running" and got["endpoint"]["host"] == "127.0.0.1"
    # Running means accepting connections; the first backup is an operation of its own.
    assert got["first_backup_id"] and got["backup_status"] in ("pending", "running", "completed"), got
    _, created = stack.request("GET", f"/api/v1/operations/{instance['operation_id']}", token=operator)
    assert not [s["name"] for s in created["steps"] if "backup" in s["name"]], created
    with _connect(instance["credentials"]["uri"]) as conn:
        conn.execute("CREATE TABLE orders (id int primary key, item text)")
        conn.execute("INSERT INTO orders VALUES (1, 'widget')")
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("15")
        assert conn.execute("SHOW password_encryption").fetchone()[0] == "scram-sha-256"


def test_wrong_password_is_refused(instance: dict) -> None:
    uri = instance["credentials"]["uri"].replace(instance["credentials"]["password"], "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(uri)


def test_stop_start_restart_keep_the_row(stack: LocalStack, operator: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    status, body = stack.request("POST", f"/api/v1/postgres/single/{iid}/stop", token=operator)
    assert status == 202 and body["status"] == "stopping"
    stack.wait_operation(body["operation_id"], operator)
    with pytest.raises(psycopg.OperationalError):
        _connect(uri)
    assert stack.request("POST", f"/api/v1/postgres/single/{iid}/restart", token=operator)[0] == 409
    status, body = stack.request("POST", f"/api/v1/postgres/single/{iid}/start", token=operator)
    stack.wait_operation(body["operation_id"], operator)
    status, body = stack.request("POST", f"/api/v1/postgres/single/{iid}/restart", token=operator)
    assert status == 202
    stack.wait_operation(body["operation_id"], operator)
    with _connect(uri) as conn:
        assert conn.execute("SELECT item FROM orders WHERE id = 1").fetchone() == ("widget",)


def test_stats_and_logs_are_live(stack: LocalStack, operator: str, instance: dict) -> None:
    with _connect(instance["credentials"]["uri"]):
        status, stats = stack.request(
            "GET", f"/api/v1/postgres/single/{instance['id']}/stats", token=operator
        )
    assert status == 200, stats
    assert stats["connections"]["total"] >= 1 and stats["connections"]["max"] > 0
    assert stats["database_size_bytes"] > 1_000_000 and stats["uptime_seconds"] > 0 and stats["commits"] > 0
    status, logs = stack.request(
        "GET", f"/api/v1/postgres/single/{instance['id']}/logs?limit=50", token=operator
    )
    assert status == 200 and logs["lines"]
    assert any("ready to accept connections" in ln["message"] for ln in logs["lines"])
    assert all(ln["severity"] and ln["timestamp"] for ln in logs["lines"])


def test_auth_and_validation_errors(stack: LocalStack, instance: dict) -> None:
    viewer = stack.token("viewer", "acme")
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "viewer-db"}, viewer)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert stack.request("GET", f"/api/v1/postgres/single/{instance['id']}", token=viewer)[0] == 200
    status, body = stack.request("GET", "/api/v1/postgres/single")
    assert status == 401 and set(body["error"]) == {"code", "message", "details", "request_id"}
    status, body = stack.request(
        "POST", "/api/v1/postgres/single", {"name": "Bad Name!"}, stack.token("operator")
    )
    assert status == 422 and body["error"]["details"][0]["field"] == "name"
    other = stack.token("operator", "globex")
    assert stack.request("GET", f"/api/v1/postgres/single/{instance['id']}", token=other)[0] == 404


def test_killed_postmaster_heals_by_itself(stack: LocalStack, operator: str, instance: dict) -> None:
    iid = instance["id"]
    os.kill(_postmaster_pid(stack, iid), signal.SIGKILL)
    started = time.monotonic()

    def healed() -> bool:
        try:
            with _connect(instance["credentials"]["uri"]) as conn:
                return conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    wait_for(healed, timeout=75, interval=1, what="reconcile to restart the killed postmaster")
    print(f"healed {time.monotonic() - started:.1f}s after kill -9")

    # The server accepts connections a moment before reconcile has written why it started it.
    def says_why() -> str | None:
        _, got = stack.request("GET", f"/api/v1/postgres/single/{iid}", token=operator)
        reason = got["status_reason"]
        return reason if "reconcile" in reason and "started it" in reason else None

    wait_for(says_why, timeout=30, interval=0.5, what="the instance to say reconcile started it")


def test_down_up_and_kill_9_keep_instance_and_row(stack: LocalStack, operator: str, instance: dict) -> None:
    stack.down()
    with pytest.raises(psycopg.OperationalError):
        _connect(instance["credentials"]["uri"])
    stack.up()

    def back() -> bool:
        try:
            with _connect(instance["credentials"]["uri"]) as conn:
                return conn.execute("SELECT item FROM orders").fetchone() == ("widget",)
        except psycopg.OperationalError:
            return False

    wait_for(back, timeout=30, interval=0.5, what="instance back after down/up")
    # kill -9 every stack process: metadata must survive
    for name in ("gateway", "runtime", "aws"):
        os.kill(int((stack.home / "run" / f"{name}.pid").read_text()), signal.SIGKILL)
    stack.up()
    status, got = stack.request("GET", f"/api/v1/postgres/single/{instance['id']}", token=operator)
    assert status == 200 and got["status"] == "running" and got["name"] == "orders-db"


def test_delete_removes_everything(stack: LocalStack, operator: str, instance: dict) -> None:
    iid = instance["id"]
    status, body = stack.request("DELETE", f"/api/v1/postgres/single/{iid}", token=operator)
    assert status == 202 and body["status"] == "deleting"
    stack.wait_operation(body["operation_id"], operator)
    assert stack.request("GET", f"/api/v1/postgres/single/{iid}", token=operator)[0] == 404
    assert not (stack.home / "data" / "servers" / iid).exists()
    with pytest.raises(psycopg.OperationalError):
        _connect(instance["credentials"]["uri"])
    assert Path(stack.home / "aws" / "journal.jsonl").exists()
