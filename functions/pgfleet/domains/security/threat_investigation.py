"""`POST /api/v1/security/threats/investigate`: the status, assignee and notes of a threat, the
seed's free-text actions, and mitigations applied or lifted (threats, threat_mitigations)."""

from __future__ import annotations

from typing import Any

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.domains.security import threat_mitigations, threats
from pgfleet.domains.security.threat_models import ThreatInvestigation


def investigate(ports: Ports, caller: Principal, body: ThreatInvestigation) -> dict[str, Any]:
    """The seed's investigation (see the module docstring): everything is checked before
    anything changes (a source or role the threat did not observe, a mitigation of another
    threat: 422); a RESOLVED or FALSE_POSITIVE threat stays closed (409 to reopen it)."""
    record = threats.get(ports, caller, body.threat_id)
    if record["status"] in threats.CLOSED and body.investigation_status != record["status"]:
        raise InvalidState(
            f"security threat {record['id']} is {record['status']}: a closed threat is not reopened "
            "(new evidence opens a new one)",
            details={"status": record["status"]},
        )
    for request in body.apply_mitigations:
        threat_mitigations.check(record, request)
    lifting = []
    for mitigation_id in body.lift_mitigations:
        mitigation = ports.store.get(threat_mitigations.KIND, mitigation_id)
        if mitigation is None or mitigation.get("threat_id") != record["id"]:
            raise ValidationFailed(
                f"{mitigation_id} is not a mitigation of threat {record['id']}",
                details={"field": "lift_mitigations"},
            )
        lifting.append(mitigation)
    stored = threats.set_investigation(
        ports, caller, record["id"], body.investigation_status, body.assigned_to, body.investigation_notes,
        list(body.mitigation_actions),
    )  # fmt: skip
    applied = [
        threat_mitigations.apply(ports, caller.sub, stored, request)["id"]
        for request in body.apply_mitigations
    ]
    lifted = [
        threat_mitigations.lift(ports, caller.sub, m, "lifted by an investigation")["id"] for m in lifting
    ]
    threats.audit_event(ports, caller.sub, stored, "security.threat.investigate",
                {"from_status": record["status"], "to_status": body.investigation_status,
                 "assigned_to": body.assigned_to, "notes": body.investigation_notes,
                 "mitigation_actions": list(body.mitigation_actions), "applied": applied, "lifted": lifted})  # fmt: skip
    fresh = ports.store.get(threats.KIND, record["id"])
    assert fresh is not None
    return fresh
