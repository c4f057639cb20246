"""Where remediation tasks are kept (kind `compliance_task`): one key per control x framework x
scope, its open task, and the attestation a compliance officer accepted on it. What both the
evaluation (attested controls) and the remediation workflow read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.domains.compliance.assessments import parse
from pgfleet.domains.compliance.catalog import PLATFORM

KIND = "compliance_task"
OPEN_STATES = ("OPEN", "IN_PROGRESS", "ON_HOLD")


def task_key(tenant: str, framework: str, control_id: str, scope: str) -> str:
    return f"{tenant}#{framework}#{control_id}#{scope}"


def open_task(ports: Ports, key: str) -> dict[str, Any] | None:
    records, _ = ports.store.page(
        KIND, parent_id=key, filters={"status": list(OPEN_STATES)}, page=1, page_size=1
    )
    return records[0] if records else None


def accepted_attestation(
    ports: Ports, tenant: str, framework: str, control_id: str, since: datetime
) -> dict[str, Any] | None:
    """The newest attestation of the control a compliance officer accepted since `since`."""
    records, _ = ports.store.page(KIND, parent_id=task_key(tenant, framework, control_id, PLATFORM),
                                  filters={"verification_status": "VERIFIED"}, page=1, page_size=5)  # fmt: skip
    for task in records:
        accepted_at = task.get("accepted_at")
        if accepted_at and parse(accepted_at) >= since:
            return {"task_id": task["id"], "accepted_by": task.get("accepted_by"), "accepted_at": accepted_at,
                    "evidence": [{k: e.get(k) for k in ("kind", "filename", "sha256", "text", "by", "at")}
                                 for e in task.get("evidence", [])]}  # fmt: skip
    return None
