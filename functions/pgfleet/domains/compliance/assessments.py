"""Assessments (records of kind `compliance_assessment`, ids `cas-...`): one framework's
controls judged on the servers of a scope (a tenant's, or every tenant's for a platform
admin), run by the worker as an operation (`compliance.assess`, compliance/workflow.py);
results and scores as compliance/evaluation.py computes them.

FULL judges every control of the framework; TARGETED those `specific_controls` names
(requirement ids, which also select their sub-requirements, or control ids); PARTIAL those
that were not COMPLIANT in the last completed assessment (narrowed by specific_controls).
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.compliance import catalog
from pgfleet.domains.compliance.catalog import Control
from pgfleet.domains.compliance.checks import iso

KIND = "compliance_assessment"
ASSESS = "compliance.assess"
PRIORITY = {"CRITICAL": "URGENT", "HIGH": "HIGH", "MEDIUM": "MEDIUM", "LOW": "LOW"}
# Days to fix, from the task's opening (the vulnerabilities' deadlines: 7, 30, 90, 180).
DEADLINE_DAYS = {"URGENT": 7, "HIGH": 30, "MEDIUM": 90, "LOW": 180}
RECORD_BUDGET = 300_000  # bytes of JSON a record may hold (DynamoDB items stop at 400 KB)
TERMINAL = ("COMPLETED", "FAILED")


def now() -> datetime:
    return datetime.now(UTC)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def evidence_key(assessment_id: str) -> str:
    return f"compliance/assessments/{assessment_id}/evidence.json"


# --- starting ---------------------------------------------------------------------------------------


def chosen_controls(
    ports: Ports, framework: str, assessment_type: str, wanted: list[str], tenant: str
) -> list[Control]:
    cat = catalog.load()
    if assessment_type == "FULL":
        if wanted:
            raise ValidationFailed("a FULL assessment judges every control: give specific_controls with TARGETED "
                                   "or PARTIAL", details={"field": "specific_controls"})  # fmt: skip
        return cat.of(framework)
    if assessment_type == "TARGETED":
        if not wanted:
            raise ValidationFailed(
                "a TARGETED assessment needs specific_controls", details={"field": "specific_controls"}
            )
        return catalog.select(cat, framework, wanted)
    # PARTIAL: what was not COMPLIANT in the last completed assessment (every control without one)
    pool = catalog.select(cat, framework, wanted) if wanted else cat.of(framework)
    last = latest(ports, tenant, framework)
    if last is None:
        return pool
    settled = {r["control_id"] for r in last.get("results") or [] if r["assessment_result"] == "COMPLIANT"}
    return [c for c in pool if c.id not in settled]


def _estimate(ports: Ports, tenant: str, framework: str) -> str | None:
    records, _ = ports.store.page(KIND, tenant_id=tenant, filters={"framework": framework, "status": "COMPLETED"},
                                  page=1, page_size=10)  # fmt: skip
    durations = [float(r["duration_seconds"]) for r in records if r.get("duration_seconds") is not None]
    if not durations:
        return None
    return iso(now() + timedelta(seconds=statistics.median(durations)))


def start(ports: Ports, principal: Principal | None, framework: str, assessment_type: str, tenant: str,
          wanted: list[str], report: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Store an INITIATED assessment and submit its operation; the record."""
    controls = chosen_controls(ports, framework, assessment_type, wanted, tenant)
    if not controls:
        raise InvalidState(f"every control of the last {framework} assessment is COMPLIANT: nothing to re-assess "
                           "(run FULL)", details={"assessment_type": assessment_type})  # fmt: skip
    assessment_id = new_id("cas")
    record = {
        "id": assessment_id, "tenant_id": tenant, "parent_id": f"{tenant}#{framework}", "framework": framework,
        "assessment_type": assessment_type, "specific_controls": wanted, "control_ids": [c.id for c in controls],
        "status": "INITIATED", "created_at": utcnow_iso(), "requested_by": principal.sub if principal else "schedule",
        "estimated_completion": _estimate(ports, tenant, framework), "completion_timestamp": None,
        "overall_score": None, "results": [], "summary": None, "report": report, "operation_id": None,
    }  # fmt: skip
    op = operations.new_operation(ASSESS, assessment_id, tenant)
    record["operation_id"] = op["id"]
    ports.store.create(KIND, record)
    operations.submit(ports, op)
    return record


def get(ports: Ports, principal: Principal, assessment_id: str) -> dict[str, Any]:
    return resources.visible_record(ports, principal, KIND, assessment_id, "assessment")


def latest(ports: Ports, tenant: str, framework: str, *, since: datetime | None = None,
           until: datetime | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The newest COMPLETED assessment of the framework in the scope (completed in the range)."""
    page = 1
    while True:
        records, total = ports.store.page(KIND, parent_id=f"{tenant}#{framework}", filters={"status": "COMPLETED"},
                                          page=page, page_size=20)  # fmt: skip
        for r in records:
            done = parse(r["completion_timestamp"])
            if (until is None or done <= until) and (since is None or done >= since):
                return r
            if since is not None and done < since:
                return None
        if page * 20 >= total:
            return None
        page += 1
