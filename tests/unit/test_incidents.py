"""Incidents (seed 003, Incident Management): opened by a server's critical alert, joined by
its later critical and high alerts, told when they resolve, and then worked on through
`/api/v1/monitoring/incidents`, with fake ports."""

from __future__ import annotations

from typing import Any

import pytest

from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.monitoring.incidents import on_alert

INCIDENTS = "/api/v1/monitoring/incidents"
TARGET = "pgi-0000000000a1"
OTHER = "pgc-0000000000b2"
INCIDENT_FIELDS = {
    "incidentId", "title", "severity", "status", "createdAt", "resolvedAt", "assignedTo",
    "affectedServices", "relatedAlerts", "timeline", "tenantId", "updatedAt", "alertsOpen",
}  # fmt: skip


def _alert(ports: Any, severity: str, target: str = TARGET, tenant: str = "acme", name: str = "") -> dict:
    """An alert record as the alert code stores it (monitoring.service.observe)."""
    now = utcnow_iso()
    record = {
        "id": new_id("alert"), "tenant_id": tenant, "parent_id": target, "created_at": now,
        "alert_name": name or f"{severity.lower()}_thing", "severity": severity, "status": "ACTIVE",
        "category": "test", "description": f"{severity} condition", "triggered_at": now,
        "acknowledged_at": None, "resolved_at": None, "assigned_to": None, "metric_value": 1.0,
        "threshold": 0.5, "actions": [], "resource_type": "instance",
    }  # fmt: skip
    return ports.store.create("alert", record)  # type: ignore[no-any-return]


def _resolve(ports: Any, alert: dict, note: str = "condition cleared") -> dict:
    changes = {"status": "RESOLVED", "resolved_at": utcnow_iso(), "resolution": {"resolution_note": note}}
    return ports.store.update("alert", alert["id"], changes)  # type: ignore[no-any-return]


def _incidents(call: Any, query: str = "", **kw: Any) -> dict:
    status, body = call("GET", INCIDENTS + query, **kw)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _update(call: Any, incident_id: str, body: dict, **kw: Any) -> tuple[int, Any]:
    return call("POST", f"{INCIDENTS}/{incident_id}/update", body, **kw)  # type: ignore[no-any-return]


@pytest.fixture
def opened(fake_ports: Any, call: Any) -> dict:
    """The incident a critical alert of TARGET opened, as the API shows it."""
    alert = _alert(fake_ports, "CRITICAL", name="server_down")
    line = on_alert(fake_ports, alert, "triggered")
    assert line is not None and "opened" in line and TARGET in line
    (incident,) = _incidents(call)["incidents"]
    return incident  # type: ignore[no-any-return]


def test_a_critical_alert_opens_an_incident(fake_ports: Any, call: Any, opened: dict) -> None:
    assert INCIDENT_FIELDS <= set(opened)
    assert opened["incidentId"].startswith("inc-")
    assert (opened["status"], opened["severity"], opened["tenantId"]) == ("OPEN", "CRITICAL", "acme")
    assert opened["title"] == f"server_down on {TARGET}"
    assert opened["affectedServices"] == [TARGET] and opened["alertsOpen"] == 1
    (alert_id,) = opened["relatedAlerts"]
    (first,) = opened["timeline"]
    assert first["actionType"] == "ALERT_TRIGGERED" and first["alertId"] == alert_id
    assert first["toStatus"] == "OPEN" and first["actor"] == "pgfleet" and "server_down" in first["note"]
    assert opened["resolvedAt"] is None and opened["assignedTo"] is None
    status, one = call("GET", f"{INCIDENTS}/{opened['incidentId']}")
    assert status == 200 and one == opened


def test_later_critical_and_high_alerts_of_the_server_join_its_incident(
    fake_ports: Any, call: Any, opened: dict
) -> None:
    critical, high, medium = (_alert(fake_ports, s) for s in ("CRITICAL", "HIGH", "MEDIUM"))
    assert "joined incident" in str(on_alert(fake_ports, critical, "triggered"))
    assert "joined incident" in str(on_alert(fake_ports, high, "triggered"))
    assert on_alert(fake_ports, medium, "triggered") is None  # below HIGH: not part of an incident
    (incident,) = _incidents(call)["incidents"]
    assert incident["relatedAlerts"] == [*opened["relatedAlerts"], critical["id"], high["id"]]
    assert incident["alertsOpen"] == 3 and incident["severity"] == "CRITICAL"
    assert [e["alertId"] for e in incident["timeline"]] == incident["relatedAlerts"]
    assert "(HIGH) joined" in incident["timeline"][-1]["note"]
    # another server's critical alert opens its own incident
    assert "opened" in str(on_alert(fake_ports, _alert(fake_ports, "CRITICAL", target=OTHER), "triggered"))
    assert _incidents(call)["pagination"]["totalItems"] == 2


def test_alerts_below_critical_open_no_incident(fake_ports: Any, call: Any) -> None:
    for severity in ("HIGH", "MEDIUM", "LOW"):
        assert on_alert(fake_ports, _alert(fake_ports, severity), "triggered") is None
    assert _incidents(call)["incidents"] == []
    assert fake_ports.store.claimed(f"incident-open#{TARGET}") is None


def test_repeated_calls_change_nothing(fake_ports: Any, call: Any) -> None:
    alert = _alert(fake_ports, "CRITICAL")
    assert on_alert(fake_ports, alert, "triggered") is not None
    assert on_alert(fake_ports, alert, "triggered") is None
    high = _alert(fake_ports, "HIGH")
    assert on_alert(fake_ports, high, "triggered") is not None
    assert on_alert(fake_ports, high, "triggered") is None
    resolved = _resolve(fake_ports, alert, "disk freed")
    line = on_alert(fake_ports, resolved, "resolved")
    assert line is not None and "1 still open" in line
    before = _incidents(call)["incidents"]
    assert on_alert(fake_ports, resolved, "resolved") is None
    assert on_alert(fake_ports, alert, "triggered") is None
    assert _incidents(call)["incidents"] == before
    (incident,) = before
    assert len(incident["timeline"]) == 3 and incident["alertsOpen"] == 1
    last = incident["timeline"][-1]
    assert last["actionType"] == "ALERT_RESOLVED" and last["alertId"] == alert["id"]
    assert last["note"] == f"alert {alert['alert_name']} resolved: disk freed"


def test_a_replayed_trigger_after_the_incident_resolved_opens_nothing(
    fake_ports: Any, call: Any, opened: dict
) -> None:
    alert = fake_ports.store.get("alert", opened["relatedAlerts"][0])
    on_alert(fake_ports, _resolve(fake_ports, alert), "resolved")
    resolve = {"actionType": "STATUS_CHANGE", "status": "RESOLVED", "note": "fixed"}
    assert _update(call, opened["incidentId"], resolve)[0] == 200
    assert on_alert(fake_ports, alert, "triggered") is None  # the stale ACTIVE copy of a resolved alert
    assert _incidents(call)["pagination"]["totalItems"] == 1


def test_an_alert_of_no_incident_resolving_changes_nothing(fake_ports: Any, call: Any) -> None:
    medium = _alert(fake_ports, "MEDIUM")
    assert on_alert(fake_ports, _resolve(fake_ports, medium), "resolved") is None
    with pytest.raises(ValueError):
        on_alert(fake_ports, medium, "acknowledged")


def test_resolving_waits_for_every_related_alert(fake_ports: Any, call: Any, opened: dict) -> None:
    incident_id = opened["incidentId"]
    first = fake_ports.store.get("alert", opened["relatedAlerts"][0])
    high = _alert(fake_ports, "HIGH")
    on_alert(fake_ports, high, "triggered")
    resolve = {"actionType": "STATUS_CHANGE", "status": "RESOLVED", "note": "fixed"}
    status, body = _update(call, incident_id, resolve)
    assert status == 409, body
    assert body["error"]["code"] == "invalid_state"
    assert body["error"]["details"]["openAlerts"] == [first["id"], high["id"]]
    on_alert(fake_ports, _resolve(fake_ports, first), "resolved")
    status, body = _update(call, incident_id, resolve)
    assert status == 409 and body["error"]["details"]["openAlerts"] == [high["id"]], body
    on_alert(fake_ports, _resolve(fake_ports, high), "resolved")
    status, body = _update(call, incident_id, resolve)
    assert status == 200, body
    assert body["status"] == "RESOLVED" and body["resolvedAt"] and body["alertsOpen"] == 0
    # resolved, it is no longer the server's open incident: a high alert joins nothing, the next
    # critical alert opens another
    assert on_alert(fake_ports, _alert(fake_ports, "HIGH"), "triggered") is None
    assert "opened" in str(on_alert(fake_ports, _alert(fake_ports, "CRITICAL"), "triggered"))
    listing = _incidents(call, "?status=OPEN")
    assert [i["incidentId"] for i in listing["incidents"]] != [incident_id]
    assert listing["pagination"]["totalItems"] == 1


def test_an_incident_lifecycle(fake_ports: Any, call: Any, opened: dict) -> None:
    incident_id = opened["incidentId"]
    steps = [
        ({"actionType": "STATUS_CHANGE", "status": "INVESTIGATING", "assignTo": "alice", "note": "looking"},
         ("INVESTIGATING", "alice")),
        ({"actionType": "ASSIGNMENT", "assignTo": "bob", "note": "bob knows this server"}, ("INVESTIGATING", "bob")),
        ({"actionType": "NOTE", "note": "postmaster restarted twice"}, ("INVESTIGATING", "bob")),
        ({"actionType": "ESCALATION", "note": "paging the DBA on call"}, ("INVESTIGATING", "bob")),
    ]  # fmt: skip
    for request, (status_after, assignee) in steps:
        status, body = _update(call, incident_id, request)
        assert status == 200, (request, body)
        assert (body["status"], body["assignedTo"]) == (status_after, assignee)
        event = body["timeline"][-1]
        assert event["actionType"] == request["actionType"] and event["note"] == request["note"]
        assert event["actor"] == "local-user"
    events = body["timeline"][1:]
    assert (events[0]["fromStatus"], events[0]["toStatus"], events[0]["assignedTo"]) == (
        "OPEN", "INVESTIGATING", "alice",
    )  # fmt: skip
    assert events[1]["assignedTo"] == "bob"
    assert events[3]["escalationLevel"] == 1 and body["escalationLevel"] == 1
    assert body["severity"] == "CRITICAL"  # already the highest: the level records the escalation
    # CLOSED only after RESOLVED
    status, body = _update(
        call, incident_id, {"actionType": "STATUS_CHANGE", "status": "CLOSED", "note": "x"}
    )
    assert status == 409 and "only a RESOLVED incident closes" in body["error"]["message"], body
    status, body = _update(call, incident_id, {"actionType": "STATUS_CHANGE", "status": "INVESTIGATING",
                                               "note": "again"})  # fmt: skip
    assert status == 409 and "already INVESTIGATING" in body["error"]["message"], body
    on_alert(
        fake_ports,
        _resolve(fake_ports, fake_ports.store.get("alert", opened["relatedAlerts"][0])),
        "resolved",
    )
    for wanted in ("RESOLVED", "INVESTIGATING", "RESOLVED", "CLOSED"):
        status, body = _update(
            call, incident_id, {"actionType": "STATUS_CHANGE", "status": wanted, "note": wanted}
        )
        assert status == 200 and body["status"] == wanted, body
        if wanted == "INVESTIGATING":  # reopened
            assert body["resolvedAt"] is None
            assert fake_ports.store.claimed(f"incident-open#{TARGET}")["owner"] == incident_id
        else:
            assert body["resolvedAt"]
    assert [e["toStatus"] for e in body["timeline"] if e["actionType"] == "STATUS_CHANGE"] == [
        "INVESTIGATING", "RESOLVED", "INVESTIGATING", "RESOLVED", "CLOSED",
    ]  # fmt: skip
    status, body = _update(call, incident_id, {"actionType": "NOTE", "note": "late"})
    assert status == 409 and "closed" in body["error"]["message"], body


def test_reopening_is_refused_while_the_server_has_another_open_incident(
    fake_ports: Any, call: Any, opened: dict
) -> None:
    incident_id = opened["incidentId"]
    on_alert(
        fake_ports,
        _resolve(fake_ports, fake_ports.store.get("alert", opened["relatedAlerts"][0])),
        "resolved",
    )
    assert (
        _update(call, incident_id, {"actionType": "STATUS_CHANGE", "status": "RESOLVED", "note": "ok"})[0]
        == 200
    )
    on_alert(fake_ports, _alert(fake_ports, "CRITICAL"), "triggered")
    newer = fake_ports.store.claimed(f"incident-open#{TARGET}")["owner"]
    status, body = _update(
        call, incident_id, {"actionType": "STATUS_CHANGE", "status": "OPEN", "note": "back"}
    )
    assert status == 409 and body["error"]["details"]["openIncident"] == newer, body
    status, body = _update(call, incident_id, {"actionType": "ESCALATION", "note": "resolved already"})
    assert status == 409, body


def test_a_concurrent_change_is_a_conflict(fake_ports: Any, call: Any, opened: dict) -> None:
    from pgfleet.core.errors import Conflict
    from pgfleet.domains.monitoring import incidents
    from pgfleet.domains.monitoring.incidents_models import IncidentUpdateRequest

    store = fake_ports.store
    real_update = store.update

    def racing_update(kind, record_id, changes, expected_revision=None):  # type: ignore[no-untyped-def]
        store.update = real_update
        real_update(kind, record_id, {"assigned_to": "someone-else"})  # another writer gets there first
        return real_update(kind, record_id, changes, expected_revision)

    store.update = racing_update
    principal = type("P", (), {"sub": "me", "sees_tenant": lambda self, t: True})()
    body = IncidentUpdateRequest(action_type="NOTE", note="mine")
    with pytest.raises(Conflict):
        incidents.update(fake_ports, principal, opened["incidentId"], body)  # type: ignore[arg-type]
    assert store.get("incident", opened["incidentId"])["assigned_to"] == "someone-else"


def test_a_long_timeline_keeps_its_first_and_latest_events(
    fake_ports: Any, call: Any, opened: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgfleet.domains.monitoring import incidents

    monkeypatch.setattr(incidents, "MAX_TIMELINE", 4)
    for n in range(6):
        assert _update(call, opened["incidentId"], {"actionType": "NOTE", "note": f"note {n}"})[0] == 200
    status, body = call("GET", f"{INCIDENTS}/{opened['incidentId']}")
    assert status == 200 and body["timelineDropped"] == 3, body
    assert [e["note"] for e in body["timeline"]][1:] == ["note 3", "note 4", "note 5"]
    assert body["timeline"][0] == opened["timeline"][0]


@pytest.mark.parametrize(
    "body",
    [
        {"actionType": "REBOOT", "note": "x"},
        {"actionType": "STATUS_CHANGE", "note": "no status"},
        {"actionType": "STATUS_CHANGE", "status": "DONE", "note": "x"},
        {"actionType": "ASSIGNMENT", "note": "nobody"},
        {"actionType": "NOTE", "status": "RESOLVED", "note": "status needs STATUS_CHANGE"},
        {"actionType": "NOTE"},
        {"actionType": "NOTE", "note": ""},
        {"actionType": "NOTE", "note": "x", "severity": "LOW"},
    ],
)
def test_an_update_that_does_not_fit_is_422(fake_ports: Any, call: Any, opened: dict, body: dict) -> None:
    status, answer = _update(call, opened["incidentId"], body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_error"


def test_an_unknown_or_malformed_id_is_404(call: Any) -> None:
    assert call("GET", f"{INCIDENTS}/inc-000000000000")[0] == 404
    assert _update(call, "inc-000000000000", {"actionType": "NOTE", "note": "x"})[0] == 404
    assert call("GET", f"{INCIDENTS}/not-an-id")[0] == 404  # cannot be an id: names nothing


def test_another_tenants_incident_is_not_found(fake_ports: Any, call: Any, opened: dict) -> None:
    incident_id = opened["incidentId"]
    assert call("GET", f"{INCIDENTS}/{incident_id}", role="viewer", tenant="globex")[0] == 404
    status, body = _update(call, incident_id, {"actionType": "NOTE", "note": "x"}, tenant="globex")
    assert status == 404 and body["error"]["code"] == "not_found", body
    assert _incidents(call, tenant="globex")["incidents"] == []
    assert _incidents(call, "?tenantId=acme", tenant="globex")["incidents"] == []
    # a viewer reads, but may not change an incident
    assert call("GET", f"{INCIDENTS}/{incident_id}", role="viewer")[0] == 200
    assert _update(call, incident_id, {"actionType": "NOTE", "note": "x"}, role="viewer")[0] == 403
    # a platform admin sees every tenant's, and may narrow to one
    on_alert(fake_ports, _alert(fake_ports, "CRITICAL", target=OTHER, tenant="globex"), "triggered")
    assert _incidents(call, role="admin", tenant=None)["pagination"]["totalItems"] == 2
    (theirs,) = _incidents(call, "?tenantId=globex", role="admin", tenant=None)["incidents"]
    assert theirs["tenantId"] == "globex"
    assert (
        _update(call, incident_id, {"actionType": "NOTE", "note": "admin"}, role="admin", tenant=None)[0]
        == 200
    )


def test_the_listing_filters_pages_and_sums_up(fake_ports: Any, call: Any) -> None:
    ids = []
    for n in range(5):
        on_alert(fake_ports, _alert(fake_ports, "CRITICAL", target=f"pgi-00000000000{n}"), "triggered")
        ids.append(fake_ports.store.claimed(f"incident-open#pgi-00000000000{n}")["owner"])
    assert (
        _update(call, ids[0], {"actionType": "STATUS_CHANGE", "status": "INVESTIGATING", "note": "x"})[0]
        == 200
    )
    records = [fake_ports.store.get("incident", i) for i in ids]
    newest_first = [r["id"] for r in sorted(records, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
    body = _incidents(call, "?pageSize=2&page=2")
    assert [i["incidentId"] for i in body["incidents"]] == newest_first[2:4]
    assert body["pagination"] == {
        "page": 2, "pageSize": 2, "totalItems": 5, "totalPages": 3, "hasNext": True, "hasPrevious": True,
    }  # fmt: skip
    assert body["summary"] == {
        "total": 5, "open": 4, "investigating": 1, "resolved": 0, "closed": 0,
        "critical": 5, "high": 0, "medium": 0, "low": 0,
    }  # fmt: skip
    investigating = _incidents(call, "?status=INVESTIGATING")
    assert [i["incidentId"] for i in investigating["incidents"]] == [ids[0]]
    assert investigating["summary"]["total"] == 1
    assert _incidents(call, "?severity=HIGH")["incidents"] == []
    assert call("GET", INCIDENTS + "?status=DONE")[0] == 422
    assert call("GET", INCIDENTS + "?pageSize=0")[0] == 422


def test_the_routes_are_in_the_openapi_document_with_their_permissions(call: Any) -> None:
    from pgfleet.handlers import permissions_matrix

    table = {(c.method, c.path): c.permission for c in permissions_matrix.matrix()}
    assert table[("GET", INCIDENTS)] == "monitoring:read"
    assert table[("GET", f"{INCIDENTS}/<incident_id>")] == "monitoring:read"
    assert table[("POST", f"{INCIDENTS}/<incident_id>/update")] == "monitoring:incidents"
