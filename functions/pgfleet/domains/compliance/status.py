"""Where each framework stands, from real assessments only: `GET /api/v1/compliance/frameworks`
(the newest completed assessment of each framework in the caller's scope), and the seed's
ComplianceReportResponse of one framework (`GET /api/v1/system/compliance/report`), with its
evidence package: a zip of the assessment, its full evidence, the remediation tasks and the
attested evidence files, in the object store behind a presigned link."""

from __future__ import annotations

import io
import json
import statistics
import zipfile
from datetime import timedelta
from typing import Any

from pgfleet.core import auth, time_range
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState
from pgfleet.core.schedule_expressions import next_after
from pgfleet.domains.compliance import assessments, catalog, remediation, reports
from pgfleet.domains.compliance.checks import PASS, iso

REPORT_RANGE_DEFAULT = timedelta(days=30)
REPORT_RANGE_MAX = timedelta(days=366)


def scope_of(principal: Principal, tenant_id: str | None) -> str:
    return auth.tenant_scope(principal, tenant_id) or auth.PLATFORM


def frameworks(
    ports: Ports, principal: Principal, framework: str | None, tenant_id: str | None
) -> dict[str, Any]:
    tenant = scope_of(principal, tenant_id)
    cat = catalog.load()
    items = []
    for key in [framework] if framework else list(catalog.FRAMEWORKS):
        last = assessments.latest(ports, tenant, key)
        s = (last or {}).get("summary") or {}
        due = (
            next_after(reports.MONTHLY_SCHEDULE.expression, assessments.parse(last["completion_timestamp"]))
            if last
            else None
        )
        if last is None:
            status = "NOT_ASSESSED"
        elif s.get("non_compliant"):
            status = "NON_COMPLIANT"
        elif s.get("warnings"):
            status = "PARTIALLY_COMPLIANT"
        else:
            status = "COMPLIANT"
        items.append({
            "framework_name": key, "description": cat.frameworks[key].name, "requirements_source": cat.frameworks[key].source,
            "compliance_score": last and last.get("overall_score"), "status": status,
            "last_assessment": last and last["completion_timestamp"], "last_assessment_id": last and last["id"],
            "last_assessment_type": last and last["assessment_type"], "next_assessment_due": iso(due) if due else None,
            "total_controls": s.get("total_controls", len(cat.of(key))), "compliant_controls": s.get("compliant"),
            "non_compliant_controls": s.get("non_compliant"), "controls_with_warnings": s.get("warnings"),
            "not_applicable_controls": s.get("not_applicable"), "critical_findings": s.get("critical_findings"),
            "high_risk_findings": s.get("high_risk_findings"),
            # pgfleet holds no certification: an auditor certifies, not an assessment
            "certification_status": None, "certification_expiry": None,
        })  # fmt: skip
    scores = [i["compliance_score"] for i in items if i["compliance_score"] is not None]
    return {"frameworks": items, "overall_compliance_score": round(statistics.fmean(scores), 1) if scores else None,
            "tenant_id": tenant}  # fmt: skip


def _requirements(assessment: dict[str, Any]) -> list[dict[str, Any]]:
    by_requirement: dict[str, list[dict[str, Any]]] = {}
    for result in assessment.get("results") or []:
        for rid in result["requirement_ids"]:
            by_requirement.setdefault(rid, []).append(result)
    out = []
    for rid, results in sorted(by_requirement.items()):
        statuses = {r["assessment_result"] for r in results}
        judged = [r for r in results if r["score"] is not None]
        if statuses == {"NOT_APPLICABLE"}:
            status = "NOT_APPLICABLE"
        elif statuses <= {"COMPLIANT", "NOT_APPLICABLE"}:
            status = "COMPLIANT"
        elif statuses <= {"NON_COMPLIANT", "NOT_APPLICABLE"}:
            status = "NON_COMPLIANT"
        else:
            status = "PARTIAL"
        out.append({
            "requirementId": rid, "description": "Supported by: " + "; ".join(r["control_name"] for r in results),
            "status": status, "score": round(statistics.fmean(r["score"] for r in judged), 1) if judged else None,
            "evidence": [f"{r['control_id']} {r['assessment_result']}: {r['evidence']}" for r in results],
            "lastAssessed": assessment["completion_timestamp"], "controls": [r["control_id"] for r in results],
        })  # fmt: skip
    return out


def _findings(ports: Ports, assessment: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    framework = assessment["framework"]
    for result in assessment.get("results") or []:
        for o in result["evidence_details"]:
            if o["status"] == PASS:
                continue
            task = remediation.open_task(
                ports, remediation.task_key(o["tenant_id"], framework, result["control_id"], o["scope"])
            )
            for text in o["findings"]:
                out.append({
                    "requirementIds": result["requirement_ids"], "controlId": result["control_id"], "scope": o["scope"],
                    "targetId": None if o["scope"] == catalog.PLATFORM else o["scope"], "severity": result["severity"],
                    "status": o["status"], "finding": text, "remediationTaskId": task and task["id"],
                })  # fmt: skip
    return out


def evidence_package(ports: Ports, assessment: dict[str, Any]) -> str:
    """Zip the assessment's evidence into the object store; its download link."""
    tasks = [t for t in ports.store.every(remediation.KIND, tenant_id=None if assessment["tenant_id"] == auth.PLATFORM
                                          else assessment["tenant_id"]) if t["framework"] == assessment["framework"]]  # fmt: skip
    full = ports.objects.get(assessments.evidence_key(assessment["id"]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", (
            f"pgfleet evidence package: {assessment['framework']} assessment {assessment['id']} of tenant "
            f"{assessment['tenant_id']}, completed {assessment['completion_timestamp']}.\n"
            "assessment.json: results per control with findings; evidence.json: every query or fact per server, "
            "with its time and rows; remediation_tasks.json: the tasks and their verifications; attested/: files "
            f"uploaded as attested evidence.\nRequirement ids: {catalog.load().frameworks[assessment['framework']].source}\n"
        ))  # fmt: skip
        zf.writestr(
            "assessment.json",
            json.dumps({k: v for k, v in assessment.items() if k != "parent_id"}, default=str, indent=1),
        )
        if full is not None:
            zf.writestr("evidence.json", full)
        zf.writestr(
            "remediation_tasks.json", json.dumps([remediation.view(t) for t in tasks], default=str, indent=1)
        )
        for task in tasks:
            for item in task.get("evidence", []):
                if item.get("kind") == "file" and item.get("key"):
                    body = ports.objects.get(item["key"])
                    if body is not None:
                        zf.writestr(f"attested/{task['id']}/{item['filename']}", body)
    key = f"compliance/evidence-packages/{assessment['id']}.zip"
    ports.objects.put(key, buffer.getvalue(), "application/zip")
    return ports.objects.link(key, reports.LINK_SECONDS, f"evidence-{assessment['id']}.zip")


def system_report(ports: Ports, principal: Principal, framework: str, time_range_text: str | None,
                  tenant_id: str | None, include_evidence: bool) -> dict[str, Any]:  # fmt: skip
    """The seed's ComplianceReportResponse (camelCase) from the newest completed assessment
    of the framework in the range."""
    tenant = scope_of(principal, tenant_id)
    window = time_range.parse(time_range_text, default=REPORT_RANGE_DEFAULT, max_age=REPORT_RANGE_MAX)
    assessment = assessments.latest(ports, tenant, framework, since=window.start, until=window.end)
    if assessment is None:
        raise InvalidState(f"no {framework} assessment of {tenant} completed between {iso(window.start)} and "
                           f"{iso(window.end)}: run one (POST /api/v1/compliance/assessments/run)",
                           details={"framework": framework, "tenant_id": tenant})  # fmt: skip
    results = assessment.get("results") or []
    recommendations = [f"{r['control_name']} ({', '.join(r['requirement_ids'])}): {r['remediation']}"
                       for r in results if r.get("remediation_required") and r.get("remediation")]  # fmt: skip
    return {
        "framework": framework, "overallScore": assessment.get("overall_score"), "requirements": _requirements(assessment),
        "findings": _findings(ports, assessment), "recommendations": recommendations,
        "evidencePackage": evidence_package(ports, assessment) if include_evidence else None,
        "assessmentId": assessment["id"], "assessedAt": assessment["completion_timestamp"], "tenantId": tenant,
        "timeRange": {"start": iso(window.start), "end": iso(window.end)},
    }  # fmt: skip
