"""Capacity thresholds (records of kind `capacity_threshold`) and their evaluation against the
latest utilization: one monitoring alert per threshold and resource (`capacity <name>`, category
CAPACITY) opened while it is exceeded and resolved when it no longer is, through the
monitoring domain's alerts, incidents and notification channels (the threshold's own channels
when it names some).

Figures kept on each threshold: the moments its evaluations found it exceeded (the last day's,
for `triggerCount24h` and `lastTriggered`), and how many alerts it raised and how many of those
cleared (`effectiveness`: the share of its alerts whose condition cleared, null before the first).
`POST /api/v1/capacity/analysis/run` captures, analyzes, creates the eight default thresholds
(WARNING 80 %, CRITICAL 90 % for storage, connections, CPU and memory) when asked, and evaluates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains import monitoring
from pgfleet.domains.capacity import push, service
from pgfleet.domains.capacity.models import CreateThresholdRequest, UpdateThresholdRequest

KIND = "capacity_threshold"
SEVERITY = {"WARNING": "MEDIUM", "CRITICAL": "HIGH", "MAXIMUM": "CRITICAL"}
DEFAULTS = [(kind, level, pct) for kind in ("STORAGE", "CONNECTIONS", "CPU", "MEMORY")
            for level, pct in (("WARNING", 80.0), ("CRITICAL", 90.0))]  # fmt: skip
ALERT_STATUS = {"ACTIVE": "ACTIVE", "ACKNOWLEDGED": "SUPPRESSED", "RESOLVED": "RESOLVED"}


def create(ports: Ports, caller: Principal, body: CreateThresholdRequest) -> dict[str, Any]:
    tenant = tenant_scope(caller, body.tenant_id) or caller.tenant_id
    now = utcnow_iso()
    record = {
        **body.to_record(), "id": new_id("cth"), "tenant_id": tenant, "is_active": True, "escalation_enabled": False,
        "triggered_at": [], "alerts_raised": 0, "alerts_cleared": 0, "created_at": now, "updated_at": now,
    }  # fmt: skip
    return ports.store.create(KIND, record)


def get(ports: Ports, caller: Principal, threshold_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, threshold_id)
    if record is None or not caller.sees_tenant(record["tenant_id"]):
        raise NotFound(f"capacity threshold {threshold_id} not found")
    return record


def update(
    ports: Ports, caller: Principal, threshold_id: str, body: UpdateThresholdRequest
) -> dict[str, Any]:
    record = get(ports, caller, threshold_id)
    changes = {
        k: v
        for k, v in body.model_dump(mode="json", by_alias=False, exclude_unset=True).items()
        if v is not None
    }
    changes["updated_at"] = utcnow_iso()
    return ports.store.update(KIND, threshold_id, changes, record["revision"])


def visible(ports: Ports, caller: Principal, tenant_id: str | None) -> list[dict[str, Any]]:
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    return ports.store.every(KIND, tenant_id=tenant_scope(caller, tenant_id))


def view(record: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    day = [
        t
        for t in record.get("triggered_at") or []
        if datetime.fromisoformat(t.replace("Z", "+00:00")) > now - timedelta(days=1)
    ]
    raised = int(record.get("alerts_raised") or 0)
    return {
        **record, "threshold_id": record["id"], "trigger_count24h": len(day),
        "last_triggered": (record.get("triggered_at") or [None])[-1],
        "effectiveness": round(100.0 * int(record.get("alerts_cleared") or 0) / raised, 1) if raised else None,
    }  # fmt: skip


def _note(ports: Ports, record: dict[str, Any], exceeded: bool, raised: int, cleared: int) -> None:
    for _ in range(5):
        fresh = ports.store.get(KIND, record["id"])
        if fresh is None:
            return
        now = datetime.now(UTC)
        kept = [
            t
            for t in fresh.get("triggered_at") or []
            if datetime.fromisoformat(t.replace("Z", "+00:00")) > now - timedelta(days=1)
        ]
        if exceeded:
            kept.append(service.iso(now))
        changes = {"triggered_at": kept[-1000:], "alerts_raised": int(fresh.get("alerts_raised") or 0) + raised,
                   "alerts_cleared": int(fresh.get("alerts_cleared") or 0) + cleared}  # fmt: skip
        try:
            ports.store.update(KIND, record["id"], changes, fresh["revision"])
            return
        except Conflict:
            continue


def evaluate(
    ports: Ports, caller: Principal, tenant_id: str | None, target_id: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Every active threshold in scope against the latest utilization; (evaluations, alerts raised)."""
    current = service.status(ports, caller, target_id, tenant_id)
    forecasts = {f["id"]: f for f in service.forecasts(ports, caller, target_id, tenant_id, None)}
    out, opened = [], 0
    for threshold in visible(ports, caller, tenant_id):
        if not threshold.get("is_active", True):
            continue
        raised = cleared = 0
        any_exceeded = False
        for item in current:
            if (
                item["resource_type"] != threshold["resource_type"]
                or item.get("utilization_percentage") is None
            ):
                continue
            if threshold["tenant_id"] not in ("*", item["tenant_id"]):
                continue
            if threshold.get("target_id") and threshold["target_id"] != item["target_id"]:
                continue
            util = float(item["utilization_percentage"])
            exceeded = util >= float(threshold["threshold_percentage"])
            any_exceeded |= exceeded
            severity = SEVERITY[threshold["threshold_type"]]
            condition = monitoring.Condition(
                name=f"capacity {threshold['threshold_name']}", firing=exceeded and bool(threshold.get("alert_enabled", True)),
                severity=severity, category="CAPACITY",
                description=f"{threshold['resource_type']} of {item['resource_id']} at {util:.1f}% "
                            f"(threshold {threshold['threshold_percentage']:g}%, {threshold['threshold_type']})",
                metric_value=round(util, 3), threshold=float(threshold["threshold_percentage"]),
                channels=threshold.get("notification_channels") or None,
            )  # fmt: skip
            line = monitoring.observe(ports, owner_tenant=item["tenant_id"], resource_id=item["resource_id"],
                                      resource_type=item["resource_type"], condition=condition)  # fmt: skip
            if line and " raised " in line:
                raised += 1
            elif line and " resolved " in line:
                cleared += 1
            forecast = forecasts.get(f"{item['resource_id']}|{item['resource_type']}")
            evaluation = {
                "threshold_id": threshold["id"], "threshold_name": threshold["threshold_name"],
                "resource_type": item["resource_type"], "resource_id": item["resource_id"],
                "current_utilization": round(util, 3), "threshold_percentage": float(threshold["threshold_percentage"]),
                "threshold_exceeded": exceeded, "alert_severity": severity if exceeded else "NONE",
                "recommended_action": (forecast or {}).get("recommended_action")
                or ("act now: it is past the threshold" if exceeded else "none: under the threshold"),
            }  # fmt: skip
            out.append(evaluation)
            if exceeded:
                push.threshold_exceeded(
                    ports, item["tenant_id"], evaluation, bool(line and " raised " in line)
                )
        opened += raised
        _note(ports, threshold, any_exceeded, raised, cleared)
    return out, opened


def create_defaults(ports: Ports, caller: Principal, tenant_id: str | None) -> int:
    tenant = tenant_scope(caller, tenant_id) or caller.tenant_id
    existing = {(t["resource_type"], t["threshold_type"]) for t in ports.store.every(KIND, tenant_id=tenant)}
    made = 0
    for kind, level, pct in DEFAULTS:
        if (kind, level) in existing:
            continue
        body = CreateThresholdRequest.model_validate({
            "tenantId": tenant if tenant != caller.tenant_id else None, "thresholdName": f"{kind.lower()} {level.lower()}",
            "resourceType": kind, "thresholdPercentage": pct, "thresholdType": level, "alertEnabled": True,
        })  # fmt: skip
        create(ports, caller, body)
        made += 1
    return made


def alerts(ports: Ports, caller: Principal, tenant_id: str | None, status: str | None, severity: str | None,
           start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:  # fmt: skip
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    found = ports.store.every(monitoring.ALERT_KIND, tenant_id=tenant_scope(caller, tenant_id))
    out = []
    for a in found:
        if a.get("category") != "CAPACITY":
            continue
        shown = ALERT_STATUS.get(str(a.get("status")), "ACTIVE")
        triggered = datetime.fromisoformat(str(a["triggered_at"]).replace("Z", "+00:00"))
        if (status and shown != status) or (severity and a.get("severity") != severity):
            continue
        if (start and triggered < start) or (end and triggered >= end):
            continue
        resolved = a.get("resolved_at")
        out.append({
            "alert_id": a["id"], "threshold_name": str(a.get("alert_name", "")).removeprefix("capacity "),
            "resource_type": a.get("resource_type"), "resource_id": a.get("parent_id"), "severity": a.get("severity"),
            "current_utilization": a.get("metric_value"), "threshold_percentage": a.get("threshold"),
            "triggered_at": a["triggered_at"], "status": shown,
            "resolution_time": round((datetime.fromisoformat(resolved.replace("Z", "+00:00")) - triggered).total_seconds(), 1)
            if resolved else None,
        })  # fmt: skip
    return sorted(out, key=lambda a: a["triggered_at"], reverse=True)
