"""Backups and restores of a single instance through the real local stack: pgBackRest with an
encrypted posix repository, the worker, the ticker, real PostgreSQL servers.

The tests run in file order on one instance (and a second one for schedules, whose backups
fire on their own while the others run).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from tests.helpers import LocalStack, running_stack, wait_for

SINGLE = "/api/v1/postgres/single"
BACKUP = "/api/v1/backup"
TARGETS: dict[str, datetime] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-bk-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


def _create(stack: LocalStack, token: str, name: str) -> dict[str, Any]:
    """An instance with its first backup completed (it runs after the create, on its own)."""
    status, body = stack.request("POST", SINGLE, {"name": name}, token)
    assert status == 202, body
    stack.wait_operation(body["operation_id"], token, timeout=180)
    stack.wait_first_backup(f"{SINGLE}/{body['id']}", token)
    return body


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    return _create(stack, token, "orders-db")


@pytest.fixture(scope="module")
def scheduled(stack: LocalStack, token: str) -> dict[str, Any]:
    """A second instance whose backups run every minute from the first test on."""
    body = _create(stack, token, "ticking-db")
    schedule = {"full_backup_cron": "cron(* * * * ? *)", "retention_days": 1}
    status, got = stack.request("PUT", f"{SINGLE}/{body['id']}/backup/schedule", schedule, token)
    assert status == 200 and got["next_full_backup_at"], got
    body["scheduled_at"] = time.monotonic()
    return body


def _sql(uri: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri, connect_timeout=5, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _phase(uri: str, phase: int) -> None:
    _sql(uri, "INSERT INTO items SELECT %s, g FROM generate_series(1, 100) g", (phase,))


def _phases(uri: str) -> dict[int, int]:
    return dict(_sql(uri, "SELECT phase, count(*)::int FROM items GROUP BY phase ORDER BY phase"))


def _backups(stack: LocalStack, token: str, iid: str) -> dict[str, Any]:
    status, listing = stack.request("GET", f"{SINGLE}/{iid}/backups", token=token)
    assert status == 200, listing
    return listing


def _backup(stack: LocalStack, token: str, iid: str, backup_type: str = "full") -> str:
    status, accepted = stack.request("POST", f"{SINGLE}/{iid}/backup", {"type": backup_type}, token)
    assert status == 202, accepted
    stack.wait_operation(accepted["operation_id"], token, timeout=180)
    return str(accepted["backup_id"])


def _restore(stack: LocalStack, token: str, iid: str, body: dict[str, Any]) -> dict[str, Any]:
    status, restored = stack.request("POST", f"{SINGLE}/{iid}/restore", body, token)
    assert status == 202, restored
    op = stack.wait_operation(restored["operation_id"], token, timeout=240)
    restored["steps"] = {s["name"]: s["reason"] for s in op["steps"]}
    return restored


def _now(uri: str) -> datetime:
    return _sql(uri, "SELECT clock_timestamp()")[0][0]


def test_running_before_its_first_backup_which_starts_the_restorable_window(
    stack: LocalStack, token: str
) -> None:
    """The create ends when the instance accepts connections; its first backup follows as
    its own operation, shown on the instance and in its backups. A restore asked for before
    that backup completes gets 409 with the reason; the window then starts at it."""
    status, body = stack.request("POST", SINGLE, {"name": "early-db"}, token)
    assert status == 202, body
    iid, uri = body["id"], body["credentials"]["uri"]
    created = stack.wait_created(body["operation_id"], token)
    assert [s["name"] for s in created["steps"]] == [
        "configure_archiving", "provision", "start", "create_database", "mark_running",
    ]  # fmt: skip
    # The worker held, the first backup cannot complete while we look.
    with stack.worker_held():
        _, got = stack.request("GET", f"{SINGLE}/{iid}", token=token)
        assert got["status"] == "running" and got["backup_status"] in ("pending", "running"), got
        first = got["first_backup_id"]
        match = re.search(r"\(operation (op-[0-9a-f]{12})\)", got["backup_status_reason"])
        assert match, got
        backup_op = match[1]
        _sql(uri, "CREATE TABLE early AS SELECT g AS id FROM generate_series(1, 10) g")  # it takes writes
        listing = _backups(stack, token, iid)
        assert [(b["backup_id"], b["type"]) for b in listing["backups"]] == [(first, "full")], listing
        assert listing["backups"][0]["status"] in ("pending", "running"), listing
        for restore in (
            {"restore_mode": "new_instance"},
            {"restore_mode": "overwrite"},
            {"pitr_target": _now(uri).isoformat()},
        ):
            status, refused = stack.request("POST", f"{SINGLE}/{iid}/restore", restore, token)
            assert status == 409, (restore, refused)
            message = refused["error"]["message"]
            assert message.startswith("no backup yet: the first backup of this instance is "), message
            assert (
                message.endswith(f"(operation {backup_op})")
                and refused["error"]["details"]["backup_id"] == first
            )
        initiate = {"backupId": first, "recoveryType": "FULL", "validateOnly": True}
        status, refused = stack.request("POST", f"{BACKUP}/recovery/initiate", initiate, token)
        assert status == 409 and f"(operation {backup_op})" in refused["error"]["message"], refused
    backup = stack.wait_operation(backup_op, token, timeout=180)
    assert backup["type"] == "backup.initial" and backup["finished_at"] > created["finished_at"]
    got = stack.wait_first_backup(f"{SINGLE}/{iid}", token)
    assert got["first_backup_id"] == first and "restorable from then on" in got["backup_status_reason"]
    listing = _backups(stack, token, iid)
    assert [(b["backup_id"], b["status"]) for b in listing["backups"]] == [(first, "completed")]
    # The window starts at the first backup (one second after its stop, pgBackRest's resolution).
    finished = datetime.fromisoformat(listing["backups"][0]["timestamp"].replace("Z", "+00:00"))
    earliest = datetime.fromisoformat(listing["earliest_restorable_time"].replace("Z", "+00:00"))
    assert earliest == finished + timedelta(seconds=1), listing
    status, planned = stack.request("POST", f"{BACKUP}/recovery/initiate", initiate, token)
    assert status == 200, planned
    # The stanza existed before the server was called running: archive_command never failed.
    assert _sql(uri, "SELECT archived_count > 0, failed_count FROM pg_stat_archiver") == [(True, 0)]
    status, deleting = stack.request("DELETE", f"{SINGLE}/{iid}", token=token)
    assert status == 202, deleting
    stack.wait_operation(deleting["operation_id"], token, timeout=180)


def test_delete_while_the_first_backup_is_on_its_way(stack: LocalStack, token: str) -> None:
    """A delete right after a create never pulls the server or the stanza from under the first
    backup, nor waits for it: keeping no backup, it cancels it, begun or not."""
    status, body = stack.request("POST", SINGLE, {"name": "brief-db"}, token)
    assert status == 202, body
    iid = body["id"]
    stack.wait_created(body["operation_id"], token)
    status, deleting = stack.request("DELETE", f"{SINGLE}/{iid}", token=token)
    assert status == 202, deleting
    op = stack.wait_operation(deleting["operation_id"], token, timeout=180)
    settled = op["steps"][0]
    assert settled["name"] == "settle_backups", op
    print(f"delete right after create: {settled['reason']}")
    # Not begun: cancelled before pgBackRest ran; running: pgBackRest stopped mid-way.
    assert re.search(
        r"^cancelled backup bkp-\S+ \(it had not begun\)$|^cancelled the running backup of stanza "
        r"'pgi-\S+' \(backup bkp-\S+, operation op-\S+: failed\)$",
        settled["reason"],
    ), settled
    assert stack.request("GET", f"{SINGLE}/{iid}", token=token)[0] == 404
    assert stack.request("GET", f"{SINGLE}/{iid}/backups", token=token)[0] == 404
    assert not (stack.home / "backup-repo" / "backup" / iid).exists()
    assert not (stack.home / "backup-repo" / "archive" / iid).exists()
    assert not (stack.home / "pgbackrest" / f"{iid}.conf").exists()
    assert not [p for p in Path("/proc").glob("[0-9]*") if _cmdline_has(p, f"--stanza={iid}")]


def _cmdline_has(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def test_archives_from_creation_encrypted(
    stack: LocalStack, token: str, instance: dict, scheduled: dict
) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    listing = _backups(stack, token, iid)
    assert [(b["type"], b["status"]) for b in listing["backups"]] == [("full", "completed")]
    assert listing["earliest_restorable_time"] <= listing["latest_restorable_time"]
    assert _sql(uri, "SHOW archive_mode") == [("on",)]
    assert _sql(uri, "SELECT setting::int <= 60 FROM pg_settings WHERE name = 'archive_timeout'") == [(True,)]
    info = stack.home / "backup-repo" / "backup" / iid / "backup.info"
    assert info.read_bytes().startswith(b"Salted__")  # aes-256-cbc


def test_backup_list_and_point_in_time_restores(stack: LocalStack, token: str, instance: dict) -> None:
    """Rows committed in three phases around two targets: each restore has exactly the phases
    before its target; a target after the last commit has all of them."""
    iid, uri = instance["id"], instance["credentials"]["uri"]
    _sql(uri, "CREATE TABLE items (phase int NOT NULL, n int NOT NULL)")
    _phase(uri, 1)
    backup_id = _backup(stack, token, iid, "incremental")
    listing = _backups(stack, token, iid)
    assert [b["backup_id"] for b in listing["backups"]][-1] == backup_id
    assert listing["backups"][-1]["type"] == "incremental" and listing["backups"][-1]["size_mb"] > 0
    time.sleep(1.2)  # a backup serves targets from one second after its stop
    TARGETS["t1"] = _now(uri)
    time.sleep(0.1)
    _phase(uri, 2)
    TARGETS["t2"] = _now(uri)
    time.sleep(0.1)
    _phase(uri, 3)
    TARGETS["t3"] = _now(uri)  # nothing is committed after it
    expected = {"t1": {1: 100}, "t2": {1: 100, 2: 100}, "t3": {1: 100, 2: 100, 3: 100}}
    for name, rows in expected.items():
        restored = _restore(
            stack, token, iid, {"restore_mode": "new_instance", "pitr_target": TARGETS[name].isoformat()}
        )
        assert restored["target_id"] != iid
        assert _phases(restored["credentials"]["uri"]) == rows, (name, restored["steps"])
        # the copy archives into its own stanza, never into the source's
        assert _backups(stack, token, restored["target_id"])["backups"][0]["status"] == "completed"
        stack.request("DELETE", f"{SINGLE}/{restored['target_id']}", token=token)


def test_restore_in_place_continues_on_a_new_timeline(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    restored = _restore(
        stack, token, iid, {"restore_mode": "overwrite", "pitr_target": TARGETS["t1"].isoformat()}
    )
    assert restored["target_id"] == iid and restored["credentials"] is None
    assert "reaches the repository" in restored["steps"]["verify_archiving"]
    assert _phases(uri) == {1: 100}
    _, got = stack.request("GET", f"{SINGLE}/{iid}", token=token)
    assert got["status"] == "running" and "restored in place" in got["status_reason"]
    timeline = _sql(uri, "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]
    assert timeline > 1
    _phase(uri, 4)
    copy = _restore(stack, token, iid, {"restore_mode": "new_instance"})
    assert _phases(copy["credentials"]["uri"]) == {1: 100, 4: 100}
    stack.request("DELETE", f"{SINGLE}/{copy['target_id']}", token=token)
    _, status = stack.request("GET", f"{BACKUP}/recovery/status/{restored['restore_id']}", token=token)
    assert status["status"] == "COMPLETED" and status["progress"] == 100
    assert {r["check"] for r in status["dataIntegrityResults"]} >= {
        "RECOVERY_TARGET",
        "ARCHIVING",
        "CONNECTIVITY",
    }


def test_execute_status_progress_and_list(stack: LocalStack, token: str, instance: dict) -> None:
    iid = instance["id"]
    body = {"backupType": "FULL", "targetId": iid, "retentionPeriod": "P30D", "tags": {"purpose": "e2e"}}
    status, executed = stack.request("POST", f"{BACKUP}/execute", body, token)
    assert status == 202 and executed["status"] == "INITIATED", executed
    assert executed["backupLocation"].endswith(f"/backup/{iid}")
    seen = []

    def done() -> bool:
        _, state = stack.request("GET", f"{BACKUP}/status/{executed['backupId']}", token=token)
        assert "progress" in state, state
        seen.append(state["progress"])
        return bool(state["status"] == "COMPLETED")

    wait_for(done, timeout=120, interval=0.1, what="the backup to complete")
    assert seen == sorted(seen) and seen[-1] == 100 and all(0 <= p <= 100 for p in seen)
    _, state = stack.request("GET", f"{BACKUP}/status/{executed['backupId']}", token=token)
    assert state["backupSize"] > 0 and state["duration"] >= 0 and state["verificationStatus"] == "PENDING"
    _, listing = stack.request(
        "GET", f"{BACKUP}/list?backupType=FULL&status=COMPLETED&pageSize=2", token=token
    )
    assert listing["pagination"]["pageSize"] == 2 and listing["pagination"]["totalItems"] >= 2
    # Ours is among the newest (a scheduled backup of the module may have been requested since).
    _, listing = stack.request(
        "GET", f"{BACKUP}/list?backupType=FULL&status=COMPLETED&pageSize=10", token=token
    )
    (ours,) = [b for b in listing["backups"] if b["backupId"] == executed["backupId"]]
    assert ours["tags"]["purpose"] == "e2e"
    viewer = stack.token("viewer", "acme")
    assert stack.request("POST", f"{BACKUP}/execute", body, viewer)[0] == 403
    assert (
        stack.request(
            "GET", f"{BACKUP}/status/{executed['backupId']}", token=stack.token("operator", "globex")
        )[0]
        == 404
    )


def test_recovery_plan_dry_run_changes_nothing(stack: LocalStack, token: str, instance: dict) -> None:
    iid = instance["id"]
    backup_id = _backups(stack, token, iid)["backups"][-1]["backup_id"]
    before = (stack.request("GET", f"{SINGLE}/{iid}", token=token)[1], _backups(stack, token, iid)["backups"])
    body = {
        "backupId": backup_id,
        "recoveryType": "FULL",
        "recoveryLocation": "IN_PLACE",
        "validateOnly": True,
    }
    status, planned = stack.request("POST", f"{BACKUP}/recovery/initiate", body, token)
    assert status == 200, planned
    plan = planned["recoveryPlan"]
    assert [s["name"] for s in plan["steps"]][:5] == [
        "flush_wal",
        "stop",
        "restore_files",
        "provision",
        "recover",
    ]
    assert plan["totalEstimatedTime"].startswith("PT") and plan["dataIntegrityChecks"]
    assert "set aside" in plan["rollbackProcedure"]
    after = (stack.request("GET", f"{SINGLE}/{iid}", token=token)[1], _backups(stack, token, iid)["backups"])
    assert after == before


def test_selective_recovery_brings_back_one_database(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    engine = LocalPostgresEngine(stack.home / "data")
    status, tenant = stack.request("POST", f"{SINGLE}/{iid}/tenants", {"tenant_id": "tenant-abc"}, token)
    assert status == 201, tenant
    tenant_uri = tenant["credentials"]["uri"]
    _sql(tenant_uri, "CREATE TABLE notes AS SELECT g AS id FROM generate_series(1, 500) g")
    backup_id = _backup(stack, token, iid)
    _sql(tenant_uri, "DELETE FROM notes WHERE id > 10")
    _phase(uri, 5)  # after the backup, in another database: must stay
    body = {"backupId": backup_id, "recoveryType": "SELECTIVE", "targetTenant": "tenant-abc"}
    status, started = stack.request("POST", f"{BACKUP}/recovery/initiate", body, token)
    assert status == 202, started

    def finished() -> dict[str, Any] | None:
        _, state = stack.request("GET", f"{BACKUP}/recovery/status/{started['recoveryId']}", token=token)
        return state if state["status"] in ("COMPLETED", "FAILED") else None

    state = wait_for(finished, timeout=180, what="the selective recovery")
    assert state["status"] == "COMPLETED", state
    # Restored as the tenant's owner role (never as a superuser), reachable by the tenant again.
    assert _sql(
        tenant_uri, "SELECT count(*), min(tableowner) FROM notes, pg_tables WHERE tablename = 'notes'"
    ) == [(500, "pgfleet_t_tenant_abc_owner")]
    with engine.connect(iid) as conn:
        assert conn.execute(
            "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database"
            " WHERE datname = 'tenant_abc'"
        ).fetchone() == ("postgres", "pgfleet:tenant:tenant-abc")
    assert _phases(uri)[5] == 100
    assert not any((stack.home / "scratch").iterdir())


def test_verify_passes_and_a_corrupted_file_fails(stack: LocalStack, token: str, instance: dict) -> None:
    iid = instance["id"]
    first, newest = (b["backup_id"] for b in (_backups(stack, token, iid)["backups"][i] for i in (0, -1)))

    def verify(backup_id: str) -> dict[str, Any]:
        status, started = stack.request("POST", f"{BACKUP}/verify/{backup_id}", None, token)
        assert status == 202 and started["status"] == "RUNNING", started
        path = f"{BACKUP}/verify/{started['verificationId']}"
        return wait_for(lambda: (r := stack.request("GET", path, token=token)[1])["status"] != "RUNNING" and r,
                        timeout=180, what="the verification")  # fmt: skip

    result = verify(newest)
    assert result["status"] == "COMPLETED" and result["overallResult"] == "PASSED", result
    assert [c["status"] for c in result["integrityChecks"]] == ["PASSED"] * 3
    assert "row(s) read" in result["integrityChecks"][2]["details"]
    assert (
        stack.request("GET", f"{BACKUP}/status/{newest}", token=token)[1]["verificationStatus"] == "VERIFIED"
    )

    # Damage the largest file of the first backup in the repository.
    _, status = stack.request("GET", f"{BACKUP}/status/{first}", token=token)
    label_dirs = sorted((stack.home / "backup-repo" / "backup" / iid).glob("2*F"))
    files = [p for p in (label_dirs[0] / "pg_data" / "base").rglob("*") if p.is_file()]
    victim = max(files, key=lambda p: p.stat().st_size)
    with victim.open("r+b") as fh:
        fh.seek(victim.stat().st_size // 2)
        chunk = fh.read(16)
        fh.seek(victim.stat().st_size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    result = verify(first)
    checksum = result["integrityChecks"][0]
    assert result["overallResult"] == "FAILED" and checksum["status"] == "FAILED", result
    assert victim.name.split(".")[0] in checksum["details"] and checksum["errorCount"] >= 1
    assert stack.request("GET", f"{BACKUP}/status/{first}", token=token)[1]["verificationStatus"] == "FAILED"
    assert verify(newest)["overallResult"] == "PASSED"  # a later full backup does not depend on it


def test_lost_server_comes_back_to_the_latest_point(stack: LocalStack, token: str, instance: dict) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    # archive_timeout bounds what a loss can take; switching WAL now keeps the test fast.
    assert _sql(uri, "SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'")[0][0] <= 60
    _sql(uri, "CREATE TABLE before_loss AS SELECT g AS id FROM generate_series(1, 1000) g")
    engine = LocalPostgresEngine(stack.home / "data")
    with engine.connect(iid) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        wait_for(
            lambda: (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0] or "") >= segment,
            timeout=60, what="the WAL segment in the archive",
        )  # fmt: skip
    data = stack.home / "data" / "servers" / iid / "data"
    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    shutil.rmtree(data)
    restored = _restore(stack, token, iid, {"restore_mode": "overwrite"})
    assert _sql(uri, "SELECT count(*) FROM before_loss") == [(1000,)], restored["steps"]
    assert _phases(uri)[1] == 100


def test_scheduled_backups_appear(stack: LocalStack, token: str, scheduled: dict) -> None:
    sid = scheduled["id"]
    wait_for(
        lambda: len(_backups(stack, token, sid)["backups"]) >= 2,
        timeout=max(5.0, 150 - (time.monotonic() - scheduled["scheduled_at"])), interval=2,
        what="a backup fired by the schedule",
    )  # fmt: skip
    status, got = stack.request("PUT", f"{SINGLE}/{sid}/backup/schedule", {"full_backup_cron": None}, token)
    assert status == 200 and got["next_full_backup_at"] is None
    bad = {"full_backup_cron": "cron(0 25 * * ? *)"}
    assert stack.request("PUT", f"{SINGLE}/{sid}/backup/schedule", bad, token)[0] == 422


def test_delete_with_final_backup_keeps_backups_restorable(
    stack: LocalStack, token: str, instance: dict
) -> None:
    iid = instance["id"]
    status, body = stack.request("DELETE", f"{SINGLE}/{iid}?final_backup=true", token=token)
    assert status == 202, body
    op = stack.wait_operation(body["operation_id"], token, timeout=180)
    steps = {step["name"]: step["reason"] for step in op["steps"]}
    assert steps["settle_backups"] == "no backup in progress" and "full backup" in steps["final_backup"]
    assert stack.request("GET", f"{SINGLE}/{iid}", token=token)[0] == 404
    assert _backups(stack, token, iid)["backups"]
    copy = _restore(stack, token, iid, {"restore_mode": "new_instance", "name": "orders-db-again"})
    assert _sql(copy["credentials"]["uri"], "SELECT count(*) FROM before_loss") == [(1000,)]
    assert Path(stack.home / "backup-repo" / "backup" / iid).exists()
