"""Capacity: utilization history and status from the `capacity` history stream, growth
analysis and forecasts (forecast.py), kept as records of kind `capacity_forecast` (one per
resource and resource type, replaced by each analysis)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import servers
from pgfleet.domains.capacity import capture, forecast, push

FORECAST_KIND = "capacity_forecast"
BUCKETS = {"HOURLY": 3600, "DAILY": 86400, "WEEKLY": 7 * 86400}
HORIZON_DAYS = {"7d": 7, "30d": 30, "90d": 90, "1y": 365}
PRIORITY = (("URGENT", 7), ("HIGH", 30), ("MEDIUM", 90))
GB = 1024**3


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date(text: str | None, field: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{field} {text!r} is not an ISO 8601 date or time", details={"field": field}
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _scope(
    ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None
) -> tuple[str | None, str | None, bool]:
    """(target, tenant, visible) for a history query under the scope rule."""
    if target_id is not None:
        (target,) = servers.targets(ports, caller, target_id, tenant_id, require_running=False)
        return target.target_id, None, True
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return None, None, False
    return None, tenant_scope(caller, tenant_id), True


def records(ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None, start: datetime,
            end: datetime, resource_type: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    target, tenant, visible = _scope(ports, caller, target_id, tenant_id)
    if not visible:
        return []
    found: list[dict[str, Any]] = []
    filters = {"resource_type": resource_type} if resource_type else None

    def keep(record: Any) -> None:
        if record.data.get("resource_type") != "CPU_COUNTER":
            found.append({**record.data, "at": record.at})

    ports.history.query(capture.STREAM, start=start, end=end, target_id=target, tenant_id=tenant, filters=filters,
                        page=1, page_size=1, newest_first=False, visit=keep)  # fmt: skip
    return found


def history(ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None, resource_type: str | None,
            start: datetime | None, end: datetime | None, aggregation: str) -> list[dict[str, Any]]:  # fmt: skip
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=7)
    if end <= start:
        raise ValidationFailed("endDate is not after startDate", details={"field": "endDate"})
    size = BUCKETS[aggregation]
    buckets: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records(ports, caller, target_id, tenant_id, start, end, resource_type):
        buckets[(r["resource_id"], r["resource_type"], int(r["at"].timestamp()) // size)].append(r)
    out = []
    for (resource_id, kind, bucket), items in sorted(
        buckets.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])
    ):
        usage = sum(float(i["current_usage"]) for i in items) / len(items)
        capacity_value = items[-1].get("capacity")
        out.append({
            "timestamp": iso(datetime.fromtimestamp(bucket * size, UTC)), "resource_type": kind, "resource_id": resource_id,
            "target_id": items[-1]["target_id"], "usage": round(usage, 4), "capacity": capacity_value,
            "utilization_percentage": round(100.0 * usage / capacity_value, 3) if capacity_value else None,
            "samples": len(items), "unit": items[-1].get("unit"),
        })  # fmt: skip
    return out


def status(
    ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records(
        ports, caller, target_id, tenant_id, now - timedelta(days=2), now + timedelta(seconds=1)
    ):
        latest[(r["resource_id"], r["resource_type"])] = r
    return [
        {
            "tenant_id": r["tenant_id"], "resource_type": r["resource_type"], "resource_id": r["resource_id"],
            "target_id": r["target_id"], "current_usage": r["current_usage"], "total_capacity": r.get("capacity"),
            "utilization_percentage": r.get("utilization_percentage"), "status": r["status"],
            "last_measurement": iso(r["at"]), "unit": r.get("unit"),
        }
        for r in sorted(latest.values(), key=lambda r: (r["resource_id"], r["resource_type"]))
    ]  # fmt: skip


def _action(
    kind: str, analysis: forecast.Analysis, capacity_value: float | None, unit: str | None, now: datetime
) -> str:
    days = analysis.time_to_capacity_days
    if analysis.pattern is None:
        return "none yet: " + (analysis.reason or "not enough history")
    if days is None or capacity_value is None:
        return f"none: within {int(forecast.MAX_DAYS)} days the forecast stays below capacity"
    by = (now + timedelta(days=max(0.0, days - 7))).date().isoformat()
    # Sized for the upper 30-day forecast at 70 % use; growth that would need over ten times
    # today's capacity within a month is a runaway writer, not a sizing question.
    needed = analysis.forecasts.get("30d", {}).get("high")
    if needed is None or needed > 10 * capacity_value:
        return (f"find what grows {kind.lower()} this fast (full in {days:g} days; a month of it would need more "
                f"than ten times today's capacity): a resize alone will not keep up")  # fmt: skip
    if kind in ("STORAGE", "TENANT_STORAGE"):
        size = max(math.ceil(needed / 0.7 / GB), math.ceil(capacity_value / GB) + 1)
        if kind == "STORAGE":
            return f"resize storage to {size} GB before {by} (full in {days:g} days at the upper forecast)"
        return f"raise the tenant's max_storage_mb quota to {size * 1024} before {by} (full in {days:g} days)"
    if kind == "CONNECTIONS":
        return f"raise max_connections to {math.ceil(needed / 0.7)} or put a pooler in front before {by} (exhausted in {days:g} days)"
    if kind == "CPU":
        return f"resize to {math.ceil(needed / 0.7)} CPU before {by} (saturated in {days:g} days)"
    return f"resize memory to {math.ceil(needed / 0.7 / 1048576)} MB before {by} (full in {days:g} days)"


def analyze(ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None, resource_type: str | None,
            analysis_days: int) -> list[dict[str, Any]]:  # fmt: skip
    now = datetime.now(UTC)
    series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records(ports, caller, target_id, tenant_id, now - timedelta(days=analysis_days), now + timedelta(seconds=1),
                     resource_type):  # fmt: skip
        series[(r["resource_id"], r["resource_type"])].append(r)
    out = []
    for (resource_id, kind), items in sorted(series.items()):
        origin = items[0]["at"]
        t = [(i["at"] - origin).total_seconds() / 86400 for i in items]
        values = [float(i["current_usage"]) for i in items]
        capacity_value = items[-1].get("capacity")
        try:
            result = forecast.analyze(t, values, float(capacity_value) if capacity_value else None)
        except (ArithmeticError, ValueError) as exc:  # numpy's LinAlgError is a ValueError
            result = forecast.Analysis(None, f"the series could not be fitted: {exc}")
        view = {
            "id": f"{resource_id}|{kind}", "tenant_id": items[-1]["tenant_id"], "target_id": items[-1]["target_id"],
            "resource_id": resource_id, "resource_type": kind, "pattern_type": result.pattern, "reason": result.reason,
            "growth_rate_percentage": result.growth_rate_percent, "confidence_level": result.confidence,
            "current_usage": values[-1], "capacity": capacity_value, "unit": items[-1].get("unit"), "points": len(items),
            "forecast7d": result.forecasts.get("7d", {}).get("value"),
            "forecast30d": result.forecasts.get("30d", {}).get("value"),
            "forecast90d": result.forecasts.get("90d", {}).get("value"),
            "forecast1y": result.forecasts.get("365d", {}).get("value"),
            "intervals": {k: {"low": v["low"], "high": v["high"]} for k, v in result.forecasts.items()},
            "time_to_capacity_days": result.time_to_capacity_days,
            "recommended_action": _action(kind, result, capacity_value, items[-1].get("unit"), now),
            "backtest_errors": result.backtest_errors, "analysis_days": analysis_days, "analyzed_at": iso(now),
            "history": [[iso(i["at"]), float(i["current_usage"])] for i in items[-500:]],
        }  # fmt: skip
        _keep(ports, view)
        out.append(view)
    push.forecasts_updated(ports, out)
    return out


def _keep(ports: Ports, view: dict[str, Any]) -> None:
    record = {**view, "created_at": view["analyzed_at"], "updated_at": utcnow_iso()}
    for _ in range(3):
        existing = ports.store.get(FORECAST_KIND, view["id"])
        try:
            if existing is None:
                ports.store.create(FORECAST_KIND, record)
            else:
                ports.store.update(FORECAST_KIND, view["id"], record, existing["revision"])
            return
        except Conflict:
            continue


def forecasts(ports: Ports, caller: Principal, target_id: str | None, tenant_id: str | None,
              resource_type: str | None) -> list[dict[str, Any]]:  # fmt: skip
    if target_id is not None:
        (target,) = servers.targets(ports, caller, target_id, tenant_id, require_running=False)
        scope: str | None = target.tenant_id
    elif not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    else:
        scope = tenant_scope(caller, tenant_id)
    found = ports.store.every(FORECAST_KIND, tenant_id=scope)
    return [f for f in found if (target_id is None or f["target_id"] == target_id)
            and (resource_type is None or f["resource_type"] == resource_type)]  # fmt: skip


def priority_of(days: float | None) -> str:
    if days is None:
        return "LOW"
    return next((name for name, limit in PRIORITY if days < limit), "LOW")


def dashboard(
    ports: Ports, caller: Principal, tenant_id: str | None, alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The seed's CapacityDashboard from the latest utilization, the forecasts and the alerts."""
    current = [
        s for s in status(ports, caller, None, tenant_id) if s.get("utilization_percentage") is not None
    ]
    found = {f["id"]: f for f in forecasts(ports, caller, None, tenant_id, None)}
    rates = [
        f["growth_rate_percentage"] for f in found.values() if f.get("growth_rate_percentage") is not None
    ]
    utilizations = [float(s["utilization_percentage"]) for s in current]
    trends = []
    for f in found.values():
        rate = f.get("growth_rate_percentage")
        if f.get("pattern_type") is None or rate is None:
            continue
        trend = (
            "STABLE"
            if f["pattern_type"] == "STABLE" or abs(rate) < 0.01
            else ("INCREASING" if rate > 0 else "DECREASING")
        )
        trends.append({"resource_type": f["resource_type"], "resource_id": f["resource_id"], "trend": trend,
                       "growth_rate": rate, "confidence": f.get("confidence_level")})  # fmt: skip
    return {
        "summary": {
            "total_resources": len(current),
            "resources_at_capacity": sum(1 for u in utilizations if u >= capture.CRITICAL_PERCENT),
            "resources_near_capacity": sum(
                1 for u in utilizations if capture.WARNING_PERCENT <= u < capture.CRITICAL_PERCENT
            ),
            "average_utilization": round(sum(utilizations) / len(utilizations), 3) if utilizations else None,
            "growth_rate": round(sum(rates) / len(rates), 4) if rates else None,
        },
        "resource_status": [
            {
                "resource_type": s["resource_type"],
                "resource_id": s["resource_id"],
                "utilization": s["utilization_percentage"],
                "status": s["status"],
                "days_to_capacity": (found.get(f"{s['resource_id']}|{s['resource_type']}") or {}).get(
                    "time_to_capacity_days"
                ),
            }
            for s in current
        ],  # fmt: skip
        "recent_alerts": [
            {
                "alert_id": a["alert_id"],
                "severity": a["severity"],
                "timestamp": a["triggered_at"],
                "message": f"{a['threshold_name']}: {a['resource_type']} of {a['resource_id']} at {a['current_utilization']}%"
                f" ({a['status']})",
            }
            for a in alerts[:10]
        ],  # fmt: skip
        "growth_trends": trends,
    }
