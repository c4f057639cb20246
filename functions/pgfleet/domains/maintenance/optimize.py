"""`POST /api/v1/maintenance/optimize/database`: the objects that need VACUUM, ANALYZE or
REINDEX (plan.py's choices), run as a maintenance execution of kind `optimization`; its
results by type (`GET /api/v1/maintenance/optimize/database/{optimizationId}`)."""

from __future__ import annotations

from typing import Any

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState
from pgfleet.domains import servers
from pgfleet.domains.maintenance import executions
from pgfleet.domains.maintenance.models import DatabaseOptimizeRequest

FUNCTIONS = {
    "VACUUM": ["vacuum_bloated_tables"],
    "ANALYZE": ["analyze_stale_tables"],
    "REINDEX": ["reindex_bloated_indexes"],
    "ALL": ["vacuum_bloated_tables", "analyze_stale_tables", "reindex_bloated_indexes"],
}
TYPES = ("VACUUM", "ANALYZE", "REINDEX")
MB = 1024 * 1024


def start(ports: Ports, caller: Principal, body: DatabaseOptimizeRequest) -> dict[str, Any]:
    found = servers.targets(ports, caller, body.target_id, body.tenant_id, what="its tables")
    if not found:
        raise InvalidState("no running server in scope to optimize")
    tenant = (
        found[0].tenant_id if body.target_id else (tenant_scope(caller, body.tenant_id) or caller.tenant_id)
    )
    settings = {
        "functions": FUNCTIONS[body.optimization_type], "task_sql": None, "database": body.database,
        "max_minutes": min(executions.MAX_RUN_MINUTES, body.max_duration or executions.MAX_RUN_MINUTES),
        "retry_attempts": 0, "retry_delay": 0, "requires_exclusive_lock": body.allow_vacuum_full,
        "resource_limits": {}, "notification_settings": {}, "optimization_type": body.optimization_type,
        "window": body.maintenance_window.model_dump() if body.maintenance_window else None,
        "allow_vacuum_full": body.allow_vacuum_full,
    }  # fmt: skip
    record = executions.new_record(
        tenant, kind="optimization", name=f"optimize {body.optimization_type}", task=None,
        targets=[t.target_id for t in found], triggered_by=caller.sub, dry_run=body.dry_run, settings=settings,
    )  # fmt: skip
    return executions.start(ports, record, override=False)


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The seed's DatabaseOptimizeResponse of an optimization execution."""
    statements = record.get("statements") or []
    wanted = record["settings"].get("optimization_type") or "ALL"
    results: list[dict[str, Any]] = []
    for kind in TYPES if wanted == "ALL" else (wanted,):
        mine = [s for s in statements if s.get("type") == kind]
        done = [s for s in mine if s.get("status") == "COMPLETED"]
        failed = [s for s in mine if s.get("status") == "FAILED"]
        reclaimed = sum(int(s.get("space_reclaimed") or 0) for s in done)
        if record.get("dry_run"):
            status, details = "SKIPPED", f"dry run: {len(mine)} object(s) chosen, nothing changed"
        elif record["status"] in ("INITIATED", "RUNNING") and len(done) + len(failed) < len(mine):
            status, details = "SKIPPED", f"{len(done)} of {len(mine)} done so far"
        elif not mine:
            status, details = "SKIPPED", "no object needs it"
        else:
            status = "FAILED" if failed else ("COMPLETED" if done else "SKIPPED")
            details = "; ".join(
                f"{s.get('schema')}.{s.get('name')}: {s.get('status')}"
                + (f", {int(s.get('space_reclaimed') or 0) / MB:.2f} MB reclaimed" if s.get("status") == "COMPLETED" else "")
                + (f" ({s.get('error')})" if s.get("error") else "")
                for s in mine[:20]
            )  # fmt: skip
        results.append({
            "type": kind, "objects_processed": len(done), "space_reclaimed_mb": round(reclaimed / MB, 3),
            "performance_improvement_percent": None,
            "duration": round(sum(float(s.get("duration") or 0) for s in mine), 3), "status": status,
            "details": details[:2000],
        })  # fmt: skip
    return {
        "optimization_id": record["id"],
        "status": record["status"],
        "optimizations": results,
        "summary": {
            "objects_selected": len(statements),
            "objects_processed": sum(r["objects_processed"] for r in results),
            "total_space_reclaimed_mb": round(sum(r["space_reclaimed_mb"] for r in results), 3),
            "duration": record.get("duration"),
            "choices": [
                {
                    "targetId": s.get("target_id"),
                    "database": s.get("database"),
                    "object": f"{s.get('schema')}.{s.get('name')}",
                    "action": s.get("action"),
                    "sql": s.get("sql"),
                    "reason": s.get("reason"),
                }
                for s in statements
            ],  # fmt: skip
        },
        "scheduled_for": record.get("scheduled_for"),
        "operation_id": record.get("operation_id"),
    }
