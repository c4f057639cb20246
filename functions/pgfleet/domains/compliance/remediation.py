"""Remediation tasks (records of kind `compliance_task`, ids `crt-...`): one per failed
control x framework x scope (a server, or the platform), opened by an assessment with a
priority from the control's severity and a deadline from its opening; a later failure
updates the open task (its findings, the assessment) instead of opening another.

Statuses: OPEN -> IN_PROGRESS <-> ON_HOLD -> COMPLETED, and CANCELLED. COMPLETED comes only
with `verification_status` VERIFIED, which is set only when
- the control, re-run now on the task's scope, passes (an automated control); or
- a compliance officer accepts the evidence attested on the task (an attested control: no
  automation can judge it). A rejected attestation sends the task back IN_PROGRESS.
A re-run that fails is recorded on the task and answered 409 with its findings. Every change
is audited (`compliance.remediation.update`). An assessment that sees an open task's control
pass closes it, VERIFIED by that assessment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

from pgfleet.core import audit, auth
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from pgfleet.core.models import new_id
from pgfleet.domains import servers
from pgfleet.domains.compliance import catalog
from pgfleet.domains.compliance.assessments import DEADLINE_DAYS, PRIORITY, now, parse
from pgfleet.domains.compliance.catalog import PLATFORM, Control
from pgfleet.domains.compliance.checks import FAIL, NOT_APPLICABLE, PASS, Outcome, iso
from pgfleet.domains.compliance.evaluation import evaluate
from pgfleet.domains.compliance.task_records import KIND, OPEN_STATES, open_task, task_key

TRANSITIONS = {"OPEN": {"IN_PROGRESS", "ON_HOLD"}, "IN_PROGRESS": {"ON_HOLD"}, "ON_HOLD": {"IN_PROGRESS"}}
APPROVER_ROLE = "compliance_officer"
MAX_EVIDENCE_BYTES = 5 * 1024 * 1024
TASK_TYPES = {"backup_encryption": "BACKUP", "backup_verification": "BACKUP", "pitr_window": "BACKUP",
              "audit_trail": "LOGGING", "token_lifetime": "ACCESS_CONTROL", "rbac_roles": "ACCESS_CONTROL"}  # fmt: skip


def _task_type(control: Control) -> str:
    if control.kind == "attested":
        return "DOCUMENTATION"
    return TASK_TYPES.get(control.fact or "", "CONFIGURATION")


def _criteria(control: Control, scope: str) -> list[str]:
    if control.kind == "attested":
        return ["Evidence attested on this task (a document or a statement)",
                "The evidence accepted by a compliance officer", control.remediation]  # fmt: skip
    where = "the platform" if scope == PLATFORM else scope
    return [f"{control.title}: the control passes when re-run on {where}", control.remediation]


def _new_task(
    control: Control, framework: str, outcome: Outcome, assessment: dict[str, Any]
) -> dict[str, Any]:
    at = now()
    priority = PRIORITY[control.severity]
    where = "the platform" if outcome.scope == PLATFORM else outcome.scope
    refs = list(control.requirement_ids(framework))
    return {
        "id": new_id("crt"), "tenant_id": outcome.tenant_id,
        "parent_id": task_key(outcome.tenant_id, framework, control.id, outcome.scope),
        "framework": framework, "control_id": control.id, "control_reference": refs[0], "requirement_ids": refs,
        "scope": outcome.scope, "target_id": None if outcome.scope == PLATFORM else outcome.scope,
        "title": f"{control.title} ({where})", "description": control.remediation, "severity": control.severity,
        "priority": priority, "status": "OPEN", "assigned_to": None, "due_date": iso(at + timedelta(days=DEADLINE_DAYS[priority])),
        "created_at": iso(at), "updated_at": iso(at), "estimated_effort_hours": None, "actual_effort_hours": None,
        "task_type": _task_type(control), "dependencies": [], "verification_criteria": _criteria(control, outcome.scope),
        "verification_status": None, "findings": outcome.findings, "assessment_id": assessment["id"],
        "last_failed_at": assessment.get("completion_timestamp") or iso(at), "progress_notes": [], "evidence": [],
        "verifications": [], "completed_at": None, "attested": control.kind == "attested",
    }  # fmt: skip


def sync(ports: Ports, assessment: dict[str, Any]) -> tuple[int, int, int, dict[str, dict[str, Any]]]:
    """Tasks after an assessment: (opened, updated, closed, the open task of each key that
    failed). Idempotent: a retried step finds the tasks it opened and updates them."""
    cat = catalog.load()
    framework = assessment["framework"]
    opened = updated = closed = 0
    still_open: dict[str, dict[str, Any]] = {}
    for result in assessment.get("results") or []:
        control = cat.control(result["control_id"])
        for raw in result["evidence_details"]:
            outcome = Outcome.from_record(raw)
            key = task_key(outcome.tenant_id, framework, control.id, outcome.scope)
            task = open_task(ports, key)
            needs = outcome.status == FAIL or (
                control.kind == "attested" and outcome.status == NOT_APPLICABLE
            )
            if needs and task is None:
                still_open[key] = ports.store.create(KIND, _new_task(control, framework, outcome, assessment))
                opened += 1
            elif needs and task is not None:
                still_open[key] = task
                if task.get("assessment_id") != assessment["id"]:
                    ports.store.update(KIND, task["id"], {"findings": outcome.findings, "assessment_id": assessment["id"],
                                                          "last_failed_at": assessment["completion_timestamp"],
                                                          "updated_at": iso(now())})  # fmt: skip
                    updated += 1
            elif outcome.status == PASS and task is not None and control.kind != "attested":
                _close(ports, task, {"at": iso(now()), "by": f"assessment {assessment['id']}", "result": PASS,
                                     "findings": [], "evidence": outcome.evidence})  # fmt: skip
                closed += 1
    return opened, updated, closed, still_open


def _close(ports: Ports, task: dict[str, Any], verification: dict[str, Any], **more: Any) -> dict[str, Any]:
    at = verification["at"]
    return ports.store.update(KIND, task["id"], {
        "status": "COMPLETED", "verification_status": "VERIFIED", "completed_at": at, "updated_at": at,
        "verifications": [*task.get("verifications", []), verification][-10:], **more,
    })  # fmt: skip


# --- the API ----------------------------------------------------------------------------------------


def get(ports: Ports, principal: Principal, task_id: str) -> dict[str, Any]:
    task = ports.store.get(KIND, task_id)
    if task is None or not principal.sees_tenant(task["tenant_id"]):
        raise NotFound(f"remediation task {task_id} not found")
    return task


def milestones(task: dict[str, Any]) -> list[tuple[str, bool]]:
    started = task["status"] != "OPEN" or bool(task.get("progress_notes") or task.get("evidence"))
    verified = task.get("verification_status") == "VERIFIED"
    if task.get("attested"):
        return [("Work started", started), ("Evidence attested", bool(task.get("evidence"))),
                ("Evidence accepted by a compliance officer", verified)]  # fmt: skip
    return [("Work started", started), ("The control passes when re-run", verified)]


def view(task: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    at = at or now()
    steps = milestones(task)
    done = sum(1 for _, ok in steps if ok)
    return {
        "task_id": task["id"], "title": task["title"], "description": task["description"],
        "compliance_framework": task["framework"], "control_reference": task["control_reference"],
        "control_id": task["control_id"], "requirement_ids": task["requirement_ids"], "target_id": task["target_id"],
        "tenant_id": task["tenant_id"], "priority": task["priority"], "severity": task["severity"], "status": task["status"],
        "assigned_to": task.get("assigned_to"), "due_date": task["due_date"],
        "overdue": task["status"] in OPEN_STATES and parse(task["due_date"]) < at,
        "estimated_effort_hours": task.get("estimated_effort_hours"), "actual_effort_hours": task.get("actual_effort_hours"),
        "task_type": task["task_type"], "dependencies": task.get("dependencies", []),
        "verification_criteria": task["verification_criteria"], "verification_status": task.get("verification_status"),
        "findings": task.get("findings", []), "assessment_id": task.get("assessment_id"),
        "created_at": task["created_at"], "updated_at": task["updated_at"], "completed_at": task.get("completed_at"),
        "progress_percentage": round(100 * done / len(steps)),
        "next_milestone": next((name for name, ok in steps if not ok), None),
        "progress_notes": task.get("progress_notes", []),
        "evidence": [{k: e.get(k) for k in ("kind", "text", "filename", "content_type", "size_bytes", "sha256", "by", "at")}
                     for e in task.get("evidence", [])],
        "verifications": [{k: v.get(k) for k in ("at", "by", "result", "findings")} for v in task.get("verifications", [])],
    }  # fmt: skip


def list_tasks(ports: Ports, principal: Principal, *, tenant_id: str | None, status: str | None, priority: str | None,
               assigned_to: str | None, due_from: datetime | None, due_to: datetime | None) -> dict[str, Any]:  # fmt: skip
    tenant = auth.tenant_scope(principal, tenant_id)
    at = now()
    every = ports.store.every(KIND, tenant_id=tenant)
    month = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    summary = {
        "total_tasks": len(every), "open": sum(1 for t in every if t["status"] == "OPEN"),
        "in_progress": sum(1 for t in every if t["status"] == "IN_PROGRESS"),
        "on_hold": sum(1 for t in every if t["status"] == "ON_HOLD"),
        "overdue": sum(1 for t in every if t["status"] in OPEN_STATES and parse(t["due_date"]) < at),
        "completed_this_month": sum(1 for t in every if t.get("completed_at") and parse(t["completed_at"]) >= month),
    }  # fmt: skip
    shown = [
        t for t in every
        if (status is None or t["status"] == status) and (priority is None or t["priority"] == priority)
        and (assigned_to is None or t.get("assigned_to") == assigned_to)
        and (due_from is None or parse(t["due_date"]) >= due_from) and (due_to is None or parse(t["due_date"]) <= due_to)
    ]  # fmt: skip
    order = {"URGENT": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}
    shown.sort(key=lambda t: (t["status"] not in OPEN_STATES, order[t["priority"]], t["due_date"], t["id"]))
    return {"tasks": [view(t, at) for t in shown], "summary": summary}


def rerun(ports: Ports, task: dict[str, Any]) -> Outcome:
    """The task's control, judged now on the task's scope."""
    control = catalog.load().control(task["control_id"])
    if task["scope"] == PLATFORM:
        (outcome,) = evaluate(ports, task["framework"], task["tenant_id"], [control], targets=[])
        return outcome
    server = servers.get(ports, servers.kind_of(task["scope"]), task["scope"])
    if server is None:
        raise InvalidState(
            f"{task['scope']} no longer exists: cancel the task instead", details={"scope": task["scope"]}
        )
    (outcome,) = evaluate(
        ports, task["framework"], task["tenant_id"], [control], targets=[servers.Target(server)]
    )
    return outcome


_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _evidence_file(ports: Ports, task: dict[str, Any], file: Any, by: str, at: str) -> dict[str, Any]:
    try:
        body = base64.b64decode(file.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("evidence_file.content_base64 is not base64",
                               details={"field": "evidence_file.content_base64"}) from None  # fmt: skip
    if not body or len(body) > MAX_EVIDENCE_BYTES:
        raise ValidationFailed(f"evidence_file: 1 byte to {MAX_EVIDENCE_BYTES // (1024 * 1024)} MB",
                               details={"field": "evidence_file.content_base64", "size_bytes": len(body)})  # fmt: skip
    name = _FILENAME.sub("_", file.filename).strip("._") or "evidence"
    key = f"compliance/evidence/{task['id']}/{len(task.get('evidence', [])) + 1}-{name}"
    ports.objects.put(key, body, file.content_type)
    return {"kind": "file", "filename": name, "key": key, "content_type": file.content_type, "size_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(), "by": by, "at": at}  # fmt: skip


def update(ports: Ports, principal: Principal, task_id: str, body: Any) -> dict[str, Any]:
    """PUT /api/v1/compliance/remediation/tasks/{task_id}: the seed's response, the task."""
    task = get(ports, principal, task_id)
    before = {k: task.get(k) for k in ("status", "verification_status", "assigned_to", "actual_effort_hours")}
    if task["status"] not in OPEN_STATES:
        raise InvalidState(f"remediation task {task_id} is {task['status']}: it takes no more changes",
                           details={"status": task["status"]})  # fmt: skip
    verify = body.verification_status == "VERIFIED" or body.status == "COMPLETED"
    if (
        body.status
        and body.status not in ("COMPLETED", task["status"])
        and body.status not in TRANSITIONS[task["status"]]
    ):
        raise InvalidState(f"remediation task {task_id} cannot go from {task['status']} to {body.status}",
                           details={"status": task["status"], "allowed": sorted(TRANSITIONS[task["status"]] | {"COMPLETED"})})  # fmt: skip
    at = iso(now())
    who = principal.sub
    changes: dict[str, Any] = {"updated_at": at, "updated_by": who}
    if body.status and body.status != "COMPLETED":
        changes["status"] = body.status
    if body.assigned_to is not None:
        changes["assigned_to"] = body.assigned_to
    if body.actual_effort_hours is not None:
        changes["actual_effort_hours"] = body.actual_effort_hours
    if body.progress_notes:
        changes["progress_notes"] = [
            *task.get("progress_notes", []),
            {"text": body.progress_notes, "by": who, "at": at},
        ][-50:]
    evidence = list(task.get("evidence", []))
    if body.completion_evidence:
        evidence.append({"kind": "text", "text": body.completion_evidence, "by": who, "at": at})
    if body.evidence_file is not None:
        evidence.append(_evidence_file(ports, task, body.evidence_file, who, at))
    if len(evidence) != len(task.get("evidence", [])):
        changes["evidence"] = evidence[-20:]
        if task.get("attested") and not verify:
            changes["verification_status"] = "PENDING"
    if body.verification_status == "PENDING":
        changes["verification_status"] = "PENDING"
    rejection: str | None = None
    if body.verification_status == "REJECTED":
        if not task.get("attested"):
            raise InvalidState("an automated control is verified by re-running it, not by a verdict: send VERIFIED",
                               details={"control_id": task["control_id"]})  # fmt: skip
        _require_approver(principal)
        changes.update(verification_status="REJECTED", status="IN_PROGRESS")
        rejection = "REJECTED"
    failed: Outcome | None = None
    verification: dict[str, Any]
    if verify:
        if task.get("attested"):
            _require_approver(principal)
            if not evidence:
                raise InvalidState(f"remediation task {task_id} has no attested evidence to accept",
                                   details={"field": "completion_evidence"})  # fmt: skip
            verification = {"at": at, "by": who, "result": "ACCEPTED", "findings": []}
            changes.update(status="COMPLETED", verification_status="VERIFIED", completed_at=at, accepted_by=who,
                           accepted_at=at, verifications=[*task.get("verifications", []), verification][-10:])  # fmt: skip
        else:
            outcome = rerun(ports, task)
            verification = {"at": at, "by": who, "result": outcome.status, "findings": outcome.findings,
                            "evidence": outcome.evidence}  # fmt: skip
            changes["verifications"] = [*task.get("verifications", []), verification][-10:]
            if outcome.status == PASS:
                changes.update(status="COMPLETED", verification_status="VERIFIED", completed_at=at)
            else:
                failed = outcome
                changes["findings"] = outcome.findings
    updated = ports.store.update(KIND, task_id, changes, task["revision"])
    _audit(ports, principal, updated, before, failed, rejection)
    if failed is not None:
        raise InvalidState(
            f"{task['control_id']} does not pass on {task['scope']} ({failed.status}): the task stays {updated['status']}",
            details={"result": failed.status, "findings": failed.findings, "task_id": task_id},
        )
    shown = view(updated)
    return {**shown, "updated_at": updated["updated_at"]}


def _require_approver(principal: Principal) -> None:
    if APPROVER_ROLE not in principal.roles:
        raise Forbidden("only a compliance officer accepts or rejects attested evidence",
                        details={"required_role": APPROVER_ROLE})  # fmt: skip


def _audit(ports: Ports, principal: Principal, task: dict[str, Any], before: dict[str, Any],
           failed: Outcome | None, rejection: str | None) -> None:  # fmt: skip
    after = {k: task.get(k) for k in before}
    ports.history.append_all([
        audit.action_event(
            action="compliance.remediation.update", resource=f"{task['scope']}/{task['id']}", target_id=task["target_id"],
            user_id=principal.sub, tenant_id=None if task["tenant_id"] == auth.PLATFORM else task["tenant_id"],
            succeeded=failed is None,
            details={"task_id": task["id"], "control_id": task["control_id"], "framework": task["framework"],
                     "before": before, "after": after, "verification": failed and failed.findings, "verdict": rejection},
            retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip
