"""Issue 18's security incidents on the real local stack (DynamoDB on moto, the gateway): a
security analyst declares one, walks it OPEN -> INVESTIGATING -> CONTAINED -> CLOSED, reads its
MTTR in the incident and in the list's summary, and finds every change in the audit trail;
another tenant cannot see it, a viewer cannot touch it, a closed incident does not change."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.helpers import LocalStack, running_stack

S = "/api/v1/security/incidents"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with running_stack("pgfleet-e2e-security-incidents-") as s:
        yield s


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


STATUS_CALL = "PUT /api/v1/security/incidents/<incident_id>/status"


def _audit(stack: LocalStack, token: str, incident_id: str) -> list[dict[str, Any]]:
    """The incident's audit events, oldest first, once its 5 status calls and 3 status changes
    are there (the API calls' events are written as each answer goes out)."""
    events: list[dict[str, Any]] = []
    for _ in range(50):
        status, got = stack.request(
            "GET", f"/api/v1/system/audit?resource={incident_id}&pageSize=100", token=token
        )
        assert status == 200, got
        events = sorted(got["events"], key=lambda e: e["timestamp"])
        actions = [e["action"] for e in events]
        if actions.count(STATUS_CALL) >= 5 and actions.count("security.incident.status") >= 3:
            return events
        time.sleep(0.2)
    return events


def test_an_incident_is_declared_worked_to_closed_timed_and_audited(stack: LocalStack) -> None:
    analyst = stack.token("security_analyst", "acme")
    body = {
        "incident_type": "UNAUTHORIZED_ACCESS", "severity": "HIGH",
        "description": "Unauthorized access attempt detected", "affected_systems": ["auth-service", "database"],
        "affected_users": 0, "affected_records": 0, "data_types_affected": [],
        "detection_method": "Automated threat detection", "incident_commander": "security_lead_id",
    }  # fmt: skip
    status, made = stack.request("POST", f"{S}/create", body, analyst)
    assert status == 201, made
    iid, year = made["incident_id"], _at(made["created_at"]).year
    assert made["incident_number"] == f"SEC-{year}-001" and made["status"] == "OPEN", made
    status, second = stack.request("POST", f"{S}/create", {**body, "severity": "LOW"}, analyst)
    assert status == 201 and second["incident_number"] == f"SEC-{year}-002", second

    status, got = stack.request(
        "PUT", f"{S}/{iid}/status", {"status": "INVESTIGATING", "updated_by": "alice"}, analyst
    )
    assert status == 200 and got["status"] == "INVESTIGATING", got
    time.sleep(1.5)  # a containment that takes a measurable time
    contain = {"status": "CONTAINED", "status_notes": "Threat contained, investigating scope",
               "containment_actions": ["Isolated affected systems", "Reset compromised credentials"]}  # fmt: skip
    status, got = stack.request("PUT", f"{S}/{iid}/status", contain, analyst)
    assert status == 200, got
    minutes = (_at(got["contained_at"]) - _at(got["created_at"])).total_seconds() / 60
    assert got["mttr_minutes"] == round(minutes, 2) and got["mttr_minutes"] >= 0.02, got
    status, refused = stack.request("PUT", f"{S}/{iid}/status", {"status": "INVESTIGATING"}, analyst)
    assert status == 409 and "status_notes" in refused["error"]["message"], refused
    status, closed = stack.request(
        "PUT", f"{S}/{iid}/status", {"status": "CLOSED", "status_notes": "done"}, analyst
    )
    assert status == 200 and closed["status"] == "CLOSED" and closed["mttr_minutes"] == got["mttr_minutes"]
    assert closed["time_to_close_minutes"] >= closed["mttr_minutes"]
    assert [(e["status"], e["action"]) for e in closed["timeline"]] == [
        ("OPEN", "Incident created"), ("INVESTIGATING", "Investigation started"),
        ("CONTAINED", "Threat contained"), ("CLOSED", "Incident closed"),
    ]  # fmt: skip
    assert closed["timeline"][1]["reported_by"] == "alice" and closed["timeline"][1]["updated_by"] != "alice"
    assert (
        stack.request("PUT", f"{S}/{iid}/status", {"status": "RECOVERED", "status_notes": "x"}, analyst)[0]
        == 409
    )

    status, listed = stack.request("GET", S, token=analyst)
    assert status == 200 and listed["summary"]["total"] == 2 and listed["summary"]["closed"] == 1, listed
    assert listed["summary"]["contained_incidents"] == 1
    assert listed["summary"]["mean_mttr_minutes"] == closed["mttr_minutes"]

    # scope and permissions: another tenant's analyst gets a 404, a viewer of acme a 403
    other = stack.token("security_analyst", "initech")
    assert stack.request("GET", f"{S}/{iid}", token=other)[0] == 404
    assert stack.request("GET", S, token=other)[1]["incidents"] == []
    assert stack.request("GET", f"{S}/{iid}", token=stack.token("viewer", "acme"))[0] == 403
    assert stack.request("GET", f"{S}/{iid}", token=stack.token("admin", None))[0] == 200

    events = _audit(stack, analyst, iid)
    actions = [e["action"] for e in events]
    assert actions.count("security.incident.create") == 1, actions
    moves = [e["details"] for e in events if e["action"] == "security.incident.status"]
    assert [(m["from_status"], m["to_status"]) for m in moves] == [
        ("OPEN", "INVESTIGATING"), ("INVESTIGATING", "CONTAINED"), ("CONTAINED", "CLOSED"),
    ], events  # fmt: skip
    calls = [e for e in events if e["action"] == STATUS_CALL]
    assert [e["result"] for e in calls] == ["SUCCESS", "SUCCESS", "FAILURE", "SUCCESS", "FAILURE"], calls
    assert all(e["tenantId"] == "acme" for e in events if e["action"].startswith("security."))
