"""Security threats (seed 003, "Security Management APIs"): what detection found
(threat_scan), kept as records of kind `security_threat` (snake_case, `id` the threat id,
`tenant_id` the attacked server's tenant; a threat against the API itself belongs to the
platform, and only a platform token sees it).

One threat per attack: a finding carries a fingerprint (its type, where, and who: the source
and role of a brute force, the role and privilege of an escalation, ...); while a threat of
that fingerprint is open (ACTIVE, INVESTIGATING) new evidence updates it (the unique key
`security-threat#<fingerprint>` is held by it). Once an investigation RESOLVES it or calls it
a FALSE_POSITIVE, evidence newer than that opens a new threat (which takes the key over);
older evidence (the same window read again) does not.

An investigation (`POST /threats/investigate`) sets the status, `assigned_to` and notes,
records the seed's free-text `mitigation_actions`, and applies or lifts mitigations
(threat_mitigations). Every investigation goes to the audit trail (`security.threat.investigate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import audit, resources
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, NotFound
from pgfleet.core.models import new_id
from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains.security.threat_models import (
    MAX_NOTES,
    ActiveThreatsResponse,
    SecurityThreat,
    ThreatSummary,
)
from pgfleet.ports.metadata import Range

KIND = "security_threat"
ID_PREFIX = "thr"
OPEN = ("ACTIVE", "INVESTIGATING")
CLOSED = ("RESOLVED", "FALSE_POSITIVE")
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
THREAT_TYPES = ("BRUTE_FORCE", "SQL_INJECTION", "XSS", "PRIVILEGE_ESCALATION")
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
RETRIES = 10
MAX_RECORDED_ACTIONS = 50
MAX_MITIGATIONS = 20


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fingerprint_key(threat_type: str, where: str | None, who: str) -> str:
    digest = hashlib.sha256(f"{threat_type}|{where or 'api'}|{who}".encode()).hexdigest()[:32]
    return f"security-threat#{digest}"


def view(record: dict[str, Any]) -> SecurityThreat:
    mitigations = list(record.get("mitigations") or [])
    described = [
        m["description"] + ("" if m["status"] == "ACTIVE" else f" (lifted {m.get('lifted_at')})")
        for m in mitigations
    ]
    return SecurityThreat.model_validate(
        {
            **record,
            "threat_id": record["id"],
            "mitigations": mitigations,
            "mitigation_actions": described + list(record.get("recorded_actions") or []),
        }
    )


# --- what detection records -------------------------------------------------------------------

Build = Callable[[dict[str, Any] | None], dict[str, Any] | None]


def record_finding(ports: Ports, key: str, build: Build, now: datetime) -> dict[str, Any] | None:
    """Create or update the open threat holding `key`. `build(existing)` returns the threat's
    fields from the evidence (merged with what `existing` holds, when it is open), or None
    when there is nothing to record; it must carry `last_seen`. Returns the stored record,
    or None when nothing was (a closed threat's old evidence)."""
    for _ in range(RETRIES):
        held = ports.store.claimed(key)
        existing = ports.store.get(KIND, held["owner"]) if held else None
        if held and existing is None:
            ports.store.release(key, held["owner"])
            continue
        if existing is not None and existing["status"] in CLOSED:
            fields = build(None)
            if fields is None or fields["last_seen"] <= (existing.get("closed_at") or existing["updated_at"]):
                return None
            ports.store.release(key, existing["id"])
            existing = None
        else:
            fields = build(existing)
            if fields is None:
                return None
        at = iso(now)
        try:
            if existing is None:
                record = {
                    **fields, "id": new_id(ID_PREFIX), "status": "ACTIVE", "created_at": at, "updated_at": at,
                    "detection_timestamp": at, "fingerprint": key, "mitigations": [], "recorded_actions": [],
                    "assigned_to": None, "investigation_notes": None, "closed_at": None,
                }  # fmt: skip
                return ports.store.create(KIND, record, (key,))
            return ports.store.update(
                KIND, existing["id"], {**fields, "updated_at": at}, existing["revision"]
            )
        except (AlreadyExists, Conflict):
            continue  # another detection recorded it meanwhile: read it again
    raise Conflict(f"threat {key} kept changing; retry")


# --- read ---------------------------------------------------------------------------------------


def get(ports: Ports, caller: Principal, threat_id: str) -> dict[str, Any]:
    return resources.visible_record(ports, caller, KIND, threat_id, "security threat")


def active(
    ports: Ports,
    caller: Principal,
    *,
    severity: str | None,
    threat_type: str | None,
    time_range: str,
    tenant_id: str | None,
    query: PageQuery,
    now: datetime | None = None,
) -> ActiveThreatsResponse:
    """The open threats (ACTIVE, INVESTIGATING) in the caller's scope with evidence within
    `time_range`, newest first, one page; the summary counts the filtered set. Filtering,
    counting and paging happen in the store."""
    scope = tenant_scope(caller, tenant_id)
    since = iso((now or datetime.now(UTC)) - RANGES[time_range])
    filters: dict[str, Any] = {"status": list(OPEN), "last_seen": Range(low=since)}
    if severity is not None:
        filters["severity"] = severity
    if threat_type is not None:
        filters["threat_type"] = threat_type
    records, total = ports.store.page(
        KIND, tenant_id=scope, filters=filters, page=query.page, page_size=query.page_size
    )
    counts = ports.store.tally(KIND, ("severity", "threat_type", "status"), tenant_id=scope, filters=filters)
    summary = ThreatSummary(
        **{f"{s.lower()}_threats": counts["severity"].get(s, 0) for s in SEVERITIES},
        by_type={t: counts["threat_type"].get(t, 0) for t in THREAT_TYPES},
        investigating=counts["status"].get("INVESTIGATING", 0),
    )
    page = Page.of([view(r) for r in records], total, query)
    return ActiveThreatsResponse(
        threats=page.items, total_count=total, summary=summary, pagination=page.pagination
    )


# --- investigate ----------------------------------------------------------------------------------


def set_investigation(
    ports: Ports,
    caller: Principal,
    threat_id: str,
    status: str,
    assigned_to: str | None,
    notes: str | None,
    actions: list[str],
) -> dict[str, Any]:
    """Status, assignee, notes and the free-text actions, at the revision read (a concurrent
    change is read again). A RESOLVED or FALSE_POSITIVE threat keeps its fingerprint until
    evidence newer than its close opens the next threat (record_finding)."""
    for _ in range(RETRIES):
        record = get(ports, caller, threat_id)
        at = iso(datetime.now(UTC))
        recorded = list(record.get("recorded_actions") or [])
        changes: dict[str, Any] = {
            "status": status,
            "updated_at": at,
            "recorded_actions": (recorded + [a for a in actions if a not in recorded])[
                -MAX_RECORDED_ACTIONS:
            ],
        }
        if assigned_to is not None:
            changes["assigned_to"] = assigned_to
        if notes is not None and notes.strip():
            changes["investigation_notes"] = notes.strip()[:MAX_NOTES]
        if status in CLOSED:
            changes["closed_at"] = at
        try:
            stored = ports.store.update(KIND, threat_id, changes, record["revision"])
        except Conflict:
            continue
        return stored
    raise Conflict(f"security threat {threat_id} kept changing; retry")


def with_mitigation(ports: Ports, threat_id: str, mitigation: dict[str, Any]) -> dict[str, Any]:
    """The threat with `mitigation` (a view of a mitigation record) added or replaced."""
    for _ in range(RETRIES):
        record = ports.store.get(KIND, threat_id)
        if record is None:
            raise NotFound(f"security threat {threat_id} not found")
        kept = [
            m for m in record.get("mitigations") or [] if m["mitigation_id"] != mitigation["mitigation_id"]
        ]
        listed = (kept + [mitigation])[-MAX_MITIGATIONS:]
        try:
            return ports.store.update(KIND, threat_id, {"mitigations": listed}, record["revision"])
        except Conflict:
            continue
    raise Conflict(f"security threat {threat_id} kept changing; retry")


def with_incident(ports: Ports, threat_id: str, incident_id: str) -> dict[str, Any]:
    """The threat, linked to the incident opened for it."""
    for _ in range(RETRIES):
        record = ports.store.get(KIND, threat_id)
        if record is None:
            raise NotFound(f"security threat {threat_id} not found")
        if record.get("incident_id") == incident_id:
            return record
        try:
            return ports.store.update(KIND, threat_id, {"incident_id": incident_id}, record["revision"])
        except Conflict:
            continue
    raise Conflict(f"security threat {threat_id} kept changing; retry")


def audit_event(
    ports: Ports, caller_sub: str | None, record: dict[str, Any], action: str, details: dict[str, Any]
) -> None:
    ports.history.append_all([
        audit.action_event(
            action=action, resource=f"/api/v1/security/threats/{record['id']}", target_id=record.get("target_id"),
            user_id=caller_sub, tenant_id=record["tenant_id"], succeeded=True,
            details={"threat_id": record["id"], "threat_type": record["threat_type"], **details},
            retention_days=ports.settings.audit_retention_days,
        )
    ])  # fmt: skip
