"""Issue 17's system part, as a new user on the real local stack: read a server's
configuration; change work_mem (a reload: new sessions see it within 2 s) and max_connections
(a restart, applied immediately as an operation), both seen in pg_settings; a restart left for
later shows in pendingRestart; bad settings are 422s naming the setting and its range and
change nothing; every change is in the audit trail with its old and new value; system/status
turns WARNING when a replica is down; a tenant's default backup schedule and retention
(section BACKUP) are those of the next instance it creates."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for

S = "/api/v1/system"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-system-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "tuned"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    return body


def _show(uri: str, name: str) -> str:
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])


def test_read_and_change_settings(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    status, config = stack.request(
        "GET", f"{S}/configuration?targetId={iid}&settings=random_page_cost", token=token
    )
    assert status == 200, config
    database = config["database"]
    assert isinstance(database["maxConnections"], int) and database["walLevel"] in ("replica", "logical")
    assert database["settings"]["random_page_cost"]["vartype"] == "real"
    assert database["settings"]["work_mem"]["context"] == "user"

    status, changed = stack.request(
        "PUT",
        f"{S}/configuration",
        {"section": "DATABASE", "targetId": iid, "configuration": {"workMem": "8MB"}},
        token,
    )
    assert status == 200 and changed["applied"] == {"work_mem": "8192kB"}, changed
    started = time.monotonic()
    wait_for(
        lambda: _show(uri, "work_mem") == "8MB", timeout=2, interval=0.05, what="work_mem in a new session"
    )
    print(f"work_mem seen by a new session {time.monotonic() - started:.2f} s after the PUT answered")

    before = database["maxConnections"]
    body = {"section": "DATABASE", "targetId": iid, "configuration": {"max_connections": before + 20},
            "applyImmediately": True}  # fmt: skip
    status, restart = stack.request("PUT", f"{S}/configuration", body, token)
    assert status == 200 and restart["operationId"], restart
    stack.wait_operation(restart["operationId"], token, timeout=120)
    assert _show(uri, "max_connections") == str(before + 20)
    status, config = stack.request("GET", f"{S}/configuration?targetId={iid}", token=token)
    assert config["database"]["maxConnections"] == before + 20 and config["database"]["pendingRestart"] == []

    body = {"section": "DATABASE", "targetId": iid, "configuration": {"max_connections": before + 30}}
    status, later = stack.request("PUT", f"{S}/configuration", body, token)
    assert (
        status == 200 and later["pendingRestart"] == ["max_connections"] and later["operationId"] is None
    ), later
    assert _show(uri, "max_connections") == str(before + 20)

    auditor = stack.token("tenant_admin", "acme")
    status, audit = stack.request("GET", f"{S}/audit?action=system.configuration&timeRange=1h", token=auditor)
    assert status == 200, audit
    changes = [e["details"]["changes"] for e in audit["events"]]
    old = database["settings"]["work_mem"]["value"]
    assert {"work_mem": {"old": old, "new": "8192kB"}} in changes, changes
    assert {"max_connections": {"old": str(before), "new": str(before + 20)}} in changes, changes


def test_bad_settings_are_refused(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    iid, uri = instance["id"], instance["credentials"]["uri"]
    for configuration, said in (
        ({"no_such_setting": "1"}, "no such setting: no_such_setting"),
        ({"work_mem": "4TB"}, "outside its range"),
        ({"work_mem": "5 apples"}, "work_mem"),
        ({"random_page_cost": "fast"}, "random_page_cost"),
        ({"synchronous_commit": "sometimes"}, "remote_apply"),
        ({"wal_level": "minimal"}, "managed"),
        ({"archive_cleanup_command": "rm -rf /"}, "managed"),
        ({"shared_preload_libraries": "evil"}, "managed"),
        ({"port": "6000"}, "managed"),
        ({"shared_buffers": "100GB"}, "shared_buffers"),
    ):
        body = {"section": "DATABASE", "targetId": iid, "configuration": configuration}
        status, refused = stack.request("PUT", f"{S}/configuration", body, token)
        assert status == 422 and said in str(refused), (configuration, refused)
    assert "allowed" in str(refused) and _show(uri, "work_mem") == "8MB"
    viewer = stack.token("viewer", "acme")
    status, body = stack.request(
        "PUT",
        f"{S}/configuration",
        {"section": "DATABASE", "targetId": iid, "configuration": {"work_mem": "16MB"}},
        viewer,
    )
    assert status == 403, body


def test_status_turns_warning_when_a_replica_is_down(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    iid = instance["id"]
    status, body = stack.request("GET", f"{S}/status", token=token)
    assert status == 200, body
    assert (
        body["overall"] in ("HEALTHY", "WARNING") and body["uptime"] > 0 and body["version"]["controlPlane"]
    )
    mine = [c for c in body["components"] if c["component"] == f"server:{iid}"]
    assert mine and mine[0]["status"] == "HEALTHY", body["components"]

    status, added = stack.request(
        "POST", f"/api/v1/postgres/single/{iid}/replicas", {"replica_count": 1}, token
    )
    assert status == 202, added
    stack.wait_operation(added["operation_ids"][0], token, timeout=180)
    rid = added["replicas"][0]["id"]

    def streaming() -> bool:
        _, got = stack.request("GET", f"{S}/status", token=token)
        return [c["status"] for c in got["components"] if c["component"] == f"server:{iid}"] == ["HEALTHY"]

    wait_for(streaming, timeout=60, interval=1, what="the replica streaming")
    pid_file = stack.home / "data" / "servers" / rid / "data" / "postmaster.pid"
    os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)

    def warned() -> dict[str, Any] | None:
        _, got = stack.request("GET", f"{S}/status", token=token)
        return got if got["overall"] == "WARNING" else None

    got = wait_for(warned, timeout=30, interval=0.5, what="status WARNING with the replica down")
    (server,) = [c for c in got["components"] if c["component"] == f"server:{iid}"]
    assert server["status"] == "WARNING" and "replica" in server["details"]["message"], server


def test_a_tenants_backup_defaults_reach_its_next_instance(stack: LocalStack) -> None:
    """Section BACKUP: the default schedule and retention a tenant sets are those of the next
    instance it creates (its own tenant, so the other tests' instance keeps none)."""
    token = stack.token("operator", "initech")
    body = {"section": "BACKUP", "configuration": {"fullBackupCron": "0 3 * * ? *", "retentionDays": 3}}
    status, changed = stack.request("PUT", f"{S}/configuration", body, token)
    assert status == 200 and changed["backup"]["fullBackupCron"] == "cron(0 3 * * ? *)", changed
    assert changed["previous"] == {"fullBackupCron": None, "retentionDays": 7}, changed
    status, created = stack.request("POST", "/api/v1/postgres/single", {"name": "scheduled"}, token)
    assert status == 202, created
    stack.wait_created(created["operation_id"], token)
    iid = created["id"]
    status, schedule = stack.request("GET", f"/api/v1/postgres/single/{iid}/backup/schedule", token=token)
    assert status == 200 and schedule["full_backup_cron"] == "cron(0 3 * * ? *)", schedule
    assert schedule["retention_days"] == 3 and schedule["enabled"] and schedule["next_full_backup_at"], (
        schedule
    )
    status, listed = stack.request("GET", "/api/v1/backup/list", token=token)
    assert status == 200 and listed["backups"], listed
    first = listed["backups"][-1]
    kept = datetime.fromisoformat(first["retentionExpiry"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(days=2, hours=23) < kept <= timedelta(days=3), first
    auditor = stack.token("tenant_admin", "initech")
    status, audited = stack.request("GET", f"{S}/audit?action=system.configuration", token=auditor)
    assert status == 200, audited
    changes = [e["details"]["changes"] for e in audited["events"] if e["details"].get("section") == "BACKUP"]
    assert {
        "fullBackupCron": {"old": None, "new": "cron(0 3 * * ? *)"},
        "retentionDays": {"old": 7, "new": 3},
    } in changes
