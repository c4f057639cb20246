"""Incidents: what a critical alert on a server opens, what later alerts of that server join,
and what people then investigate, assign, escalate, resolve and close (seed 003, Incident
Management). Records are snake_case (`id` is the incident id, `parent_id` the affected
server's id).

One incident per server is open (not RESOLVED or CLOSED) at a time: the claim on
`incident-open#<server>` names it, so a second critical alert of that server joins the open
incident instead of opening another. Resolving releases the claim; reopening takes it back.

The alert code calls `on_alert` when an alert triggers or resolves. It is idempotent: the
alert's id in `related_alerts`, and in `resolved_alerts`, say it was counted.

A record stays well under DynamoDB's 400 KB: the timeline keeps its first event and the latest
ones (MAX_TIMELINE), and an incident takes at most MAX_RELATED_ALERTS alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgfleet.core import timeline
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains.monitoring import listing
from pgfleet.domains.monitoring.incidents_models import (
    Incident,
    IncidentEvent,
    IncidentListResponse,
    IncidentSummary,
    IncidentUpdateRequest,
)

KIND = "incident"
ALERT_KIND = "alert"  # the alerts' records (monitoring.service), read for their status
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
STATUSES = ("OPEN", "INVESTIGATING", "RESOLVED", "CLOSED")
CLOSED_STATES = ("RESOLVED", "CLOSED")
SYSTEM_ACTOR = "pgfleet"
# Which status may follow which (CLOSED only after RESOLVED; a RESOLVED incident may reopen).
TRANSITIONS: dict[str, frozenset[str]] = {
    "OPEN": frozenset({"INVESTIGATING", "RESOLVED"}),
    "INVESTIGATING": frozenset({"OPEN", "RESOLVED"}),
    "RESOLVED": frozenset({"OPEN", "INVESTIGATING", "CLOSED"}),
    "CLOSED": frozenset(),
}
# A write that lost a race with another writer is re-read and redone this many times.
RETRIES = 5
# The events an incident keeps, and the alerts it takes (see `_appended`).
MAX_TIMELINE = 100  # notes are at most 2,000 characters: 100 events stay well under 400 KB
MAX_RELATED_ALERTS = 500
# How many of a server's latest incidents are searched for a resolved alert's incident when
# the server's open incident does not hold it.
RECENT_INCIDENTS = 20


def _open_key(target_id: str) -> str:
    return f"incident-open#{target_id}"


def _field(alert: dict[str, Any], snake: str, camel: str) -> Any:
    """A field of an alert record (snake_case) or of its wire view (camelCase)."""
    return alert[snake] if alert.get(snake) is not None else alert.get(camel)


def _event(action_type: str, note: str, actor: str = SYSTEM_ACTOR, **more: Any) -> dict[str, Any]:
    return IncidentEvent.model_validate({"at": utcnow_iso(), "action_type": action_type, "actor": actor,
                                         "note": note, **more}).to_record()  # fmt: skip


def _appended(record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    return timeline.appended(record, entry, MAX_TIMELINE)


# --- what the alerts tell ----------------------------------------------------------------------


def on_alert(ports: Ports, alert: dict[str, Any], event: str) -> str | None:
    """Count an alert in its server's incident. `alert` is an alert record (snake_case; its
    camelCase wire view is read too); `event` is "triggered" or "resolved".

    - triggered, CRITICAL: join the server's open incident, or open one (OPEN, CRITICAL,
      titled after the alert);
    - triggered, HIGH: join the server's open incident if there is one, open none;
    - triggered, MEDIUM or LOW: nothing;
    - resolved: in the incident the alert joined, an ALERT_RESOLVED event and `alerts_open`
      recounted.
    Idempotent: a repeated call with the same alert and event changes nothing. Returns a line
    saying what changed, or None."""
    alert_id = str(alert.get("id") or _field(alert, "alert_id", "alertId"))
    target_id = str(alert.get("parent_id") or _field(alert, "resource_id", "resourceId"))
    if event == "triggered":
        return _triggered(ports, alert, alert_id, target_id)
    if event == "resolved":
        return _resolved(ports, alert, alert_id, target_id)
    raise ValueError(f"unknown alert event {event!r} (triggered or resolved)")


def _open_incident(ports: Ports, target_id: str) -> dict[str, Any] | None:
    """The server's open incident; a claim left on a resolved or missing one is released."""
    claim = ports.store.claimed(_open_key(target_id))
    if claim is None:
        return None
    record = ports.store.get(KIND, claim["owner"])
    if record is None or record["status"] in CLOSED_STATES:
        ports.store.release(_open_key(target_id), claim["owner"])
        return None
    return record


def _triggered(ports: Ports, alert: dict[str, Any], alert_id: str, target_id: str) -> str | None:
    severity = alert.get("severity")
    if severity not in ("CRITICAL", "HIGH") or _is_resolved(ports, alert, alert_id):
        return None  # a late replay of a resolved alert's trigger must not open a new incident
    name = str(_field(alert, "alert_name", "alertName"))
    description = str(alert.get("description") or "")[:500]
    for _ in range(RETRIES):
        current = _open_incident(ports, target_id)
        if current is None:
            if severity != "CRITICAL":
                return None
            opened = _open(ports, alert, alert_id, target_id, name, description)
            if opened is not None:
                return opened
            continue  # another evaluation opened it first: join that one
        if alert_id in current["related_alerts"]:
            return None
        if len(current["related_alerts"]) >= MAX_RELATED_ALERTS:
            return f"{target_id}: alert {name} not joined to incident {current['id']}: it holds {MAX_RELATED_ALERTS}"
        related = [*current["related_alerts"], alert_id]
        changes = {
            "related_alerts": related,
            "alerts_open": _count_open(ports, related, alert_id, True),
            **_appended(current, _event("ALERT_TRIGGERED", f"alert {name} ({severity}) joined: {description}",
                                        alert_id=alert_id)),
            "updated_at": utcnow_iso(),
        }  # fmt: skip
        try:
            ports.store.update(KIND, current["id"], changes, current["revision"])
        except Conflict:
            continue
        return f"{target_id}: alert {name} joined incident {current['id']}"
    raise Conflict(f"incident of {target_id} kept changing while alert {alert_id} joined it")


def _open(
    ports: Ports, alert: dict[str, Any], alert_id: str, target_id: str, name: str, description: str
) -> str | None:
    """Open the server's incident for a critical alert; None if another one was opened first."""
    incident_id = new_id("inc")
    now = utcnow_iso()
    title = f"{name} on {target_id}"[:200]
    record = {
        "id": incident_id, "tenant_id": alert["tenant_id"] if "tenant_id" in alert else alert["tenantId"],
        "parent_id": target_id, "created_at": now, "updated_at": now, "title": title,
        "severity": "CRITICAL", "status": "OPEN", "resolved_at": None, "closed_at": None,
        "assigned_to": None, "affected_services": [target_id], "related_alerts": [alert_id],
        "alerts_open": 1, "escalation_level": 0, "resolved_alerts": [], "timeline_dropped": 0,
        "resource_type": alert.get("resource_type") or alert.get("resourceType"),
        "timeline": [_event("ALERT_TRIGGERED", f"opened by alert {name} (CRITICAL): {description}",
                            alert_id=alert_id, to_status="OPEN")],
    }  # fmt: skip
    try:
        ports.store.create(KIND, record, unique_keys=(_open_key(target_id),))
    except AlreadyExists:
        return None
    return f"{target_id}: incident {incident_id} opened ({title})"


def _is_resolved(ports: Ports, alert: dict[str, Any], alert_id: str) -> bool:
    """The alert as reported, or as stored now, is resolved."""
    stored = ports.store.get(ALERT_KIND, alert_id)
    return alert.get("status") == "RESOLVED" or (stored is not None and stored.get("status") == "RESOLVED")


def _count_open(ports: Ports, related: list[str], alert_id: str, this_one_open: bool) -> int:
    """How many of `related` are not resolved; `alert_id`'s state is the one just reported."""
    others = _unresolved(ports, [a for a in related if a != alert_id])
    return len(others) + (1 if this_one_open and alert_id in related else 0)


def _unresolved(ports: Ports, alert_ids: list[str]) -> list[str]:
    """The alerts of `alert_ids` whose records are not RESOLVED (a missing record is gone)."""
    records = ((a, ports.store.get(ALERT_KIND, a)) for a in alert_ids)
    return [a for a, r in records if r is not None and r.get("status") != "RESOLVED"]


def _incident_of_alert(ports: Ports, alert_id: str, target_id: str) -> dict[str, Any] | None:
    current = _open_incident(ports, target_id)
    if current is not None and alert_id in current["related_alerts"]:
        return current
    recent, _ = ports.store.page(KIND, parent_id=target_id, page=1, page_size=RECENT_INCIDENTS)
    return next((r for r in recent if alert_id in r["related_alerts"]), None)


def _resolved(ports: Ports, alert: dict[str, Any], alert_id: str, target_id: str) -> str | None:
    name = str(_field(alert, "alert_name", "alertName"))
    resolution = alert.get("resolution") or {}
    note = str(resolution.get("resolution_note") or resolution.get("resolutionNote") or "resolved")
    for _ in range(RETRIES):
        current = _incident_of_alert(ports, alert_id, target_id)
        if current is None or current["status"] == "CLOSED":
            return None
        if alert_id in current.get("resolved_alerts", ()):
            return None
        still_open = _count_open(ports, current["related_alerts"], alert_id, False)
        changes = {
            "alerts_open": still_open,
            "resolved_alerts": [*current.get("resolved_alerts", ()), alert_id],
            **_appended(current, _event("ALERT_RESOLVED", f"alert {name} resolved: {note}", alert_id=alert_id)),
            "updated_at": utcnow_iso(),
        }  # fmt: skip
        try:
            ports.store.update(KIND, current["id"], changes, current["revision"])
        except Conflict:
            continue
        return f"{target_id}: alert {name} resolved in incident {current['id']} ({still_open} still open)"
    raise Conflict(f"incident of {target_id} kept changing while alert {alert_id} resolved")


# --- what people see and do -------------------------------------------------------------------


def incident_view(record: dict[str, Any]) -> Incident:
    return Incident.model_validate({**record, "incident_id": record["id"]})


def _visible(ports: Ports, principal: Principal, incident_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, incident_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"incident {incident_id} not found")
    return record


def get_incident(ports: Ports, principal: Principal, incident_id: str) -> Incident:
    return incident_view(_visible(ports, principal, incident_id))


def list_incidents(
    ports: Ports,
    principal: Principal,
    *,
    tenant_id: str | None = None,
    status: str | None = None,
    severity: str | None = None,
    query: PageQuery,
) -> IncidentListResponse:
    """Incidents the caller may see (its tenant's; every tenant's for a platform admin, who may
    narrow to `tenant_id`), newest first, filtered, one page, with a summary of the filtered
    set. Filtering, counting and paging happen in the store."""
    filters = {
        name: value for name, value in (("status", status), ("severity", severity)) if value is not None
    }
    records, total, summary = listing.scoped_page(ports, principal, KIND, tenant_id, filters, query, STATUSES)
    page = Page.of([incident_view(r) for r in records], total, query)
    return IncidentListResponse(
        incidents=page.items, pagination=page.pagination, summary=IncidentSummary.model_validate(summary)
    )


def update(ports: Ports, principal: Principal, incident_id: str, body: IncidentUpdateRequest) -> Incident:
    """Apply one action of a person to an incident and record it in its timeline. Written with
    the revision it was read at: a concurrent change makes it a 409, to be retried."""
    record = _visible(ports, principal, incident_id)
    if record["status"] == "CLOSED":
        raise InvalidState(f"incident {incident_id} is closed")
    actions: dict[str, Callable[[Ports, dict[str, Any], IncidentUpdateRequest, str], dict[str, Any]]] = {
        "STATUS_CHANGE": _status_change,
        "ASSIGNMENT": _assignment,
        "NOTE": _note,
        "ESCALATION": _escalation,
    }
    changes = actions[body.action_type](ports, record, body, principal.sub)
    changes["updated_at"] = utcnow_iso()
    try:
        stored = ports.store.update(KIND, incident_id, changes, record["revision"])
    except Conflict:
        if changes.get("status") in ("OPEN", "INVESTIGATING") and record["status"] == "RESOLVED":
            ports.store.release(_open_key(record["parent_id"]), incident_id)  # the reopening lost
        raise
    if stored["status"] == "RESOLVED":
        ports.store.release(_open_key(stored["parent_id"]), incident_id)
    return incident_view(stored)


def _status_change(
    ports: Ports, record: dict[str, Any], body: IncidentUpdateRequest, actor: str
) -> dict[str, Any]:
    incident_id, current, wanted = record["id"], record["status"], str(body.status)
    if wanted == current:
        raise InvalidState(f"incident {incident_id} is already {current}")
    if wanted not in TRANSITIONS[current]:
        raise InvalidState(
            f"incident {incident_id} cannot go from {current} to {wanted}"
            + (" (only a RESOLVED incident closes)" if wanted == "CLOSED" else ""),
            details={"status": current, "allowed": sorted(TRANSITIONS[current])},
        )
    changes: dict[str, Any] = {"status": wanted}
    if wanted == "RESOLVED":
        still_open = _unresolved(ports, record["related_alerts"])
        if still_open:
            raise InvalidState(
                f"incident {incident_id} has alerts not resolved yet: {', '.join(still_open)}",
                details={"openAlerts": still_open},
            )
        changes.update(resolved_at=utcnow_iso(), alerts_open=0)
    elif wanted == "CLOSED":
        changes["closed_at"] = utcnow_iso()
    elif current == "RESOLVED":  # reopened: it is the server's open incident again
        target = record["parent_id"]
        if not ports.store.claim(_open_key(target), incident_id):
            other = ports.store.claimed(_open_key(target))
            raise InvalidState(
                f"{target} has another open incident: {other['owner'] if other else 'unknown'}",
                details={"openIncident": other["owner"] if other else None},
            )
        changes.update(resolved_at=None, alerts_open=len(_unresolved(ports, record["related_alerts"])))
    event: dict[str, Any] = {"from_status": current, "to_status": wanted}
    if body.assign_to is not None:
        changes["assigned_to"] = event["assigned_to"] = body.assign_to
    return {**changes, **_appended(record, _event("STATUS_CHANGE", body.note, actor, **event))}


def _assignment(
    ports: Ports, record: dict[str, Any], body: IncidentUpdateRequest, actor: str
) -> dict[str, Any]:
    event = _event("ASSIGNMENT", body.note, actor, assigned_to=body.assign_to)
    return {"assigned_to": body.assign_to, **_appended(record, event)}


def _note(ports: Ports, record: dict[str, Any], body: IncidentUpdateRequest, actor: str) -> dict[str, Any]:
    return _appended(record, _event("NOTE", body.note, actor))


def _escalation(
    ports: Ports, record: dict[str, Any], body: IncidentUpdateRequest, actor: str
) -> dict[str, Any]:
    """One level up; the severity one step up too, until CRITICAL."""
    if record["status"] == "RESOLVED":
        raise InvalidState(f"incident {record['id']} is resolved: reopen it before escalating")
    level = int(record.get("escalation_level") or 0) + 1
    severity = record["severity"]
    raised = SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
    event = _event("ESCALATION", body.note, actor, escalation_level=level, from_severity=severity,
                   to_severity=raised)  # fmt: skip
    return {"escalation_level": level, "severity": raised, **_appended(record, event)}
