"""Alerts: raised by the evaluations that watch resources (quotas, ...), resolved by them when
the condition clears, acknowledged and resolved by users. Shaped like the production-readiness
API's Alert (camelCase).

One alert per (resource, alert name) is open at a time: a claim on `alert-open#<resource>#<name>`
names it, so an evaluation that runs every minute updates the open alert instead of piling up
new ones; a new alert opens after the previous one was resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.monitoring.models import AlertAcknowledgeRequest, AlertResolveRequest

KIND = "alert"
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
STATUSES = ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")
PUBLIC_FIELDS = (
    "alertId", "alertName", "severity", "status", "category", "description", "triggeredAt",
    "acknowledgedAt", "resolvedAt", "assignedTo", "metricValue", "threshold", "actions",
    "tenantId", "resourceId", "resourceType",
)  # fmt: skip
MAX_LISTED = 10_000  # alerts read per listing; older ones beyond it are not listed


@dataclass(frozen=True)
class Condition:
    """A condition an evaluation watches on one resource: `firing` opens (or keeps open)
    the alert named `name`; not firing resolves it."""

    name: str
    firing: bool
    severity: str
    category: str
    description: str
    metric_value: float
    threshold: float
    actions: list[dict[str, Any]] = field(default_factory=list)


def _open_key(resource_id: str, name: str) -> str:
    return f"alert-open#{resource_id}#{name}"


def observe(
    ports: Ports, *, owner_tenant: str, resource_id: str, resource_type: str, condition: Condition
) -> str | None:
    """Open, update or resolve the alert of `condition` on a resource. Returns a line when
    something opened or resolved. Idempotent."""
    key = _open_key(resource_id, condition.name)
    claim = ports.store.claimed(key)
    current = ports.store.get(KIND, claim["owner"]) if claim else None
    if condition.firing:
        if current is not None and current["status"] != "RESOLVED":
            if current["metricValue"] != condition.metric_value:
                ports.store.update(KIND, current["id"], {"metricValue": condition.metric_value})
            return None
        alert_id = new_id("alert")
        now = utcnow_iso()
        ports.store.create(
            KIND,
            {
                "id": alert_id, "tenant_id": owner_tenant, "parent_id": resource_id, "created_at": now,
                "alertId": alert_id, "alertName": condition.name, "severity": condition.severity,
                "status": "ACTIVE", "category": condition.category, "description": condition.description,
                "triggeredAt": now, "acknowledgedAt": None, "resolvedAt": None, "assignedTo": None,
                "metricValue": condition.metric_value, "threshold": condition.threshold,
                "actions": condition.actions, "tenantId": owner_tenant, "resourceId": resource_id,
                "resourceType": resource_type,
            },
        )  # fmt: skip
        ports.store.release(key)
        ports.store.claim(key, alert_id)
        return f"{resource_id}: alert {condition.name} raised ({condition.description})"
    if claim is None:
        return None
    ports.store.release(key)
    if current is not None and current["status"] != "RESOLVED":
        ports.store.update(
            KIND,
            current["id"],
            {
                "status": "RESOLVED",
                "resolvedAt": utcnow_iso(),
                "resolution": {"resolutionNote": "condition cleared"},
            },
        )
        return f"{resource_id}: alert {condition.name} resolved (condition cleared)"
    return None


def resolve_all_for(ports: Ports, resource_id: str, note: str) -> int:
    """Resolve every open alert of a resource (it was deleted). Returns how many."""
    resolved = 0
    token = None
    while True:
        page, token = ports.store.list(KIND, parent_id=resource_id, limit=100, next_token=token)
        for record in page:
            ports.store.release(_open_key(resource_id, record["alertName"]), record["id"])
            if record["status"] != "RESOLVED":
                ports.store.update(KIND, record["id"], {"status": "RESOLVED", "resolvedAt": utcnow_iso(),
                                                        "resolution": {"resolutionNote": note}})  # fmt: skip
                resolved += 1
        if not token:
            return resolved


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in PUBLIC_FIELDS}


def _visible(ports: Ports, principal: Principal, alert_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, alert_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"alert {alert_id} not found")
    return record


def list_alerts(
    ports: Ports,
    principal: Principal,
    *,
    tenant_id: str | None = None,
    status: str | None = None,
    severity: str | None = None,
    category: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """Alerts the caller may see (its tenant's; every tenant's for a platform admin, who may
    narrow to `tenant_id`), newest first, filtered, one page, with a summary of the filtered set."""
    records: list[dict[str, Any]] = []
    # A platform admin sees every tenant's (or the one asked for); others only their own.
    if principal.is_platform_admin or tenant_id in (None, principal.tenant_id):
        scope = tenant_id if principal.is_platform_admin else principal.tenant_id
        token = None
        while len(records) < MAX_LISTED:
            batch, token = ports.store.list(KIND, tenant_id=scope, limit=100, next_token=token)
            records += batch
            if not token:
                break
    selected = [
        r
        for r in records
        if (status is None or r["status"] == status)
        and (severity is None or r["severity"] == severity)
        and (category is None or r["category"] == category)
    ]
    selected.sort(key=lambda r: (r["triggeredAt"], r["id"]), reverse=True)
    start = (page - 1) * page_size
    summary = {"total": len(selected)}
    for value in STATUSES:
        summary[value.lower()] = sum(1 for r in selected if r["status"] == value)
    for value in SEVERITIES:
        summary[value.lower()] = sum(1 for r in selected if r["severity"] == value)
    return {
        "alerts": [public_view(r) for r in selected[start : start + page_size]],
        "pagination": {
            "page": page,
            "pageSize": page_size,
            "totalItems": len(selected),
            "totalPages": math.ceil(len(selected) / page_size),
        },
        "summary": summary,
    }


def acknowledge(
    ports: Ports, principal: Principal, alert_id: str, body: AlertAcknowledgeRequest
) -> dict[str, Any]:
    record = _visible(ports, principal, alert_id)
    if record["status"] == "RESOLVED":
        raise InvalidState(f"alert {alert_id} is already resolved")
    changes: dict[str, Any] = {
        "status": "ACKNOWLEDGED",
        "acknowledgedAt": record.get("acknowledgedAt") or utcnow_iso(),
        "acknowledgedBy": principal.sub,
        "acknowledgment": body.model_dump(),
    }
    if body.assignTo:
        changes["assignedTo"] = body.assignTo
    return public_view(ports.store.update(KIND, alert_id, changes, record["revision"]))


def resolve(ports: Ports, principal: Principal, alert_id: str, body: AlertResolveRequest) -> dict[str, Any]:
    """Resolve an alert by hand. If its condition still holds, the next evaluation opens a new one."""
    record = _visible(ports, principal, alert_id)
    if record["status"] == "RESOLVED":
        raise InvalidState(f"alert {alert_id} is already resolved")
    key = _open_key(record["resourceId"], record["alertName"])
    claim = ports.store.claimed(key)
    if claim and claim["owner"] == alert_id:
        ports.store.release(key, alert_id)
    changes = {"status": "RESOLVED", "resolvedAt": utcnow_iso(), "resolvedBy": principal.sub,
               "resolution": body.model_dump()}  # fmt: skip
    return public_view(ports.store.update(KIND, alert_id, changes, record["revision"]))
