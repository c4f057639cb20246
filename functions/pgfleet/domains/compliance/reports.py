"""Compliance reports (records of kind `compliance_report`, ids `crp-...`): a framework's
results as a PDF (reportlab) and a JSON document, stored in the object store and shown with
`file_location` (the PDF) and `json_location` as presigned links.

- PERIODIC: the monthly schedule (`pgfleet-compliance-monthly`, 02:00 UTC on the 1st) runs a
  FULL assessment of every framework for every tenant that has servers; each assessment's
  last step writes the report of the month before.
- AD_HOC: `POST /api/v1/compliance/reports`, from the newest completed assessment.
`executive_summary` is written from the results: the score, what passed and failed, what
needs evidence, and the open remediation tasks.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import auth, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.core.models import new_id
from pgfleet.core.schedule_expressions import next_after
from pgfleet.domains import servers
from pgfleet.domains.compliance import assessments, catalog, remediation
from pgfleet.domains.compliance.checks import iso
from pgfleet.ports.scheduler import Schedule

KIND = "compliance_report"
MONTHLY_TASK = "compliance.monthly"
MONTHLY_SCHEDULE = Schedule(
    name="pgfleet-compliance-monthly", expression="cron(0 2 1 * ? *)", payload={"task": MONTHLY_TASK}
)
LINK_SECONDS = 3600


def _month_before(at: datetime) -> tuple[datetime, datetime]:
    first = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return start, first - timedelta(seconds=1)


def scheduled_monthly(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The monthly schedule: a FULL assessment per framework per tenant with servers, each
    writing the PERIODIC report of last month."""
    start, end = _month_before(datetime.now(UTC))
    tenants = sorted({s.record["tenant_id"] for s in servers.all_servers(ports)})
    lines = []
    for tenant in tenants:
        for framework in catalog.FRAMEWORKS:
            spec = {"report_type": "PERIODIC", "period_start": iso(start), "period_end": iso(end)}
            record = assessments.start(ports, None, framework, "FULL", tenant, [], report=spec)
            lines.append(
                f"{tenant}: {framework} assessment {record['id']} started (PERIODIC report of {start:%Y-%m})"
            )
    return lines or ["no servers: no compliance assessment"]


# --- writing --------------------------------------------------------------------------------------------


def executive_summary(assessment: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    s = assessment["summary"] or {}
    results = assessment.get("results") or []
    failing = [r for r in results if r["assessment_result"] == "NON_COMPLIANT"]
    attest = [r for r in results if r["kind"] == "attested" and r["assessment_result"] == "NOT_APPLICABLE"]
    warned = [r for r in results if r["assessment_result"] == "WARNING"]
    score = assessment.get("overall_score")
    parts = [
        f"{assessment['framework']} assessment {assessment['id']} of {s.get('servers', 0)} server(s), completed "
        f"{assessment['completion_timestamp']}: score {score if score is not None else 'n/a'} over "
        f"{s.get('total_controls', 0) - s.get('not_applicable', 0)} judged control(s), {s.get('compliant', 0)} compliant."
    ]
    if failing:
        worst = sorted(failing, key=lambda r: catalog.SEVERITIES.index(r["severity"]), reverse=True)
        parts.append(f"{len(failing)} non-compliant: " + "; ".join(f"{r['control_name']} ({r['severity']}, "
                                                                    f"{r['control_reference']})" for r in worst) + ".")  # fmt: skip
    else:
        parts.append("No control is non-compliant.")
    if warned:
        parts.append(f"{len(warned)} could not be judged everywhere (a server not running or unreachable): "
                     + ", ".join(r["control_id"] for r in warned) + ".")  # fmt: skip
    if attest:
        parts.append(
            f"{len(attest)} need attested evidence: " + ", ".join(r["control_name"] for r in attest) + "."
        )
    open_tasks = [t for t in tasks if t["status"] in remediation.OPEN_STATES]
    overdue = [t for t in open_tasks if assessments.parse(t["due_date"]) < datetime.now(UTC)]
    parts.append(f"{len(open_tasks)} remediation task(s) open, {len(overdue)} overdue.")
    return " ".join(parts)


def _pdf(report: dict[str, Any], assessment: dict[str, Any], tasks: list[dict[str, Any]]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    frame = catalog.load().frameworks[assessment["framework"]]
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), title=report["report_name"])
    story: list[Any] = [
        Paragraph(_esc(report["report_name"]), styles["Title"]),
        Paragraph(
            _esc(
                f"Reporting period {report['reporting_period']}; generated {report['generation_timestamp']}; "
                f"tenant {report['tenant_id']}; assessment {assessment['id']}"
            ),
            styles["Normal"],
        ),  # fmt: skip
        Paragraph(_esc(f"Requirement ids: {frame.source}"), small),
        Spacer(1, 8),
        Paragraph("Executive summary", styles["Heading2"]),
        Paragraph(_esc(report["executive_summary"]), styles["Normal"]),
        Paragraph("Results per control", styles["Heading2"]),
    ]
    head = ["Control", "Requirements", "Title", "Result", "Score", "Findings", "Evidence"]
    rows = [[Paragraph(_esc(c), small) for c in head]]
    for r in assessment.get("results") or []:
        findings = "; ".join(r["findings"][:6]) + (
            f" (+{len(r['findings']) - 6} more)" if len(r["findings"]) > 6 else ""
        )
        cells = [r["control_id"], ", ".join(r["requirement_ids"]), r["control_name"], r["assessment_result"],
                 "" if r["score"] is None else f"{r['score']:.1f}", findings or "-", r["evidence"][:400]]  # fmt: skip
        rows.append([Paragraph(_esc(str(c)), small) for c in cells])
    table = Table(rows, colWidths=[122, 92, 100, 76, 30, 140, 138], repeatRows=1)
    table.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                               ("GRID", (0, 0), (-1, -1), 0.25, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]))  # fmt: skip
    story += [table, Paragraph("Remediation tasks", styles["Heading2"])]
    if not tasks:
        story.append(Paragraph("None.", styles["Normal"]))
    else:
        trows = [
            [
                Paragraph(_esc(c), small)
                for c in ("Task", "Control", "Scope", "Priority", "Status", "Due", "Verification")
            ]
        ]
        for t in tasks[:200]:
            cells = [t["id"], t["control_id"], t["scope"], t["priority"], t["status"], t["due_date"],
                     t.get("verification_status") or "-"]  # fmt: skip
            trows.append([Paragraph(_esc(str(c)), small) for c in cells])
        ttable = Table(trows, repeatRows=1)
        ttable.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]))  # fmt: skip
        story.append(ttable)
    doc.build(story)
    return out.getvalue()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tasks_of(ports: Ports, assessment: dict[str, Any]) -> list[dict[str, Any]]:
    tenant = assessment["tenant_id"]
    every = ports.store.every(remediation.KIND, tenant_id=None if tenant == auth.PLATFORM else tenant)
    return [t for t in every if t["framework"] == assessment["framework"]]


def generate(
    ports: Ports, assessment: dict[str, Any], spec: dict[str, Any], created_by: str
) -> dict[str, Any]:
    """Write the report of a completed assessment (PDF and JSON in the object store) and
    store its record. Idempotent per assessment and report type (a retried step returns the
    report it stored)."""
    if spec["report_type"] == "PERIODIC":  # one per assessment: the id says which
        report_id = f"crp-{assessment['id'].split('-', 1)[1]}"
        existing = ports.store.get(KIND, report_id)
        if existing is not None:
            return existing
    else:
        report_id = new_id("crp")
    at = datetime.now(UTC)
    start, end = assessments.parse(spec["period_start"]), assessments.parse(spec["period_end"])
    framework = assessment["framework"]
    tasks = _tasks_of(ports, assessment)
    label = f"{start:%B %Y}" if spec["report_type"] == "PERIODIC" else f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
    kind_name = "Monthly" if spec["report_type"] == "PERIODIC" else "Ad hoc"
    record = {
        "id": report_id, "tenant_id": assessment["tenant_id"], "parent_id": f"{assessment['tenant_id']}#{framework}",
        "report_name": f"{framework} {kind_name} Compliance Report ({label})", "framework": framework,
        "report_type": spec["report_type"], "reporting_period": f"{start:%Y-%m-%d} to {end:%Y-%m-%d}",
        "period_start": iso(start), "period_end": iso(end), "generation_timestamp": iso(at),
        "overall_compliance_score": assessment.get("overall_score"), "status": "PUBLISHED",
        "executive_summary": executive_summary(assessment, tasks), "assessment_id": assessment["id"],
        "next_report_due": _next_due(at) if spec["report_type"] == "PERIODIC" else None,
        "pdf_key": f"compliance/reports/{report_id}.pdf", "json_key": f"compliance/reports/{report_id}.json",
        "created_by": created_by, "created_at": iso(at),
    }  # fmt: skip
    document = {
        "report": {k: v for k, v in record.items() if not k.endswith("_key") and k != "parent_id"},
        "framework_source": catalog.load().frameworks[framework].source,
        "summary": assessment.get("summary"), "results": assessment.get("results"),
        "remediation_tasks": [remediation.view(t, at) for t in tasks],
    }  # fmt: skip
    ports.objects.put(
        record["json_key"], json.dumps(document, default=str, indent=1).encode(), "application/json"
    )
    ports.objects.put(record["pdf_key"], _pdf(record, assessment, tasks), "application/pdf")
    return ports.store.create(KIND, record)


def _next_due(at: datetime) -> str | None:
    due = next_after(MONTHLY_SCHEDULE.expression, at)
    return iso(due) if due else None


def view(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "report_id": record["id"], "report_name": record["report_name"], "framework": record["framework"],
        "report_type": record["report_type"], "reporting_period": record["reporting_period"],
        "generation_timestamp": record["generation_timestamp"], "overall_compliance_score": record["overall_compliance_score"],
        "status": record["status"], "tenant_id": record["tenant_id"], "assessment_id": record["assessment_id"],
        "file_location": ports.objects.link(record["pdf_key"], LINK_SECONDS, record["pdf_key"].rsplit("/", 1)[1]),
        "json_location": ports.objects.link(record["json_key"], LINK_SECONDS, record["json_key"].rsplit("/", 1)[1]),
        "executive_summary": record["executive_summary"], "next_report_due": record.get("next_report_due"),
    }  # fmt: skip


def create_ad_hoc(ports: Ports, principal: Principal, framework: str, tenant_id: str | None,
                  date_from: datetime | None, date_to: datetime | None, assessment_id: str | None) -> dict[str, Any]:  # fmt: skip
    tenant = auth.tenant_scope(principal, tenant_id) or auth.PLATFORM
    at = datetime.now(UTC)
    end = date_to or at
    start = date_from or end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if end <= start:
        raise ValidationFailed("date_to is not after date_from", details={"field": "date_to"})
    if assessment_id:
        assessment = assessments.get(ports, principal, assessment_id)
        if assessment["framework"] != framework or assessment["status"] != "COMPLETED":
            raise InvalidState(f"assessment {assessment_id} is a {assessment['status']} {assessment['framework']} "
                               f"assessment: a {framework} report needs a COMPLETED {framework} one")  # fmt: skip
    else:
        found = assessments.latest(ports, tenant, framework, until=end)
        if found is None:
            raise InvalidState(f"no completed {framework} assessment for {tenant}: run one first "
                               "(POST /api/v1/compliance/assessments/run)", details={"framework": framework})  # fmt: skip
        assessment = found
    spec = {"report_type": "AD_HOC", "period_start": iso(start), "period_end": iso(end)}
    return view(ports, generate(ports, assessment, spec, created_by=principal.sub))


def list_reports(ports: Ports, principal: Principal, framework: str | None, report_type: str | None,
                 date_from: datetime | None, date_to: datetime | None, tenant_id: str | None) -> dict[str, Any]:  # fmt: skip
    tenant = auth.tenant_scope(principal, tenant_id)
    found = [
        r for r in ports.store.every(KIND, tenant_id=tenant)
        if (framework is None or r["framework"] == framework) and (report_type is None or r["report_type"] == report_type)
        and (date_from is None or assessments.parse(r["generation_timestamp"]) >= date_from)
        and (date_to is None or assessments.parse(r["generation_timestamp"]) <= date_to)
    ]  # fmt: skip
    found.sort(key=lambda r: r["generation_timestamp"], reverse=True)
    return {"reports": [view(ports, r) for r in found], "total_count": len(found)}


def get(ports: Ports, principal: Principal, report_id: str) -> dict[str, Any]:
    return resources.visible_record(ports, principal, KIND, report_id, "report")
