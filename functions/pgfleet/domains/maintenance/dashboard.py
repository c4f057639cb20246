"""`GET /api/v1/maintenance/dashboard`: the tasks and their runs, what is next, and the
health of the servers in scope read live from their statistics:
- dead-tuple ratio: dead / (live + dead) over the user tables (WARNING from 10 %, CRITICAL
  from 20 %: autovacuum's default scale factor is 20 %);
- index bloat: the largest estimated bloat of the performance analysis (WARNING from its
  BLOATED threshold, 30 %; CRITICAL from 60 %);
- XID age: the database's age(datfrozenxid) as a share of autovacuum_freeze_max_age (WARNING
  from 50 %, CRITICAL from 100 %: anti-wraparound vacuums are forced from there);
- days since the last vacuum / analyze of the oldest table holding rows (WARNING from 7,
  CRITICAL from 30);
- sequences near exhaustion: the most used sequence's share of its range (PgHero: 90 %).
A trend compares each value with the previous dashboard read of the same scope (a record kept
for that), so the first read has none.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, InvalidState, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import performance, servers
from pgfleet.domains.maintenance import executions, plan, schedule, tasks, windows
from pgfleet.domains.maintenance import sql as q
from pgfleet.ports.metadata import Range

HEALTH_KIND = "maintenance_health"
THRESHOLDS = {
    "DEAD_TUPLE_RATIO": (10.0, 20.0),
    "INDEX_BLOAT": (performance.BLOAT_PERCENT, 60.0),
    "XID_AGE": (50.0, 100.0),
    "DAYS_SINCE_VACUUM": (7.0, 30.0),
    "DAYS_SINCE_ANALYZE": (7.0, 30.0),
    "SEQUENCE_USAGE": (90.0, 98.0),
}
ADVICE = {
    "DEAD_TUPLE_RATIO": "run optimize/database VACUUM (or a VACUUM task) on {target}",
    "INDEX_BLOAT": "run optimize/database REINDEX on {target} (REINDEX CONCURRENTLY)",
    "XID_AGE": "freeze {target}: a VACUUM task with taskFunction freeze_old_tables",
    "DAYS_SINCE_VACUUM": "schedule a nightly VACUUM task for {target}",
    "DAYS_SINCE_ANALYZE": "schedule an ANALYZE task for {target}",
    "SEQUENCE_USAGE": "move the sequence of {target} to bigint before it runs out",
}


def _status(category: str, value: float | None) -> str:
    warn, critical = THRESHOLDS[category]
    if value is None or value < warn:
        return "HEALTHY"
    return "CRITICAL" if value >= critical else "WARNING"


def _read_target(ports: Ports, target: servers.Target) -> dict[str, float | None]:
    database = performance.database_of(ports, target, None)
    with ports.sql.session(target.target_id, database=database, statement_timeout_ms=10_000) as session:
        stats = plan.tables(session)
        xid = session.fetch_one(q.DATABASE_XID_AGE)
        sequences = session.fetch_all(q.SEQUENCES)
        bloated = performance.bloated_indexes(session)
    now = datetime.now(UTC)
    dead = sum(t.dead for t in stats)
    live = sum(t.live for t in stats)
    holding = [t for t in stats if t.live > 0]

    def days(values: list[Any]) -> float | None:
        if not holding:
            return None
        if any(v is None for v in values):
            return None if not values else float("inf")
        return round(max((now - v).total_seconds() / 86400 for v in values), 2)

    vac = days([t.last_vacuum for t in holding])
    ana = days([t.last_analyze for t in holding])
    return {
        "DEAD_TUPLE_RATIO": round(100.0 * dead / (dead + live), 2) if dead + live else 0.0,
        "INDEX_BLOAT": round(max((i.bloat or 0.0) for i in bloated), 1) if bloated else 0.0,
        "XID_AGE": round(100.0 * int(xid[0]) / int(xid[1]), 2) if xid else None,
        "DAYS_SINCE_VACUUM": None if vac == float("inf") else vac,
        "DAYS_SINCE_ANALYZE": None if ana == float("inf") else ana,
        "SEQUENCE_USAGE": round(100.0 * max((float(r[2] or 0) for r in sequences), default=0.0), 2),
        "_never_vacuumed": 1.0 if vac == float("inf") else 0.0,
        "_never_analyzed": 1.0 if ana == float("inf") else 0.0,
    }


def health(ports: Ports, caller: Principal, tenant_id: str | None, target_id: str | None) -> dict[str, Any]:
    indicators, recommendations = [], []
    scope_key = f"{caller.tenant_id}|{tenant_id or ''}|{target_id or ''}"
    previous = ports.store.get(HEALTH_KIND, scope_key) or {}
    earlier = previous.get("values") or {}
    values: dict[str, float | None] = {}
    for target in servers.targets(ports, caller, target_id, tenant_id, what="its statistics"):
        try:
            read = _read_target(ports, target)
        except (EngineError, InvalidState, NotFound) as exc:
            recommendations.append(f"{target.target_id}: could not be read ({exc})")
            continue
        for category in THRESHOLDS:
            value = read[category]
            key = f"{target.target_id}:{category}"
            values[key] = value
            before = earlier.get(key)
            trend = None
            if before is not None and value is not None:
                worse = value > before + 0.01
                better = value < before - 0.01
                trend = "DEGRADING" if worse else ("IMPROVING" if better else "STABLE")
            detail = ""
            if category == "DAYS_SINCE_VACUUM" and read["_never_vacuumed"]:
                detail = "a table holding rows was never vacuumed"
            if category == "DAYS_SINCE_ANALYZE" and read["_never_analyzed"]:
                detail = "a table holding rows was never analyzed"
            status = _status(category, value)
            if detail:
                status = "WARNING"
            indicators.append({
                "category": category, "status": status, "value": value, "threshold": THRESHOLDS[category][0],
                "trend": trend, "target_id": target.target_id, "detail": detail,
            })  # fmt: skip
            if status != "HEALTHY":
                recommendations.append(ADVICE[category].format(target=target.target_id))
    with contextlib.suppress(Conflict):
        if previous:
            ports.store.update(
                HEALTH_KIND, scope_key, {"values": values, "read_at": utcnow_iso()}, previous["revision"]
            )
        else:
            ports.store.create(HEALTH_KIND, {"id": scope_key, "tenant_id": caller.tenant_id, "values": values,
                                             "read_at": utcnow_iso(), "created_at": utcnow_iso()})  # fmt: skip
    statuses = {i["status"] for i in indicators}
    overall = "CRITICAL" if "CRITICAL" in statuses else ("WARNING" if "WARNING" in statuses else "HEALTHY")
    return {
        "overall_status": overall,
        "indicators": indicators,
        "recommendations": list(dict.fromkeys(recommendations)),
    }


def _executions(
    ports: Ports, caller: Principal, tenant_id: str | None, since: datetime
) -> list[dict[str, Any]]:
    if not caller.is_platform_admin and tenant_id not in (None, caller.tenant_id):
        return []
    scope = tenant_scope(caller, tenant_id)
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        records, total = ports.store.page(
            executions.KIND, tenant_id=scope, filters={"created_at": Range(low=executions.iso(since)), "dry_run": False},
            page=page, page_size=100,
        )  # fmt: skip
        out += records
        if page * 100 >= total or not records:
            return out
        page += 1


def read(ports: Ports, caller: Principal, tenant_id: str | None, target_id: str | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    found = tasks.visible(ports, caller, tenant_id)
    month = _executions(ports, caller, tenant_id, now - timedelta(days=30))
    finished = [e for e in month if e["status"] in executions.TERMINAL]
    completed = [e for e in finished if e["status"] == "COMPLETED"]
    durations = [float(e["duration"]) for e in completed if e.get("duration") is not None]
    today = now.strftime("%Y-%m-%d")
    opens = [
        o for o in (windows.span_of(w).next_open(now) for w in windows.visible(ports, caller, tenant_id) if w.get("is_active"))
        if o is not None
    ]  # fmt: skip
    trends = []
    for back in range(6, -1, -1):
        day = (now - timedelta(days=back)).strftime("%Y-%m-%d")
        mine = [e for e in finished if str(e.get("created_at", "")).startswith(day)]
        done = [e for e in mine if e["status"] == "COMPLETED" and e.get("duration") is not None]
        trends.append({
            "date": day, "executions": len(mine), "completed": sum(1 for e in mine if e["status"] == "COMPLETED"),
            "failed": sum(1 for e in mine if e["status"] == "FAILED"),
            "space_reclaimed": sum(int(e.get("space_reclaimed") or 0) for e in mine),
            "avg_duration": round(sum(float(e["duration"]) for e in done) / len(done), 3) if done else None,
        })  # fmt: skip
    recent = sorted(month, key=lambda e: e.get("created_at", ""), reverse=True)[:10]
    upcoming = schedule.runs(ports, found, now, timedelta(hours=24))
    return {
        "summary": {
            "total_tasks": len(found),
            "active_tasks": sum(1 for t in found if t.get("is_enabled")),
            "success_rate": round(100.0 * len(completed) / len(finished), 1) if finished else None,
            "avg_execution_time": round(sum(durations) / len(durations), 3) if durations else None,
            "tasks_executed_today": sum(1 for e in month if str(e.get("start_time") or "").startswith(today)),
            "next_maintenance_window": executions.iso(min(opens)) if opens else None,
        },
        "recent_executions": recent,
        "upcoming_tasks": [schedule.scheduled_view(r, found) for r in upcoming[:20]],
        "system_health": health(ports, caller, tenant_id, target_id),
        "trends": trends,
    }


def report_rows(
    ports: Ports, caller: Principal, tenant_id: str | None, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    return [
        e
        for e in _executions(ports, caller, tenant_id, start)
        if str(e.get("created_at", "")) < (executions.iso(end) or "")
    ]
