"""`GET /api/v1/system/capacity`: the host the servers share (CPU busy, memory, disk) and the
servers' connections as used/total, each server's latest utilization within its own limits,
what the forecasts project, and what to do about it. `trend` comes from the forecasts' growth
rates (null where nothing was analyzed yet)."""

from __future__ import annotations

from typing import Any

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.domains import capacity

GB = 1024**3
KINDS = {"cpu": "CPU", "memory": "MEMORY", "disk": "STORAGE", "connections": "CONNECTIONS"}


def _trend(rates: list[float]) -> str | None:
    if not rates:
        return None
    mean = sum(rates) / len(rates)
    return "INCREASING" if mean > 0.01 else ("DECREASING" if mean < -0.01 else "STABLE")


def _resource(
    used: float | None, total: float | None, rates: list[float], unit: str
) -> dict[str, Any] | None:
    if used is None or not total:
        return None
    return {"used": round(used, 3), "total": round(total, 3), "utilization_percent": round(100.0 * used / total, 2),
            "trend": _trend(rates), "unit": unit}  # fmt: skip


def read(ports: Ports, caller: Principal) -> dict[str, Any]:
    latest = capacity.status(ports, caller, None, None)
    found = capacity.forecasts(ports, caller, None, None, None)
    rates: dict[str, list[float]] = {}
    for f in found:
        if f.get("growth_rate_percentage") is not None and f.get("pattern_type"):
            rates.setdefault(f["resource_type"], []).append(float(f["growth_rate_percentage"]))
    host = ports.engine.host_capacity(cpu=True) if caller.is_platform_admin else None
    connections = [s for s in latest if s["resource_type"] == "CONNECTIONS"]
    current: dict[str, Any] = {
        "connections": _resource(
            sum(float(s["current_usage"]) for s in connections),
            sum(float(s["total_capacity"] or 0) for s in connections),
            rates.get("CONNECTIONS", []),
            "connections",
        )
        if connections
        else None,  # fmt: skip
        "cpu": None,
        "memory": None,
        "disk": None,
    }
    if host is not None:
        if host.cpu_count and host.cpu_busy_percent is not None:
            current["cpu"] = _resource(
                host.cpu_count * host.cpu_busy_percent / 100, host.cpu_count, rates.get("CPU", []), "cores"
            )
        current["memory"] = _resource((host.memory_total_mb - host.memory_available_mb) / 1024, host.memory_total_mb / 1024,
                                      rates.get("MEMORY", []), "GB")  # fmt: skip
        current["disk"] = _resource(
            host.disk_total_gb - host.disk_free_gb, host.disk_total_gb, rates.get("STORAGE", []), "GB"
        )
    else:  # a tenant sees its servers within their limits, not the host
        for name, kind in KINDS.items():
            mine = [s for s in latest if s["resource_type"] == kind and s.get("total_capacity")]
            if mine and current[name] is None:
                current[name] = _resource(sum(float(s["current_usage"]) for s in mine),
                                          sum(float(s["total_capacity"]) for s in mine), rates.get(kind, []),
                                          mine[0].get("unit") or "")  # fmt: skip
    servers_view = [
        {"target_id": s["target_id"], "resource_id": s["resource_id"], "resource_type": s["resource_type"],
         "used": s["current_usage"], "total": s["total_capacity"], "utilization_percent": s["utilization_percentage"],
         "status": s["status"], "unit": s.get("unit"), "measured_at": s["last_measurement"]}
        for s in latest
    ]  # fmt: skip
    projected = [
        {"resource_type": f["resource_type"], "resource_id": f["resource_id"], "pattern_type": f.get("pattern_type"),
         "current": f["current_usage"], "projected30d": f.get("forecast30d"), "projected90d": f.get("forecast90d"),
         "time_to_capacity_days": f.get("time_to_capacity_days"), "priority": capacity.priority_of(f.get("time_to_capacity_days"))}
        for f in found if f.get("pattern_type")
    ]  # fmt: skip
    recommendations = [
        {"resource_type": p["resource_type"], "resource_id": p["resource_id"], "priority": p["priority"],
         "action": next(f["recommended_action"] for f in found if f["resource_id"] == p["resource_id"]
                        and f["resource_type"] == p["resource_type"])}
        for p in projected if p["priority"] != "LOW"
    ]  # fmt: skip
    if current["disk"] and current["disk"]["utilization_percent"] >= 80:
        recommendations.append({"resource_type": "STORAGE", "resource_id": "host", "priority": "HIGH",
                                "action": f"the host's disk is {current['disk']['utilization_percent']:.0f}% used: "
                                          "add disk or move servers"})  # fmt: skip
    return {
        "current": current,
        "servers": servers_view,
        "projected": projected,
        "recommendations": recommendations,
    }
