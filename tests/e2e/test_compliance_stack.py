"""Issue 18's compliance part, as a compliance officer on the real local stack: a FULL HIPAA
assessment of a real instance passes the controls that hold (SCRAM, pg_hba, encrypted
backups, RBAC) and fails those that do not (PUBLIC may CREATE in public because the owner
granted it, no verified backup, too short a PITR window, HIPAA's 6-year retention), each
with its evidence (the query, the server, the time, the rows); a remediation task opens for
the grant; a re-verify before the fix is a 409, after REVOKE it is VERIFIED and the task
closes; an AD_HOC report's PDF downloads from its presigned URL and renders with pdftoppm;
the system report's evidence package is a zip of the evidence; another tenant sees none of
it; bad input is a 422."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import LocalStack, running_stack

C = "/api/v1/compliance"
PDFTOPPM = shutil.which("pdftoppm")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-compliance-") as s:
        yield s


@pytest.fixture(scope="module")
def officer(stack: LocalStack) -> str:
    return stack.token("compliance_officer", "acme")


@pytest.fixture(scope="module")
def instance(stack: LocalStack) -> dict[str, Any]:
    operator = stack.token("operator", "acme")
    status, body = stack.request("POST", "/api/v1/postgres/single", {"name": "audited"}, operator)
    assert status == 202, body
    stack.wait_created(body["operation_id"], operator)
    stack.wait_first_backup(f"/api/v1/postgres/single/{body['id']}", operator)
    status, tenant = stack.request(
        "POST", f"/api/v1/postgres/single/{body['id']}/tenants", {"tenant_id": "shop-a"}, operator
    )
    assert status == 201, tenant
    body["tenant"] = tenant
    # The owner opens schema public to everyone: what the assessment must catch.
    with psycopg.connect(body["credentials"]["uri"], autocommit=True, connect_timeout=5) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    return body


def _assess(stack: LocalStack, token: str, body: dict[str, Any]) -> dict[str, Any]:
    status, started = stack.request("POST", f"{C}/assessments/run", body, token)
    assert status == 202, started
    assert started["status"] == "INITIATED" and started["controls_to_assess"] > 0
    stack.wait_operation(started["operation_id"], token, timeout=120)
    status, done = stack.request("GET", f"{C}/assessments/{started['assessment_id']}", token=token)
    assert status == 200 and done["status"] == "COMPLETED", done
    return done  # type: ignore[no-any-return]


def _result(done: dict[str, Any], control_id: str) -> dict[str, Any]:
    return next(r for r in done["results"] if r["control_id"] == control_id)


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # a presigned link: no token
        return bytes(response.read())


def test_a_hipaa_assessment_opens_a_task_that_fixing_and_reverifying_closes(
    stack: LocalStack, officer: str, instance: dict[str, Any], tmp_path: Path
) -> None:
    iid = instance["id"]
    done = _assess(stack, officer, {"framework": "HIPAA", "assessment_type": "FULL"})
    assert done["servers"] == [iid]
    scram = _result(done, "PG-PASSWORD-SCRAM")
    assert scram["assessment_result"] == "COMPLIANT", scram
    (evidence,) = scram["evidence_details"]
    assert evidence["evidence"]["target_id"] == iid and evidence["evidence"]["rows"] == [["scram-sha-256"]]
    assert "pg_catalog.current_setting('password_encryption')" in evidence["evidence"]["query"]
    assert _result(done, "PG-HBA-STRONG-AUTH")["assessment_result"] == "COMPLIANT"
    encrypted = _result(done, "BACKUP-ENCRYPTED")
    assert encrypted["assessment_result"] == "COMPLIANT", encrypted
    assert "encrypted" in encrypted["evidence_details"][0]["evidence"]["observed"]["repository"]
    assert _result(done, "RBAC-LEAST-PRIVILEGE")["assessment_result"] == "COMPLIANT"
    public = _result(done, "PG-PUBLIC-SCHEMA-CREATE")
    assert public["assessment_result"] == "NON_COMPLIANT", public
    assert f"{iid}: database {instance['database']}: PUBLIC may CREATE in schema public" in public["findings"]
    for failing in ("BACKUP-VERIFIED", "BACKUP-PITR-WINDOW", "AUDIT-TRAIL"):
        assert _result(done, failing)["assessment_result"] == "NON_COMPLIANT", _result(done, failing)
    assert _result(done, "SECURITY-OFFICER")["assessment_result"] == "NOT_APPLICABLE"
    # Tenant isolation, checked against what the tenant's own login can do: connect to the
    # instance's database, or be refused.
    login = instance["tenant"]["credentials"]["username"]
    app_db = psycopg.conninfo.make_conninfo(
        instance["tenant"]["credentials"]["uri"], dbname=instance["database"]
    )
    try:
        psycopg.connect(app_db, connect_timeout=5).close()
        reachable = True
    except psycopg.OperationalError:
        reachable = False
    isolation = _result(done, "TENANT-ISOLATION")
    (checked,) = isolation["evidence_details"]
    assert {p["role"] for p in checked["evidence"]["params"]} >= {login}, checked
    if reachable:
        assert isolation["assessment_result"] == "NON_COMPLIANT", isolation
        assert f"{iid}: role {login} may connect to database {instance['database']}" in isolation["findings"]
    else:
        assert isolation["assessment_result"] == "COMPLIANT", isolation
    judged = [r["score"] for r in done["results"] if r["score"] is not None]
    assert done["overall_score"] == round(sum(judged) / len(judged), 1)

    status, frameworks = stack.request("GET", f"{C}/frameworks?framework=HIPAA", token=officer)
    assert status == 200 and frameworks["frameworks"][0]["compliance_score"] == done["overall_score"]

    status, listed = stack.request("GET", f"{C}/remediation/tasks?status=OPEN", token=officer)
    assert status == 200, listed
    (task,) = [t for t in listed["tasks"] if t["control_id"] == "PG-PUBLIC-SCHEMA-CREATE"]
    assert task["target_id"] == iid and task["priority"] == "MEDIUM" and task["due_date"]
    assert public["remediation_task_ids"] == [task["task_id"]]
    path = f"{C}/remediation/tasks/{task['task_id']}"
    status, body = stack.request("PUT", path, {"verification_status": "VERIFIED"}, officer)
    assert status == 409 and body["error"]["details"]["result"] == "FAIL", body
    with psycopg.connect(instance["credentials"]["uri"], autocommit=True, connect_timeout=5) as conn:
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    status, body = stack.request(
        "PUT", path, {"verification_status": "VERIFIED", "progress_notes": "revoked"}, officer
    )
    assert status == 200, body
    assert body["status"] == "COMPLETED" and body["verification_status"] == "VERIFIED", body
    assert [v["result"] for v in body["verifications"]] == ["FAIL", "PASS"]
    status, body = stack.request("PUT", path, {"status": "IN_PROGRESS"}, officer)
    assert status == 409

    status, report = stack.request("POST", f"{C}/reports", {"framework": "HIPAA"}, officer)
    assert status == 201, report
    assert report["overall_compliance_score"] == done["overall_score"] and report["executive_summary"]
    pdf = _download(report["file_location"])
    assert pdf.startswith(b"%PDF")
    document = json.loads(_download(report["json_location"]))
    assert document["report"]["id"] == report["report_id"]
    if PDFTOPPM:
        (tmp_path / "report.pdf").write_bytes(pdf)
        subprocess.run([PDFTOPPM, "-r", "40", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        pages = sorted(tmp_path.glob("page*.png"))
        assert pages and pages[0].read_bytes().startswith(b"\x89PNG")
    status, listed = stack.request("GET", f"{C}/reports?framework=HIPAA", token=officer)
    assert status == 200 and listed["total_count"] == 1

    status, system = stack.request(
        "GET", "/api/v1/system/compliance/report?framework=HIPAA&includeEvidence=true", token=officer
    )
    assert status == 200, system
    assert system["overallScore"] == done["overall_score"] and system["requirements"] and system["findings"]
    with zipfile.ZipFile(io.BytesIO(_download(system["evidencePackage"]))) as zf:
        evidence_file = json.loads(zf.read("evidence.json"))
    assert evidence_file["assessment_id"] == done["assessment_id"]
    queried = {o["scope"] for r in evidence_file["results"] for o in r["evidence_details"]}
    assert iid in queried

    globex = stack.token("compliance_officer", "globex")
    status, _ = stack.request("GET", f"{C}/assessments/{done['assessment_id']}", token=globex)
    assert status == 404
    status, theirs = stack.request("GET", f"{C}/remediation/tasks", token=globex)
    assert status == 200 and theirs["tasks"] == []
    status, body = stack.request("POST", f"{C}/assessments/run", {"framework": "ISO27001"}, officer)
    assert status == 422, body
    status, body = stack.request(
        "GET", f"{C}/assessments/{done['assessment_id']}", token=stack.token("viewer", "acme")
    )
    assert status == 403


def test_the_monthly_schedule_is_installed_and_its_run_writes_periodic_reports(
    stack: LocalStack, officer: str, instance: dict[str, Any]
) -> None:
    """The schedule `pgfleet up` installed, fired through the real path: a one-time copy of its
    target (same input) at() 30 s ahead in the same group, which the local ticker fires into
    the scheduled handler like EventBridge Scheduler would."""
    import time
    from datetime import UTC, datetime, timedelta

    import boto3

    scheduler = boto3.client(
        "scheduler", endpoint_url=f"http://127.0.0.1:{stack.aws_port}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    monthly = scheduler.get_schedule(Name="pgfleet-compliance-monthly", GroupName="pgfleet")
    assert monthly["ScheduleExpression"] == "cron(0 2 1 * ? *)"
    assert json.loads(monthly["Target"]["Input"])["detail"]["task"] == "compliance.monthly"
    when = datetime.now(UTC) + timedelta(seconds=30)
    scheduler.create_schedule(
        Name="e2e-compliance-monthly-now", GroupName="pgfleet", Target=monthly["Target"],
        ScheduleExpression=f"at({when:%Y-%m-%dT%H:%M:%S})", FlexibleTimeWindow={"Mode": "OFF"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            status, listed = stack.request("GET", f"{C}/reports?report_type=PERIODIC", token=officer)
            assert status == 200, listed
            if len(listed["reports"]) >= 5:  # one per framework for acme's servers
                break
            assert time.monotonic() < deadline, listed
            time.sleep(3)
    finally:
        scheduler.delete_schedule(Name="e2e-compliance-monthly-now", GroupName="pgfleet")
    reports = listed["reports"]
    assert {r["framework"] for r in reports} == {"HIPAA", "GDPR", "SOX", "PCI_DSS", "SOC2"}, reports
    first = datetime.now(UTC).replace(day=1)
    last_month = (first - timedelta(days=1)).strftime("%Y-%m")
    assert all(
        r["report_type"] == "PERIODIC" and r["reporting_period"].startswith(last_month) for r in reports
    ), reports
    assert _download(reports[0]["file_location"]).startswith(b"%PDF")
