"""The capacity events pushed to WebSocket subscribers (the seed's `CapacityEvents`), in the
seed's field names. A push never fails the work that caused it (events.publish logs)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.domains import events

THRESHOLD_EXCEEDED, FORECAST_UPDATED, UTILIZATION_SPIKE, CAPACITY_WARNING = events.CAPACITY_EVENTS
WARNING_DAYS = 30  # a forecast this close to capacity (priority HIGH or URGENT) warns


def threshold_exceeded(ports: Ports, tenant_id: str, evaluation: dict[str, Any], raised: bool) -> None:
    events.publish(ports, tenant_id, THRESHOLD_EXCEEDED, {
        "tenantId": tenant_id, "thresholdId": evaluation["threshold_id"], "resourceType": evaluation["resource_type"],
        "resourceId": evaluation["resource_id"], "currentUtilization": evaluation["current_utilization"],
        "threshold": evaluation["threshold_percentage"], "severity": evaluation["alert_severity"],
        "alertRaised": raised, "recommendedAction": evaluation["recommended_action"],
    })  # fmt: skip


def forecasts_updated(ports: Ports, views: list[dict[str, Any]]) -> None:
    """One `forecast_updated` per tenant analyzed; a `capacity_warning` per forecast that reaches
    capacity within WARNING_DAYS at its upper interval."""
    by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for view in views:
        by_tenant[view["tenant_id"]].append(view)
    for tenant_id, found in by_tenant.items():
        events.publish(ports, tenant_id, FORECAST_UPDATED, {
            "tenantId": tenant_id, "resourcesAnalyzed": len(found),
            "forecasts": [{"resourceId": v["resource_id"], "resourceType": v["resource_type"],
                           "patternType": v["pattern_type"], "timeToCapacityDays": v["time_to_capacity_days"]}
                          for v in found],
        })  # fmt: skip
        for v in found:
            days = v.get("time_to_capacity_days")
            if days is not None and days < WARNING_DAYS:
                events.publish(ports, tenant_id, CAPACITY_WARNING, {
                    "tenantId": tenant_id, "resourceId": v["resource_id"], "resourceType": v["resource_type"],
                    "currentUtilization": _percent(v), "timeToCapacityDays": days,
                    "priority": "URGENT" if days < 7 else "HIGH", "recommendedAction": v["recommended_action"],
                })  # fmt: skip


def utilization_spike(
    ports: Ports, item: dict[str, Any], growth_7d: float, view: dict[str, Any] | None
) -> None:
    events.publish(ports, item["tenant_id"], UTILIZATION_SPIKE, {
        "tenantId": item["tenant_id"], "resourceType": item["resource_type"], "resourceId": item["resource_id"],
        "currentUtilization": item.get("utilization_percentage"), "growthRate": round(growth_7d, 3),
        "growthRatePerDay": (view or {}).get("growth_rate_percentage"),
        "timeToCapacity": (view or {}).get("time_to_capacity_days"),
        "patternType": (view or {}).get("pattern_type"),
    })  # fmt: skip


def _percent(view: dict[str, Any]) -> float | None:
    capacity = view.get("capacity")
    return round(100.0 * float(view["current_usage"]) / float(capacity), 3) if capacity else None
