"""/api/v1/compliance and GET /api/v1/system/compliance/report with the ports faked: a fake
SqlTarget answers the controls' queries from per-server settings and rows, so assessments,
scores, evidence, remediation tasks (opened, re-verified, attested), reports and the
evidence package are seen as a compliance officer sees them."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgfleet.domains.compliance import catalog
from pgfleet.domains.compliance import sql as q

C = "/api/v1/compliance"
ACME = "pgi-0123456789ab"
ACME2 = "pgi-0123456789ac"
GLOBEX = "pgi-00000000000f"
SETTINGS = {"password_encryption": "scram-sha-256", "ssl": "off", "log_connections": "off",
            "log_disconnections": "off", "shared_preload_libraries": "pg_stat_statements", "data_checksums": "on"}  # fmt: skip


class FakeSession:
    def __init__(self, server: dict[str, Any], database: str | None) -> None:
        self.server, self.database = server, database

    def fetch_one(self, query: Any, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.fetch_all(query, params)
        return rows[0] if rows else None

    def fetch_all(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        if query == q.DATABASES:
            return [("app",), ("postgres",)]
        name = next(k for k, v in q.QUERIES.items() if v == query)
        if name in SETTINGS:
            return [(self.server["settings"][name],)]
        if name == "public_schema_create":
            return [(self.database, "public")] if self.database in self.server["public_create"] else []
        if name == "privileged_managed_roles":
            return [(r, True, False, False) for r in params[0] if r in self.server["superusers"]]
        return list(self.server["rows"].get(name, []))


class FakeSql:
    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.sessions = 0

    @contextmanager
    def session(self, server_id: str, **kwargs: Any) -> Iterator[FakeSession]:
        self.sessions += 1
        yield FakeSession(self.servers[server_id], kwargs.get("database"))


@pytest.fixture
def sql(fake_ports: Any) -> FakeSql:
    fake = FakeSql()
    fake_ports.sql = fake
    for rid, tenant in ((ACME, "acme"), (ACME2, "acme"), (GLOBEX, "globex")):
        fake.servers[rid] = {
            "settings": dict(SETTINGS),
            "rows": {},
            "public_create": set(),
            "superusers": set(),
        }
        fake_ports.store.create("instance", {
            "id": rid, "tenant_id": tenant, "name": rid, "status": "running", "created_at": "2026-01-01T00:00:00Z",
            "username": f"app_{rid[-2:]}", "database": "app", "endpoint": {"host": "127.0.0.1", "port": 6543},
        })  # fmt: skip
    return fake


def _assess(call: Any, fake_ports: Any, body: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
    status, started = call("POST", f"{C}/assessments/run", body, role="compliance_officer", tenant=tenant)
    assert status == 202, started
    assert started["status"] == "INITIATED" and started["controls_to_assess"] == len(started["control_ids"])
    fake_ports.drain()
    status, done = call(
        "GET", f"{C}/assessments/{started['assessment_id']}", role="compliance_officer", tenant=tenant
    )
    assert status == 200 and done["status"] == "COMPLETED", done
    return done  # type: ignore[no-any-return]


def _result(assessment: dict[str, Any], control_id: str) -> dict[str, Any]:
    return next(r for r in assessment["results"] if r["control_id"] == control_id)


def _tasks(call: Any, tenant: str = "acme", **query: str) -> dict[str, Any]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = call(
        "GET", f"{C}/remediation/tasks{'?' + qs if qs else ''}", role="compliance_officer", tenant=tenant
    )
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def test_the_catalog_is_data_with_sourced_requirement_ids() -> None:
    cat = catalog.load()
    assert {f.key for f in cat.frameworks.values()} == set(catalog.FRAMEWORKS)
    assert all(f.source for f in cat.frameworks.values())
    patterns = {"HIPAA": r"^164\.3\d\d\([a-e]\)", "GDPR": r"^Art\. 32\(", "PCI_DSS": r"^\d{1,2}\.\d+(\.\d+)*$",
                "SOC2": r"^(CC\d\.\d|A1\.\d)$", "SOX": r"^ITGC-(ACCESS|CHANGE|OPERATIONS)$"}  # fmt: skip
    import re

    for control in cat.controls:
        for framework, ids in control.requirements.items():
            assert ids and all(re.match(patterns[framework], i) for i in ids), (control.id, ids)
        if control.kind == "sql":
            assert control.sql_text.startswith("SELECT") and "pg_catalog." in control.sql_text
    assert {"164.312(a)(1)", "164.312(b)", "164.308(a)(2)"} <= {
        i for c in cat.of("HIPAA") for i in c.requirement_ids("HIPAA")
    }
    with pytest.raises(ValueError, match="severity"):
        catalog.parse({**json.loads((catalog.resources.files("pgfleet.domains.compliance") / "data/controls.json").read_text()),
                       "controls": [{"id": "X", "title": "x", "severity": "SEVERE", "kind": "sql", "query": "ssl",
                                     "rule": {"type": "equals", "value": "on"}, "remediation": "r",
                                     "requirements": {"HIPAA": ["164.312(b)"]}}]})  # fmt: skip


def test_every_query_is_one_read_only_statement_postgresql_parses() -> None:
    import pglast

    for name, text in {**q.QUERIES, "databases": q.DATABASES}.items():
        (statement,) = pglast.parse_sql(text.replace("%s", "$1"))
        assert type(statement.stmt).__name__ == "SelectStmt", name


def test_a_hipaa_assessment_passes_what_holds_and_fails_what_does_not(
    call: Any, fake_ports: Any, sql: FakeSql
) -> None:
    sql.servers[ACME]["public_create"] = {"app"}
    sql.servers[ACME2]["superusers"] = {"app_ac"}
    done = _assess(call, fake_ports, {"framework": "HIPAA"})
    assert set(done["servers"]) == {ACME, ACME2}  # globex's server is not acme's to see
    scram = _result(done, "PG-PASSWORD-SCRAM")
    assert scram["assessment_result"] == "COMPLIANT" and scram["score"] == 100.0
    evidence = scram["evidence_details"][0]["evidence"]
    assert evidence["query"] == q.QUERIES["password_encryption"] and evidence["rows"] == [["scram-sha-256"]]
    assert evidence["target_id"] in (ACME, ACME2) and evidence["at"].endswith("Z")
    tls = _result(done, "PG-TLS")
    assert tls["assessment_result"] == "NON_COMPLIANT" and tls["score"] == 0.0
    assert any("ssl = 'off'" in f for f in tls["findings"]) and tls["remediation_priority"] == "HIGH"
    assert tls["remediation_deadline"] and len(tls["remediation_task_ids"]) == 2
    public = _result(done, "PG-PUBLIC-SCHEMA-CREATE")  # one of two servers fails
    assert public["assessment_result"] == "NON_COMPLIANT" and public["score"] == 50.0
    assert public["findings"] == [f"{ACME}: database app: PUBLIC may CREATE in schema public"]
    roles = _result(done, "PG-ROLE-PRIVILEGES")
    assert roles["findings"] == [f"{ACME2}: role app_ac: superuser=True, createrole=False, replication=False"]
    assert _result(done, "SECURITY-OFFICER")["assessment_result"] == "NOT_APPLICABLE"
    assert _result(done, "RBAC-LEAST-PRIVILEGE")["assessment_result"] == "COMPLIANT"
    audit = _result(done, "AUDIT-TRAIL")  # 365 days kept; HIPAA's documentation is kept 6 years
    assert audit["assessment_result"] == "NON_COMPLIANT" and any("2190" in f for f in audit["findings"])
    scores = [r["score"] for r in done["results"] if r["score"] is not None]
    assert done["overall_score"] == round(sum(scores) / len(scores), 1)
    s = done["summary"]
    assert s["critical_findings"] == 1 and s["total_controls"] == len(catalog.load().of("HIPAA"))
    assert s["compliant"] + s["non_compliant"] + s["warnings"] + s["not_applicable"] == s["total_controls"]

    status, frameworks = call("GET", f"{C}/frameworks", role="compliance_officer", tenant="acme")
    assert status == 200
    hipaa = next(f for f in frameworks["frameworks"] if f["framework_name"] == "HIPAA")
    assert hipaa["compliance_score"] == done["overall_score"] and hipaa["status"] == "NON_COMPLIANT"
    assert hipaa["last_assessment_id"] == done["assessment_id"] and hipaa["next_assessment_due"]
    gdpr = next(f for f in frameworks["frameworks"] if f["framework_name"] == "GDPR")
    assert gdpr["status"] == "NOT_ASSESSED" and gdpr["compliance_score"] is None
    assert frameworks["overall_compliance_score"] == done["overall_score"]
    status, body = call(
        "GET", f"{C}/assessments/{done['assessment_id']}", role="compliance_officer", tenant="globex"
    )
    assert status == 404
    status, body = call("GET", f"{C}/frameworks", role="viewer", tenant="acme")
    assert status == 403


def test_a_failed_control_opens_a_task_fixing_it_and_verifying_closes_it(
    call: Any, fake_ports: Any, sql: FakeSql
) -> None:
    done = _assess(
        call,
        fake_ports,
        {"framework": "HIPAA", "assessment_type": "TARGETED", "specific_controls": ["164.312(e)(1)"]},
    )
    assert [r["control_id"] for r in done["results"]] == ["PG-TLS"]
    tasks = _tasks(call, status="OPEN")
    (task,) = [t for t in tasks["tasks"] if t["target_id"] == ACME]
    assert (
        task["priority"] == "HIGH"
        and task["control_reference"] == "164.312(e)(1)"
        and task["status"] == "OPEN"
    )
    assert task["progress_percentage"] == 0 and task["next_milestone"] == "Work started"
    assert tasks["summary"]["open"] == 2 and tasks["summary"]["overdue"] == 0
    again = _assess(
        call,
        fake_ports,
        {"framework": "HIPAA", "assessment_type": "TARGETED", "specific_controls": ["PG-TLS"]},
    )
    assert _tasks(call)["summary"]["total_tasks"] == 2  # the open ones were updated, none opened
    assert _tasks(call)["tasks"][0]["assessment_id"] == again["assessment_id"]

    path = f"{C}/remediation/tasks/{task['task_id']}"
    status, body = call("PUT", path, {"status": "IN_PROGRESS", "progress_notes": "certificate ordered"},
                        role="compliance_officer", tenant="acme")  # fmt: skip
    assert status == 200 and body["status"] == "IN_PROGRESS" and body["progress_percentage"] == 50
    status, body = call(
        "PUT", path, {"verification_status": "VERIFIED"}, role="compliance_officer", tenant="acme"
    )
    assert status == 409 and body["error"]["details"]["result"] == "FAIL"  # still off: never a made-up pass
    sql.servers[ACME]["settings"]["ssl"] = "on"
    status, body = call(
        "PUT", path, {"verification_status": "VERIFIED"}, role="compliance_officer", tenant="acme"
    )
    assert status == 200, body
    assert (
        body["status"] == "COMPLETED"
        and body["verification_status"] == "VERIFIED"
        and body["progress_percentage"] == 100
    )
    assert [v["result"] for v in body["verifications"]] == ["FAIL", "PASS"]
    status, body = call("PUT", path, {"status": "IN_PROGRESS"}, role="compliance_officer", tenant="acme")
    assert status == 409  # a completed task takes no more changes
    status, body = call("PUT", path, {"status": "OPEN"}, role="compliance_officer", tenant="acme")
    assert status == 422
    events = fake_ports.history.query("audit", start=datetime(2020, 1, 1, tzinfo=UTC), end=datetime(2100, 1, 1, tzinfo=UTC),
                                      filters={"action": "compliance.remediation.update"}, page_size=50)  # fmt: skip
    assert events.total_items == 3
    # the other server's task closes when an assessment sees its control pass
    sql.servers[ACME2]["settings"]["ssl"] = "on"
    partial = _assess(call, fake_ports, {"framework": "HIPAA", "assessment_type": "PARTIAL"})
    assert "PG-TLS" in {r["control_id"] for r in partial["results"]}  # it was not COMPLIANT last time
    assert {t["status"] for t in _tasks(call)["tasks"] if t["control_id"] == "PG-TLS"} == {"COMPLETED"}
    status, body = call("GET", f"{C}/remediation/tasks", role="compliance_officer", tenant="globex")
    assert body["tasks"] == []


def test_attested_evidence_is_accepted_by_a_compliance_officer_only(
    call: Any, fake_ports: Any, sql: FakeSql
) -> None:
    _assess(
        call,
        fake_ports,
        {"framework": "HIPAA", "assessment_type": "TARGETED", "specific_controls": ["164.308(a)(2)"]},
    )
    (task,) = _tasks(call)["tasks"]
    assert (
        task["control_id"] == "SECURITY-OFFICER"
        and task["task_type"] == "DOCUMENTATION"
        and task["target_id"] is None
    )
    path = f"{C}/remediation/tasks/{task['task_id']}"
    status, body = call(
        "PUT", path, {"verification_status": "VERIFIED"}, role="compliance_officer", tenant="acme"
    )
    assert status == 409  # nothing attested yet
    letter = base64.b64encode(b"%PDF-1.4 appointment of the security official").decode()
    status, body = call("PUT", path, {"evidence_file": {"filename": "appointment.pdf", "content_type": "application/pdf",
                                                        "content_base64": letter}}, role="compliance_officer", tenant="acme")  # fmt: skip
    assert status == 200 and body["verification_status"] == "PENDING" and body["evidence"][0]["sha256"]
    status, body = call("PUT", path, {"verification_status": "VERIFIED"}, role="admin", tenant="acme")
    assert status == 403
    status, body = call(
        "PUT", path, {"verification_status": "VERIFIED"}, role="compliance_officer", tenant="acme"
    )
    assert status == 200 and body["status"] == "COMPLETED" and body["verification_status"] == "VERIFIED"
    done = _assess(
        call,
        fake_ports,
        {"framework": "HIPAA", "assessment_type": "TARGETED", "specific_controls": ["SECURITY-OFFICER"]},
    )
    result = _result(done, "SECURITY-OFFICER")
    assert result["assessment_result"] == "COMPLIANT" and "accepted by" in result["evidence"]
    status, body = call(
        "PUT",
        path,
        {"evidence_file": {"filename": "x", "content_base64": "!!!!"}},
        role="compliance_officer",
        tenant="acme",
    )
    assert status == 409  # closed


def test_reports_and_the_evidence_package(call: Any, fake_ports: Any, sql: FakeSql, tmp_path: Path) -> None:
    status, body = call(
        "POST", f"{C}/reports", {"framework": "HIPAA"}, role="compliance_officer", tenant="acme"
    )
    assert status == 409  # no assessment yet: no report made up
    done = _assess(call, fake_ports, {"framework": "HIPAA"})
    status, report = call(
        "POST", f"{C}/reports", {"framework": "HIPAA"}, role="compliance_officer", tenant="acme"
    )
    assert status == 201, report
    assert report["report_type"] == "AD_HOC" and report["overall_compliance_score"] == done["overall_score"]
    assert (
        f"score {done['overall_score']}" in report["executive_summary"] and "Ad hoc" in report["report_name"]
    )
    assert report["file_location"].startswith("fake://objects/compliance/reports/")
    pdf = fake_ports.objects.get(f"compliance/reports/{report['report_id']}.pdf")
    assert pdf.startswith(b"%PDF")
    if shutil.which("pdftotext"):  # the report says what the assessment found
        (tmp_path / "r.pdf").write_bytes(pdf)
        text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], check=True, capture_output=True,
                              text=True, timeout=60).stdout  # fmt: skip
        assert "PG-PUBLIC-SCHEMA-CREATE" in text and "NON_COMPLIANT" in text and "Executive summary" in text
    document = json.loads(fake_ports.objects.get(f"compliance/reports/{report['report_id']}.json"))
    assert document["report"]["id"] == report["report_id"] and len(document["results"]) == len(
        done["results"]
    )
    status, listed = call(
        "GET", f"{C}/reports?framework=HIPAA&report_type=AD_HOC", role="compliance_officer", tenant="acme"
    )
    assert status == 200 and listed["total_count"] == 1
    status, listed = call("GET", f"{C}/reports", role="compliance_officer", tenant="globex")
    assert listed["total_count"] == 0

    status, system = call("GET", "/api/v1/system/compliance/report?framework=HIPAA&includeEvidence=true",
                          role="compliance_officer", tenant="acme")  # fmt: skip
    assert status == 200, system
    assert system["overallScore"] == done["overall_score"] and system["assessmentId"] == done["assessment_id"]
    tls = next(r for r in system["requirements"] if r["requirementId"] == "164.312(e)(1)")
    assert tls["status"] == "NON_COMPLIANT" and tls["lastAssessed"] == done["completion_timestamp"]
    assert any(f["controlId"] == "PG-TLS" and f["remediationTaskId"] for f in system["findings"])
    assert system["recommendations"] and system["evidencePackage"].startswith(
        "fake://objects/compliance/evidence-packages/"
    )
    key = system["evidencePackage"].split("fake://objects/", 1)[1].split("?", 1)[0]
    with zipfile.ZipFile(io.BytesIO(fake_ports.objects.get(key))) as zf:
        assert {"README.txt", "assessment.json", "evidence.json", "remediation_tasks.json"} <= set(
            zf.namelist()
        )
        evidence = json.loads(zf.read("evidence.json"))
        assert evidence["assessment_id"] == done["assessment_id"]
    status, body = call(
        "GET", "/api/v1/system/compliance/report?framework=GDPR", role="compliance_officer", tenant="acme"
    )
    assert status == 409


def test_the_monthly_schedule_writes_periodic_reports(call: Any, fake_ports: Any, sql: FakeSql) -> None:
    from pgfleet.handlers import domains

    lines = domains.tasks()["compliance.monthly"](fake_ports, {})
    assert len(lines) == 2 * len(catalog.FRAMEWORKS)  # acme and globex, every framework
    fake_ports.drain()
    status, listed = call(
        "GET", f"{C}/reports?report_type=PERIODIC", role="compliance_officer", tenant="acme"
    )
    assert status == 200 and listed["total_count"] == len(catalog.FRAMEWORKS)
    assert all(r["next_report_due"] and "Monthly" in r["report_name"] for r in listed["reports"])
    assert "pgfleet-compliance-monthly" in {s.name for s in domains.platform_schedules()}


@pytest.mark.parametrize(
    "body",
    [
        {"framework": "ISO27001"},
        {"framework": "HIPAA", "assessment_type": "QUICK"},
        {"framework": "HIPAA", "assessment_type": "TARGETED"},
        {"framework": "HIPAA", "assessment_type": "TARGETED", "specific_controls": ["999.999"]},
        {"framework": "HIPAA", "specific_controls": ["164.312(b)"]},
        {"framework": "HIPAA", "extra": 1},
    ],
)
def test_bad_assessment_requests_are_422(
    call: Any, fake_ports: Any, sql: FakeSql, body: dict[str, Any]
) -> None:
    status, answer = call("POST", f"{C}/assessments/run", body, role="compliance_officer", tenant="acme")
    assert status == 422, answer


def test_bad_filters_are_422(call: Any, fake_ports: Any, sql: FakeSql) -> None:
    for path in (f"{C}/frameworks?framework=ISO", f"{C}/remediation/tasks?status=DONE", f"{C}/reports?report_type=X",
                 f"{C}/remediation/tasks?due_date_from=yesterday", "/api/v1/system/compliance/report?framework=X"):  # fmt: skip
        status, _ = call("GET", path, role="compliance_officer", tenant="acme")
        assert status == 422, path
    status, _ = call("GET", f"{C}/assessments/cas-000000000000", role="compliance_officer", tenant="acme")
    assert status == 404


def test_a_server_that_cannot_be_read_is_never_a_pass(call: Any, fake_ports: Any, sql: FakeSql) -> None:
    fake_ports.store.update("instance", ACME2, {"status": "stopped"})
    done = _assess(call, fake_ports, {"framework": "HIPAA"})
    scram = _result(done, "PG-PASSWORD-SCRAM")
    assert scram["assessment_result"] == "WARNING" and scram["score"] == 50.0
    assert f"{ACME2}: {ACME2} is stopped: not assessed" in scram["findings"]
    assert done["summary"]["warnings"] >= 1


def test_large_evidence_is_cut_to_fit_a_record_and_kept_whole_in_the_object_store(
    call: Any, fake_ports: Any, sql: FakeSql
) -> None:
    from pgfleet.domains.compliance import evaluation

    many = [(f"d{i}", "public", f"fn_{i}_" + "x" * 150, "owner") for i in range(100)]
    for server in sql.servers.values():
        server["rows"]["security_definer_without_search_path"] = many
    budget = evaluation.RECORD_BUDGET
    evaluation.RECORD_BUDGET = 20_000
    try:
        done = _assess(call, fake_ports, {"framework": "HIPAA"})
    finally:
        evaluation.RECORD_BUDGET = budget
    definer = _result(done, "PG-SECURITY-DEFINER")
    assert done["evidence_cut"] and all(len(o["evidence"]["rows"]) <= 2 for o in definer["evidence_details"])
    assert definer["evidence_details"][0]["evidence"]["row_count"] == 200  # two databases x 100
    assert len(definer["findings"]) == 2 * 26 and definer["findings"][-1].endswith(
        "175 more (the evidence has the rows)"
    )
    full = json.loads(fake_ports.objects.get(f"compliance/assessments/{done['assessment_id']}/evidence.json"))
    kept = next(r for r in full["results"] if r["control_id"] == "PG-SECURITY-DEFINER")
    assert len(kept["evidence_details"][0]["evidence"]["rows"]) == 20  # ROWS_KEPT per server


def test_rbac_fails_when_every_caller_of_the_week_held_an_unrestricted_role(fake_ports: Any) -> None:
    from pgfleet.core import audit
    from pgfleet.domains.compliance import facts

    cat = catalog.load()
    control, framework = cat.control("RBAC-LEAST-PRIVILEGE"), cat.frameworks["HIPAA"]

    def called(user: str, roles: list[str], tenant: str = "acme") -> None:
        fake_ports.history.append_all([audit.call_event(
            at=datetime.now(UTC), method="GET", path="/api/v1/postgres/single", route=None, status=200,
            user_id=user, tenant_id=tenant, ip_address="127.0.0.1", user_agent=None,
            details={"roles": roles}, retention_days=30,
        )])  # fmt: skip

    assert (
        facts.platform_fact(fake_ports, control, framework, "acme").status == "PASS"
    )  # no call: definitions
    called("alice", ["tenant_admin"])
    called("root", ["admin"])
    called("bob", ["viewer"], tenant="globex")  # another tenant's caller is not acme's evidence
    outcome = facts.platform_fact(fake_ports, control, framework, "acme")
    assert outcome.status == "FAIL" and "no narrower role is in use" in outcome.findings[0]
    assert outcome.evidence["observed"]["callers_by_role"] == {"admin": 1, "tenant_admin": 1}
    called("carol", ["operator"])
    outcome = facts.platform_fact(fake_ports, control, framework, "acme")
    assert outcome.status == "PASS" and outcome.evidence["observed"]["callers_by_role"]["operator"] == 1
