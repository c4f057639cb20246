"""Security incidents (seed 003, "Security Incident APIs"): a breach, an unauthorized access, malware
or a DDoS that people declare, then work through

    OPEN -> INVESTIGATING -> CONTAINED -> ERADICATED -> RECOVERED -> CLOSED

Records are kind `security_incident` (snake_case, `id` the incident id). Rules of a status change:
- forward moves may skip steps (OPEN -> CONTAINED);
- a move back (CONTAINED -> INVESTIGATING) needs `status_notes`, the reason;
- CLOSED is final, and asking for the status an incident already has is refused (409 both);
- each change appends a timeline entry, recorded as the token's subject (`updated_by`); what
  the client sent as `updated_by` is kept beside it as `reported_by`;
- `contained_at` is the first time it reached CONTAINED, or ERADICATED or RECOVERED (which imply
  containment; a close without them is not one); `mttr_minutes` is created -> contained,
  `time_to_close_minutes` created -> CLOSED.

Numbers: `SEC-<year>-<NNN>`, per UTC year of creation, from 001. A counter record per year
(kind `security_incident_year`) holds the last number given; the incident is created in one
transaction with the counter's update (conditional on the revision read) and with the unique
key `security-incident-number#<number>`, so two concurrent creates never share a number: the
loser re-reads the counter and takes the next.

Every create and change goes to the audit trail (`security.incident.create`,
`security.incident.status`, target the incident id) and to the notification channels of the
tenant (created: "triggered"; CLOSED: "resolved").

A record stays well under DynamoDB's 400 KB: entries have at most MAX_NOTES characters of notes
and MAX_ACTIONS actions; past MAX_TIMELINE entries the oldest but the first are dropped (and
counted; the audit trail keeps them all).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pgfleet.core import audit, resources, timeline
from pgfleet.core.auth import PLATFORM, Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, InvalidState, ValidationFailed
from pgfleet.core.models import new_id, utcnow
from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains import notifications
from pgfleet.domains.security.incident_models import (
    MAX_NOTES,
    SecurityIncident,
    SecurityIncidentCreate,
    SecurityIncidentListResponse,
    SecurityIncidentStatusUpdate,
    SecurityIncidentSummary,
)
from pgfleet.ports.metadata import Create, Update

KIND = "security_incident"
YEAR_KIND = "security_incident_year"
ID_PREFIX = "secinc"
STATUSES = ("OPEN", "INVESTIGATING", "CONTAINED", "ERADICATED", "RECOVERED", "CLOSED")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Reaching one of these (the first time) is the containment MTTR measures.
CONTAINING = frozenset({"CONTAINED", "ERADICATED", "RECOVERED"})
# What a move into a status is called in the timeline (the seed's "Threat contained").
ACTIONS = {
    "INVESTIGATING": "Investigation started",
    "CONTAINED": "Threat contained",
    "ERADICATED": "Threat eradicated",
    "RECOVERED": "Systems recovered",
    "CLOSED": "Incident closed",
}
MAX_TIMELINE = 50
MAX_CONTAINMENT_ACTIONS = 100
# Writes that lost a race (a number taken, a revision moved) are re-read and redone this often.
RETRIES = 20


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _minutes(start: str, end: str) -> float:
    return round((_moment(end) - _moment(start)).total_seconds() / 60, 2)


def _number_key(number: str) -> str:
    return f"security-incident-number#{number}"


def _idempotency_key(tenant: str, key: str) -> str:
    return f"security-incident-idempotency#{tenant}#{hashlib.sha256(key.encode()).hexdigest()}"


def view(record: dict[str, Any]) -> SecurityIncident:
    return SecurityIncident.model_validate({**record, "incident_id": record["id"]})


# --- create -------------------------------------------------------------------------------------


def create(
    ports: Ports, caller: Principal, body: SecurityIncidentCreate, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Declare an incident (OPEN) with the next number of the year. With an Idempotency-Key, a
    repeated request answers the incident the first one made (another body with it: 422)."""
    tenant = tenant_scope(caller, body.tenant_id) or PLATFORM
    fields = body.model_dump(mode="json", exclude={"tenant_id"})
    fingerprint = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    claim = _idempotency_key(tenant, idempotency_key) if idempotency_key else None
    earlier = _replayed(ports, claim, fingerprint)
    if earlier is not None:
        return earlier
    now = utcnow()
    record = _new_record(fields, tenant, caller.sub, now, fingerprint if claim else None)
    try:
        stored = _create_numbered(ports, record, now.year, claim)
    except AlreadyExists:
        earlier = _replayed(ports, claim, fingerprint)  # the same key, sent twice at once
        if earlier is None:
            raise
        return earlier
    _audit(ports, caller.sub, stored, "security.incident.create",
           {"incident_number": stored["incident_number"], "incident_type": stored["incident_type"],
            "severity": stored["severity"], "status": "OPEN"})  # fmt: skip
    notifications.notify(ports, _as_alert(stored), "triggered")
    return stored


def _new_record(
    fields: dict[str, Any], tenant: str, created_by: str, now: datetime, fingerprint: str | None
) -> dict[str, Any]:
    created_at = _iso(now)
    return {
        **fields, "id": new_id(ID_PREFIX), "tenant_id": tenant, "status": "OPEN",
        "created_by": created_by, "created_at": created_at, "updated_at": created_at,
        "contained_at": None, "closed_at": None, "mttr_minutes": None, "time_to_close_minutes": None,
        "containment_actions": [], "timeline_dropped": 0, "idempotency_fingerprint": fingerprint,
        "threat_id": None,
        "timeline": [{"timestamp": created_at, "status": "OPEN", "action": "Incident created", "from_status": None,
                      "updated_by": created_by, "reported_by": None, "notes": fields["description"][:MAX_NOTES],
                      "containment_actions": []}],
    }  # fmt: skip


# What a detected threat is, as an incident type: each of them is an attempt at access it
# was not given (an injection probes for data, but a breach is what people declare).
THREAT_INCIDENT_TYPES = {
    "BRUTE_FORCE": "UNAUTHORIZED_ACCESS",
    "SQL_INJECTION": "UNAUTHORIZED_ACCESS",
    "PRIVILEGE_ESCALATION": "UNAUTHORIZED_ACCESS",
    "XSS": "UNAUTHORIZED_ACCESS",
}


def _threat_claim(threat_id: str) -> str:
    return f"security-incident-threat#{threat_id}"


def open_for_threat(ports: Ports, threat: dict[str, Any], opened_by: str) -> tuple[dict[str, Any], bool]:
    """The incident of a detected threat: opened (OPEN, the threat's severity, its target as the
    affected system) the first time, the same one after. One per threat, also when two scans
    reach it at once (the unique key `security-incident-threat#<threat id>`). Returns the
    incident and whether this call opened it."""
    claim = _threat_claim(threat["id"])
    held = ports.store.claimed(claim)
    if held is not None and (earlier := ports.store.get(KIND, held["owner"])) is not None:
        return earlier, False
    indicators = threat.get("indicators") or {}
    source = f" from {threat['source_ip']}" if threat.get("source_ip") else ""
    body = SecurityIncidentCreate(
        incident_type=THREAT_INCIDENT_TYPES[threat["threat_type"]],  # type: ignore[arg-type]
        severity=threat["severity"],
        description=(
            f"{threat['threat_type']} detected on {threat['target_resource']}{source} "
            f"(threat {threat['id']}, confidence {threat['confidence_score']})"
        ),
        affected_systems=[threat["target_resource"]],
        detection_method="pgfleet threat detection: " + ", ".join(indicators.get("signals") or ["scan"]),
    )
    now = utcnow()
    record = _new_record(
        body.model_dump(mode="json", exclude={"tenant_id"}), threat["tenant_id"], opened_by, now, None
    )
    record["threat_id"] = threat["id"]
    try:
        stored = _create_numbered(ports, record, now.year, claim)
    except AlreadyExists:
        held = ports.store.claimed(claim)
        earlier = ports.store.get(KIND, held["owner"]) if held else None
        if earlier is None:
            raise
        return earlier, False
    _audit(ports, opened_by, stored, "security.incident.create",
           {"incident_number": stored["incident_number"], "incident_type": stored["incident_type"],
            "severity": stored["severity"], "status": "OPEN", "threat_id": threat["id"]})  # fmt: skip
    notifications.notify(ports, _as_alert(stored), "triggered")
    return stored, True


def _replayed(ports: Ports, claim: str | None, fingerprint: str) -> dict[str, Any] | None:
    if claim is None:
        return None
    held = ports.store.claimed(claim)
    if held is None:
        return None
    earlier = ports.store.get(KIND, held["owner"])
    if earlier is None:
        return None
    if earlier.get("idempotency_fingerprint") != fingerprint:
        raise ValidationFailed(
            "Idempotency-Key was already used with a different request body",
            details={"header": "Idempotency-Key"},
        )
    return earlier


def _create_numbered(ports: Ports, record: dict[str, Any], year: int, claim: str | None) -> dict[str, Any]:
    """Create `record` with the year's next number, atomically with the counter's move and the
    number's unique key. A lost race (the counter moved, the number is taken) is retried with
    the next number; a number held without the counter knowing it is skipped."""
    counter_id = str(year)
    floor = 0
    for _ in range(RETRIES):
        counter = ports.store.get(YEAR_KIND, counter_id)
        sequence = max(int(counter["last"]) if counter else 0, floor) + 1
        number = f"SEC-{year}-{sequence:03d}"
        counting: Create | Update = (
            Create(YEAR_KIND, {"id": counter_id, "tenant_id": PLATFORM, "created_at": record["created_at"],
                               "year": year, "last": sequence})
            if counter is None
            else Update(YEAR_KIND, counter_id, {"last": sequence}, counter["revision"])
        )  # fmt: skip
        numbered = {**record, "incident_number": number, "sequence": sequence, "year": year}
        keys = (_number_key(number), *((claim,) if claim else ()))
        try:
            _, stored = ports.store.transact([counting, Create(KIND, numbered, keys)])
        except AlreadyExists:  # (a Conflict too: first)
            if claim is not None and ports.store.claimed(claim) is not None:
                raise  # the Idempotency-Key is taken: the caller answers the earlier incident
            floor = sequence  # the counter was created concurrently, or the number is taken
            continue
        except Conflict:
            continue  # another create moved the counter: read it again
        return stored
    raise Conflict(
        f"could not allocate a security incident number for {year}: too many concurrent creates; retry"
    )


# --- read ---------------------------------------------------------------------------------------


def get(ports: Ports, caller: Principal, incident_id: str) -> dict[str, Any]:
    return resources.visible_record(ports, caller, KIND, incident_id, "security incident")


def list_incidents(
    ports: Ports,
    caller: Principal,
    *,
    tenant_id: str | None,
    status: str | None,
    severity: str | None,
    incident_type: str | None,
    query: PageQuery,
) -> SecurityIncidentListResponse:
    """The incidents in the caller's scope (its tenant's; a platform admin's: every tenant's, or
    `tenant_id`'s), newest first, filtered, one page, and a summary of the filtered set: counts
    by status and severity, and the mean MTTR of those that were contained. Filtering, counting
    and paging happen in the store."""
    scope = tenant_scope(caller, tenant_id)
    filters = {
        name: value
        for name, value in (("status", status), ("severity", severity), ("incident_type", incident_type))
        if value is not None
    }
    records, total = ports.store.page(
        KIND, tenant_id=scope, filters=filters, page=query.page, page_size=query.page_size
    )
    counts = ports.store.tally(KIND, ("status", "severity", "mttr_minutes"), tenant_id=scope, filters=filters)
    mttrs = {float(v): n for v, n in counts["mttr_minutes"].items() if v is not None}
    contained = sum(mttrs.values())
    summary = {
        "total": total,
        **{s.lower(): counts["status"].get(s, 0) for s in STATUSES},
        **{s.lower(): counts["severity"].get(s, 0) for s in SEVERITIES},
        "contained_incidents": contained,
        "mean_mttr_minutes": round(sum(v * n for v, n in mttrs.items()) / contained, 2)
        if contained
        else None,
    }
    page = Page.of([view(r) for r in records], total, query)
    return SecurityIncidentListResponse(
        incidents=page.items,
        pagination=page.pagination,
        summary=SecurityIncidentSummary.model_validate(summary),
    )


# --- status -------------------------------------------------------------------------------------


def change_status(
    ports: Ports, caller: Principal, incident_id: str, body: SecurityIncidentStatusUpdate
) -> dict[str, Any]:
    """Move an incident to `body.status` under the rules of the module docstring, and record it.
    Written at the revision it was read at; a concurrent change is re-read and the rules applied
    again (so two people cannot both close it)."""
    notes = (body.status_notes or "").strip() or None
    for _ in range(RETRIES):
        record = get(ports, caller, incident_id)
        current, wanted = record["status"], body.status
        _check_transition(record, current, wanted, notes)
        at = _iso(utcnow())
        backward = STATUSES.index(wanted) < STATUSES.index(current)
        entry = {
            "timestamp": at, "status": wanted, "from_status": current,
            "action": f"Moved back from {current} to {wanted}" if backward else ACTIONS[wanted],
            "updated_by": caller.sub, "reported_by": body.updated_by, "notes": notes,
            "containment_actions": list(body.containment_actions),
        }  # fmt: skip
        changes: dict[str, Any] = {"status": wanted, "updated_at": at, **_appended(record, entry)}
        if body.containment_actions:
            known = list(record.get("containment_actions") or [])
            changes["containment_actions"] = (
                known + [a for a in body.containment_actions if a not in known]
            )[-MAX_CONTAINMENT_ACTIONS:]
        if wanted in CONTAINING and record.get("contained_at") is None:
            changes["contained_at"] = at
            changes["mttr_minutes"] = _minutes(record["created_at"], at)
        if wanted == "CLOSED":
            changes["closed_at"] = at
            changes["time_to_close_minutes"] = _minutes(record["created_at"], at)
        try:
            stored = ports.store.update(KIND, incident_id, changes, record["revision"])
        except Conflict:
            continue
        _audit(ports, caller.sub, stored, "security.incident.status",
               {"incident_number": stored["incident_number"], "from_status": current, "to_status": wanted,
                "backward": backward, "notes": notes, "containment_actions": list(body.containment_actions),
                "reported_by": body.updated_by})  # fmt: skip
        if wanted == "CLOSED":
            notifications.notify(ports, _as_alert(stored), "resolved")
        return stored
    raise Conflict(f"security incident {incident_id} kept changing; retry")


def _check_transition(record: dict[str, Any], current: str, wanted: str, notes: str | None) -> None:
    number = record["incident_number"]
    if current == "CLOSED":
        raise InvalidState(f"security incident {number} is CLOSED: a closed incident does not change",
                           details={"status": current})  # fmt: skip
    if wanted == current:
        raise InvalidState(f"security incident {number} is already {current}", details={"status": current})
    if STATUSES.index(wanted) < STATUSES.index(current) and notes is None:
        raise InvalidState(
            f"security incident {number} moves back from {current} to {wanted} only with a reason: "
            "give status_notes",
            details={"status": current, "requested": wanted, "required": "status_notes"},
        )


def _appended(record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    return timeline.appended(record, entry, MAX_TIMELINE)


# --- what else hears of it ----------------------------------------------------------------------


def _audit(ports: Ports, by: str, record: dict[str, Any], action: str, details: dict[str, Any]) -> None:
    ports.history.append_all([
        audit.action_event(
            action=action, resource=f"/api/v1/security/incidents/{record['id']}", target_id=record["id"],
            user_id=by, tenant_id=record["tenant_id"], succeeded=True,
            details={"incident_id": record["id"], **details}, retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip


def _as_alert(record: dict[str, Any]) -> dict[str, Any]:
    """The incident as the notification channels take an alert."""
    return {
        "id": record["id"],
        "tenant_id": record["tenant_id"],
        "alert_name": f"security incident {record['incident_number']} ({record['incident_type']})",
        "severity": record["severity"],
        "status": record["status"],
        "category": "SECURITY",
        "description": record["description"][:500],
        "triggered_at": record["created_at"],
        "resolved_at": record.get("closed_at"),
    }
