"""Issue 16's "done when", as a new user on the real local stack: a nightly VACUUM task in a
window; its dry run (statements and objects, nothing changed); an execution with
overrideSchedule reporting rows, reclaimed bytes, progress and resource use; optimize/database
reclaiming a bloated table's space (checked against pg_total_relation_size measured
independently); cleanup/data dry run then run removing old monitoring samples; two
conflicting tasks shown by `schedule` and resolved by `schedule/optimize`; the PDF report
rendered with pdftoppm; a cron task firing on its own; the 4xx of bad input."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack, wait_for
from tests.receivers import http_receiver

M = "/api/v1/maintenance"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-maintenance-") as s:
        yield s


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.token("operator", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack, token: str) -> dict[str, Any]:
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "tidy-shop"}, token)
    assert status == 202, body
    stack.wait_created(body["operation_id"], token)
    return body


def _bloat(uri: str, table: str, rows: int) -> int:
    """A table of `rows` rows whose newest 30 % are deleted (autovacuum off for it); its size.
    `table` is one of this module's constant names."""
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute(f"CREATE TABLE public.{table} (id bigint, payload text) WITH (autovacuum_enabled = off)")
        conn.execute(
            f"INSERT INTO public.{table} SELECT g, md5(g::text) FROM generate_series(1, %s) g",  # noqa: S608
            (rows,),
        )
        conn.execute(f"DELETE FROM public.{table} WHERE id > %s", (int(rows * 0.7),))  # noqa: S608
        conn.execute(f"ANALYZE public.{table}")
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"public.{table}",)).fetchone()
        assert row is not None
        return int(row[0])


def _size(uri: str, table: str) -> int:
    with psycopg.connect(uri, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"public.{table}",)).fetchone()
        assert row is not None
        return int(row[0])


def _wait_execution(stack: LocalStack, token: str, execution_id: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, body = stack.request("GET", f"{M}/executions/{execution_id}", token=token)
        assert status == 200, body
        return body if body["status"] in ("COMPLETED", "FAILED") else None

    return wait_for(done, timeout=timeout, what=f"execution {execution_id}")


def _outside_now() -> dict[str, str]:
    """A window that is closed now (it opens in two hours)."""
    start = datetime.now(UTC) + timedelta(hours=2)
    return {"start": start.strftime("%H:%M"), "end": (start + timedelta(hours=1)).strftime("%H:%M")}


def test_a_nightly_vacuum_task_dry_run_and_execution(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    uri = instance["credentials"]["uri"]
    before = _bloat(uri, "orders", 200_000)
    task = {
        "taskName": "nightly vacuum", "taskType": "VACUUM", "category": "ROUTINE",
        "description": "vacuum what autovacuum's formula says needs it", "targetId": instance["id"],
        "schedule": {"frequency": "DAILY", "cronExpression": "0 2 * * *", "maintenanceWindow": _outside_now()},
        "configuration": {"maxExecutionTime": 5, "retryAttempts": 1, "retryDelay": 0, "requiresExclusiveLock": False,
                          "resourceLimits": {"cpuLimitPercent": 80, "memoryLimitMB": 64, "ioLimitMBPS": 500},
                          "notificationSettings": {"onSuccess": False, "onFailure": True, "recipients": []}},
    }  # fmt: skip
    status, created = stack.request("POST", f"{M}/tasks", task, token)
    assert status == 201, created
    assert created["scheduleExpression"] == "cron(0 2 * * ? *)"
    assert created["nextExecution"].endswith("02:00:00Z")
    tid = created["taskId"]

    status, dry = stack.request("POST", f"{M}/tasks/{tid}/execute", {"dryRun": True}, token)
    assert status == 202, dry
    (orders,) = [s for s in dry["statements"] if s["name"] == "orders"]
    assert orders["sql"] == 'VACUUM "public"."orders"' and "dead tuples" in orders["reason"]
    assert _size(uri, "orders") == before  # nothing changed

    status, waiting = stack.request("POST", f"{M}/tasks/{tid}/execute", {}, token)
    assert status == 202 and waiting["status"] == "INITIATED" and waiting["scheduledFor"], waiting

    status, started = stack.request("POST", f"{M}/tasks/{tid}/execute", {"overrideSchedule": True}, token)
    assert status == 202, started
    done = _wait_execution(stack, token, started["executionId"])
    assert done["status"] == "COMPLETED", done
    after = _size(uri, "orders")
    print("vacuum:", done["rowsAffected"], "rows,", done["spaceReclaimed"], "bytes,", done["resourceUsage"])
    print("limits:", done["resourceLimitsApplied"])
    assert "CPU 80% of one core (cgroup v1 cpu quota)" in done["resourceLimitsApplied"]
    assert done["rowsAffected"] >= 60_000
    assert done["spaceReclaimed"] >= before - after - 65536 and done["spaceReclaimed"] > 0.2 * before
    assert done["progress"] == 100.0
    usage = done["resourceUsage"]
    assert usage["source"] == "proc" and usage["cpuUsagePercent"] > 0 and usage["memoryUsageMB"] > 0
    assert usage["peakValues"]["cpu"] >= usage["cpuUsagePercent"] * 0.5
    assert any("vacuum_cost_limit" in line for line in done["resourceLimitsApplied"])
    assert any("maintenance_work_mem 64 MB" in line for line in done["resourceLimitsApplied"])

    status, history = stack.request("GET", f"{M}/executions?taskId={tid}", token=token)
    assert status == 200 and history["pagination"]["totalItems"] >= 3, history

    status, listed = stack.request("GET", f"{M}/tasks?taskType=VACUUM", token=token)
    assert status == 200 and listed["tasks"][0]["lastExecution"]["executionId"] == started["executionId"], (
        listed
    )

    # disabled: 409 without overrideSchedule
    status, body = stack.request("PUT", f"{M}/tasks/{tid}", {"isEnabled": False}, token)
    assert status == 200 and body["isEnabled"] is False, body
    status, body = stack.request("POST", f"{M}/tasks/{tid}/execute", {}, token)
    assert status == 409, body


def test_task_sql_runs_as_the_app_role_and_bad_input_is_refused(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    base = {"taskName": "purge", "taskType": "CLEANUP", "targetId": instance["id"],
            "schedule": {"frequency": "DAILY", "cronExpression": "15 3 * * *"}}  # fmt: skip
    for change, field in (
        ({"taskSQL": "DELETE FROM public.orders WHERE id < 10; SELECT 1"}, "taskSQL"),
        ({"taskSQL": "COMMIT"}, "taskSQL"),
        ({"schedule": {"frequency": "DAILY", "cronExpression": "99 3 * * *"}}, "schedule.cronExpression"),
        ({"schedule": {"frequency": "DAILY", "cronExpression": "0 3 * * *",
                       "maintenanceWindow": {"start": "02:00", "end": "02:00"}}}, "maintenanceWindow"),
    ):  # fmt: skip
        status, body = stack.request("POST", f"{M}/tasks", {**base, **change}, token)
        assert status == 422 and field in str(body), (change, body)
    status, body = stack.request("GET", f"{M}/tasks", token=token)
    assert all(t["taskName"] != "purge" for t in body["tasks"])  # nothing stored

    status, created = stack.request(
        "POST", f"{M}/tasks", {**base, "taskSQL": "DELETE FROM public.orders WHERE id <= 10"}, token
    )
    assert status == 201, created
    status, started = stack.request(
        "POST", f"{M}/tasks/{created['taskId']}/execute", {"overrideSchedule": True}, token
    )
    done = _wait_execution(stack, token, started["executionId"])
    assert done["status"] == "COMPLETED" and done["rowsAffected"] == 10, done

    status, body = stack.request(
        "POST", f"{M}/windows", {"name": "empty", "startTime": "01:00", "endTime": "01:00"}, token
    )
    assert status == 422, body
    status, body = stack.request("GET", f"{M}/reports?reportType=EXECUTION_SUMMARY&format=XML", token=token)
    assert status == 422 and "format" in str(body), body
    viewer = stack.token("viewer", "acme")
    status, body = stack.request("POST", f"{M}/optimize/database", {"optimizationType": "VACUUM"}, viewer)
    assert status == 403, body


def test_optimize_reclaims_a_bloated_table(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    uri = instance["credentials"]["uri"]
    before = _bloat(uri, "bloated", 300_000)
    body = {"targetId": instance["id"], "optimizationType": "VACUUM", "dryRun": True}
    status, dry = stack.request("POST", f"{M}/optimize/database", body, token)
    assert status == 202, dry
    (choice,) = [c for c in dry["summary"]["choices"] if c["object"] == "public.bloated"]
    assert "autovacuum's trigger" in choice["reason"] and choice["sql"] == 'VACUUM "public"."bloated"'
    assert _size(uri, "bloated") == before

    status, started = stack.request("POST", f"{M}/optimize/database", {**body, "dryRun": False}, token)
    assert status == 202 and started["status"] == "INITIATED", started
    _wait_execution(stack, token, started["optimizationId"])
    status, result = stack.request("GET", f"{M}/optimize/database/{started['optimizationId']}", token=token)
    assert status == 200 and result["status"] == "COMPLETED", result
    (vacuum,) = result["optimizations"]
    measured = (before - _size(uri, "bloated")) / 1048576
    print("optimize VACUUM:", vacuum, "measured independently", round(measured, 3), "MB")
    assert vacuum["status"] == "COMPLETED" and vacuum["objectsProcessed"] >= 1
    assert vacuum["spaceReclaimedMB"] >= 0.9 * measured > 0


def test_cleanup_removes_old_monitoring_samples(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    admin = stack.token("admin", None)
    request = {"categories": ["MONITORING", "AUDIT"], "dryRun": True,
               "customRetentionPolicies": {"MONITORING": 0, "AUDIT": 0}}  # fmt: skip

    def sampled() -> dict[str, Any] | None:  # the platform's capture schedule samples every minute
        status, dry = stack.request("POST", f"{M}/cleanup/data", request, admin)
        assert status == 200, dry
        return dry if dry["results"][0]["recordsIdentified"] > 0 else None

    dry = wait_for(sampled, timeout=120, interval=5, what="monitoring samples")
    monitoring, audit = dry["results"]
    assert monitoring["recordsIdentified"] > 0 and monitoring["recordsDeleted"] == 0
    assert audit["retentionPeriodDays"] == 365 and audit["recordsIdentified"] == 0  # legal retention
    status, done = stack.request("POST", f"{M}/cleanup/data", {**request, "dryRun": False}, admin)
    assert status == 200, done
    assert done["results"][0]["recordsDeleted"] >= monitoring["recordsIdentified"]
    status, again = stack.request("POST", f"{M}/cleanup/data", request, admin)
    assert again["results"][0]["recordsIdentified"] < monitoring["recordsIdentified"]


def test_conflicts_are_shown_and_resolved(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    status, window = stack.request(
        "POST", f"{M}/windows", {"name": "night", "startTime": "01:00", "endTime": "05:00"}, token
    )
    assert status == 201, window
    ids = []
    for name in ("full vacuum a", "full vacuum b"):
        body = {"taskName": name, "taskType": "VACUUM", "targetId": instance["id"],
                "schedule": {"frequency": "DAILY", "cronExpression": "30 6 * * *"},
                "configuration": {"requiresExclusiveLock": True}}  # fmt: skip
        status, created = stack.request("POST", f"{M}/tasks", body, token)
        assert status == 201, created
        ids.append(created["taskId"])
    status, sched = stack.request("GET", f"{M}/schedule", token=token)
    assert status == 200, sched
    kinds = {(c["conflictType"], tuple(c["affectedTasks"])) for c in sched["conflicts"]}
    assert ("RESOURCE", tuple(sorted(ids))) in kinds
    assert {("TIME", (ids[0],)), ("TIME", (ids[1],))} <= kinds
    status, proposal = stack.request(
        "POST",
        f"{M}/schedule/optimize",
        {"timeHorizon": 24, "optimizationGoal": "MINIMIZE_IMPACT", "apply": True},
        token,
    )
    assert status == 200 and proposal["applied"], proposal
    moved = {c["taskId"]: c for c in proposal["changes"]}
    assert set(ids) <= set(moved)
    for tid in ids:
        hour = int(moved[tid]["proposedTime"][11:13])
        assert 1 <= hour < 5, moved[tid]
    status, sched = stack.request("GET", f"{M}/schedule", token=token)
    assert not [c for c in sched["conflicts"] if set(ids) & set(c["affectedTasks"])], sched["conflicts"]


def test_dashboard_and_the_pdf_report(
    stack: LocalStack, token: str, instance: dict[str, Any], tmp_path: Path
) -> None:
    status, board = stack.request("GET", f"{M}/dashboard?targetId={instance['id']}", token=token)
    assert status == 200, board
    assert board["summary"]["totalTasks"] >= 3 and board["recentExecutions"]
    categories = {i["category"] for i in board["systemHealth"]["indicators"]}
    assert {"DEAD_TUPLE_RATIO", "XID_AGE", "SEQUENCE_USAGE", "INDEX_BLOAT"} <= categories

    status, csv_text = stack.request(
        "GET", f"{M}/reports?reportType=EXECUTION_SUMMARY&format=CSV", token=token
    )
    assert status == 200 and csv_text.splitlines()[0].startswith("executionId"), csv_text[:200]
    req = urllib.request.Request(
        f"{stack.url}{M}/reports?reportType=EXECUTION_SUMMARY&format=PDF&timeRange=1d",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        pdf = resp.read()
        assert resp.headers["Content-Type"] == "application/pdf"
        assert "attachment" in resp.headers["Content-Disposition"]
    assert pdf.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "40", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True
    )
    assert list(tmp_path.glob("page*.png"))


def test_a_cron_task_fires_on_its_own(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    # Two minutes ahead: one minute ahead is missed (and waits an hour) when the task is
    # created in the last second before that minute starts.
    when = datetime.now(UTC) + timedelta(minutes=2)
    body = {"taskName": "analyze soon", "taskType": "ANALYZE", "targetId": instance["id"],
            "schedule": {"frequency": "HOURLY", "cronExpression": f"{when.minute} * * * *"}}  # fmt: skip
    status, created = stack.request("POST", f"{M}/tasks", body, token)
    assert status == 201, created

    def fired() -> dict[str, Any] | None:
        status, found = stack.request("GET", f"{M}/executions?taskId={created['taskId']}", token=token)
        return found["executions"][0] if found["executions"] else None

    execution = wait_for(fired, timeout=210, what="the cron task's execution")
    assert execution["triggeredBy"] == "schedule"
    started = (
        datetime.fromisoformat(execution["startTime"].replace("Z", "+00:00"))
        if execution["startTime"]
        else None
    )
    due = when.replace(second=0, microsecond=0)
    print("cron fired", (started - due).total_seconds() if started else None, "s after its time")
    status, _ = stack.request("DELETE", f"{M}/tasks/{created['taskId']}", token=token)
    assert status == 200


def test_a_task_waits_on_a_lock_retries_and_notifies(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    """requiresExclusiveLock: a statement blocked by a session's lock gives up at lock_timeout
    and is retried; the task's notificationSettings reach its channel through the monitoring
    API's notification delivery."""
    uri = instance["credentials"]["uri"]
    _bloat(uri, "locked", 50_000)
    with http_receiver() as http:
        channel = {"type": "WEBHOOK", "name": "maintenance hook",
                   "configuration": {"url": http.url("/maintenance"), "secret": "maintenance-secret-0123"}}  # fmt: skip
        status, made = stack.request("POST", "/api/v1/monitoring/notifications/channels", channel, token)
        assert status == 201, made
        task = {"taskName": "locked vacuum", "taskType": "VACUUM", "targetId": instance["id"],
                "schedule": {"frequency": "DAILY", "cronExpression": "0 4 * * *"},
                "configuration": {"requiresExclusiveLock": True, "retryAttempts": 2, "retryDelay": 0.05,
                                  "notificationSettings": {"onSuccess": True, "onFailure": True,
                                                           "recipients": [made["channelId"]]}}}  # fmt: skip
        status, created = stack.request("POST", f"{M}/tasks", task, token)
        assert status == 201, created
        with psycopg.connect(uri, connect_timeout=5) as holder:
            holder.execute("LOCK TABLE public.locked IN SHARE UPDATE EXCLUSIVE MODE")
            status, started = stack.request(
                "POST", f"{M}/tasks/{created['taskId']}/execute", {"overrideSchedule": True}, token
            )
            assert status == 202, started
            failed = _wait_execution(stack, token, started["executionId"])
            holder.rollback()
        print("locked:", failed["status"], failed["attempts"], failed["errorMessage"])
        assert failed["status"] == "FAILED" and failed["attempts"] == 3, failed
        assert (
            "lock_timeout of 2000 ms" in failed["errorMessage"] and "public.locked" in failed["errorMessage"]
        )
        # The channel hears the tenant's alerts too (the held lock may raise blocking_sessions):
        # look for the task's own notifications among them.
        hook = _notification(http, "locked vacuum", "FAILED")
        assert "locked vacuum" in hook.raw.decode() and "FAILED" in hook.raw.decode()

        status, again = stack.request(
            "POST", f"{M}/tasks/{created['taskId']}/execute", {"overrideSchedule": True}, token
        )
        done = _wait_execution(stack, token, again["executionId"])
        assert done["status"] == "COMPLETED" and done["attempts"] == 1, done
        success = _notification(http, "locked vacuum", "COMPLETED")
        assert "COMPLETED" in success.raw.decode()


def _notification(http: Any, *words: str) -> Any:
    """The first request to /maintenance whose body holds every one of `words`."""

    def found() -> Any:
        return next(
            (r for r in http.requests_to("/maintenance") if all(w in r.raw.decode() for w in words)), None
        )

    return wait_for(found, timeout=60, what=f"a maintenance notification with {words}")


def test_optimize_outside_its_window_waits_for_it(
    stack: LocalStack, token: str, instance: dict[str, Any]
) -> None:
    body = {"targetId": instance["id"], "optimizationType": "ANALYZE", "maintenanceWindow": _outside_now()}
    status, waiting = stack.request("POST", f"{M}/optimize/database", body, token)
    assert status == 202 and waiting["status"] == "INITIATED" and waiting["scheduledFor"], waiting
    assert waiting["operationId"] is None
    status, again = stack.request("GET", f"{M}/optimize/database/{waiting['optimizationId']}", token=token)
    assert again["status"] == "INITIATED", again


def test_cleanup_of_backups_and_sessions(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    path = f"/api/v1/postgres/single/{instance['id']}"
    stack.wait_first_backup(path, token)
    status, second = stack.request("POST", f"{path}/backup", {"type": "full"}, token)
    assert status == 202, second
    stack.wait_operation(second["operation_id"], token, timeout=180)
    request = {"categories": ["BACKUP", "SESSION"], "dryRun": True, "customRetentionPolicies": {"BACKUP": 0}}
    status, dry = stack.request("POST", f"{M}/cleanup/data", request, token)
    assert status == 200, dry
    backup, session = dry["results"]
    assert backup["recordsIdentified"] == 1 and backup["recordsDeleted"] == 0, backup  # the newest full stays
    assert session["status"] == "COMPLETED", session
    status, done = stack.request("POST", f"{M}/cleanup/data", {**request, "dryRun": False}, token)
    assert status == 200 and done["results"][0]["recordsDeleted"] == 1, done
    status, listed = stack.request("GET", f"{path}/backups", token=token)
    assert [b["backup_id"] for b in listed["backups"]] == [second["backup_id"]], listed


def test_backup_and_cleanup_tasks(stack: LocalStack, token: str, instance: dict[str, Any]) -> None:
    made = {}
    for kind in ("BACKUP", "CLEANUP"):
        body = {"taskName": f"{kind.lower()} task", "taskType": kind, "targetId": instance["id"],
                "schedule": {"frequency": "WEEKLY", "cronExpression": "0 5 * * 6"}}  # fmt: skip
        status, created = stack.request("POST", f"{M}/tasks", body, token)
        assert status == 201 and created["scheduleExpression"] == "cron(0 5 ? * 7 *)", created
        made[kind] = created
    status, started = stack.request(
        "POST", f"{M}/tasks/{made['BACKUP']['taskId']}/execute", {"overrideSchedule": True}, token
    )
    done = _wait_execution(stack, token, started["executionId"], timeout=240)
    assert done["status"] == "COMPLETED", done
    (step,) = done["statements"]
    status, listed = stack.request("GET", f"/api/v1/postgres/single/{instance['id']}/backups", token=token)
    assert step["backup_id"] in [b["backup_id"] for b in listed["backups"]], (step, listed)
    status, started = stack.request(
        "POST", f"{M}/tasks/{made['CLEANUP']['taskId']}/execute", {"overrideSchedule": True}, token
    )
    done = _wait_execution(stack, token, started["executionId"])
    assert done["status"] == "COMPLETED" and "records before" in done["statements"][0]["details"], done
