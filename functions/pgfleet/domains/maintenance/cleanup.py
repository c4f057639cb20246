"""`POST /api/v1/maintenance/cleanup/data`: records past their retention, counted, then
deleted (a dry run counts exactly what the run deletes, by the same query).

- AUDIT: the history store's `audit` stream. An audit event younger than the legal retention
  (LEGAL_AUDIT_RETENTION_DAYS, or the platform's own `audit_retention_days` when longer) is
  never deleted, whatever the request says: a shorter custom retention is raised to it, and
  the result says so.
- MONITORING: metric samples (`metrics`, `metrics_hour`), lock captures and deadlocks
  (`locks`, `deadlocks`), statement snapshots (`statements`), API metrics (`api_metrics`).
- SESSION: rate-limit windows past their expiry (platform-wide: a platform admin's call), and
  the platform's own idle sessions (`application_name` pgfleet...) on the servers in scope,
  idle longer than the retention.

Without a custom retention, MONITORING purges past the tenant's `metricRetentionDays` and
SESSION past its `idleConnectionDays` (sections MONITORING and MAINTENANCE of the system
configuration; 30 days and 1 day unless it set others).
- BACKUP: backups past retention, removed with the backup tool's own expiry (`pgbackrest
  expire` through the backup engine); a custom retention counts from when each finished; a
  full backup that a kept backup depends on stays, and so does the newest full backup of each
  live server (its restore point).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import audit, tenant_settings
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, Forbidden, InvalidState
from pgfleet.core.models import new_id
from pgfleet.domains import archive, monitoring, servers
from pgfleet.domains.maintenance import sql as q
from pgfleet.domains.maintenance.models import DataCleanupRequest

# PCI DSS v4.0 requirement 10.5.1: audit log history is kept for at least 12 months.
LEGAL_AUDIT_RETENTION_DAYS = 365
MONITORING_STREAMS = ("metrics", "metrics_hour", "locks", "deadlocks", "statements", "api_metrics")
DEFAULT_DAYS = {"AUDIT": LEGAL_AUDIT_RETENTION_DAYS, "MONITORING": 30, "SESSION": 1, "BACKUP": None}
MB = 1024 * 1024


def _result(category: str, identified: int, deleted: int, size: int, days: float | None, status: str,
            details: str) -> dict[str, Any]:  # fmt: skip
    return {
        "category": category, "records_identified": identified, "records_deleted": deleted,
        "space_freed_mb": round(size / MB, 4), "retention_period_days": days if days is not None else 0,
        "status": status, "details": details,
    }  # fmt: skip


def _history(ports: Ports, category: str, streams: tuple[str, ...], days: float, tenant: str | None,
             dry_run: bool, note: str = "") -> dict[str, Any]:  # fmt: skip
    before = datetime.now(UTC) - timedelta(days=days)
    counts, total, size = [], 0, 0
    for stream in streams:
        n, b = ports.history.purge(stream, before, tenant_id=tenant, dry_run=dry_run)
        total, size = total + n, size + b
        if n:
            counts.append(f"{stream} {n}")
    details = f"records before {before.isoformat(timespec='seconds')}: " + (", ".join(counts) or "none")
    return _result(category, total, 0 if dry_run else total, size, days, "COMPLETED", details + note)


def _sessions(
    ports: Ports, caller: Principal, tenant: str | None, days: float, dry_run: bool
) -> dict[str, Any]:
    found, size, lines = 0, 0, []
    if caller.is_platform_admin and tenant is None:
        n, size = ports.rate_counter.sweep_expired(int(datetime.now(UTC).timestamp()), dry_run=dry_run)
        found += n
        lines.append(f"{n} expired rate-limit window(s)")
    idle = 0
    for target in servers.targets(ports, caller, None, tenant):
        with contextlib.suppress(EngineError, InvalidState):
            with ports.sql.session(target.target_id, statement_timeout_ms=5_000) as session:
                pids = [r[0] for r in session.fetch_all(q.PLATFORM_IDLE_SESSIONS, (days * 86400,))]
                if not dry_run:
                    for pid in pids:
                        session.execute(q.TERMINATE, (pid,))
                idle += len(pids)
    found += idle
    lines.append(f"{idle} platform session(s) idle longer than {days:g} day(s)")
    return _result("SESSION", found, 0 if dry_run else found, size, days, "COMPLETED", "; ".join(lines))


def _latest_fulls(ports: Ports, tenant: str | None) -> set[str]:
    """The newest completed full backup of each live resource: its restore point stays."""
    newest: dict[str, dict[str, Any]] = {}
    for record in ports.store.every(archive.records.KIND, tenant_id=tenant):
        if record["status"] != "completed" or record.get("logical") or record.get("type") != "full":
            continue
        best = newest.get(record["stanza"])
        if best is None or str(record.get("finished_at") or "") > str(best.get("finished_at") or ""):
            newest[record["stanza"]] = record
    return {
        r["id"] for r in newest.values() if ports.store.get(r["resource_kind"], r["parent_id"]) is not None
    }


def _backups(ports: Ports, tenant: str | None, days: float | None, dry_run: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    kept = _latest_fulls(ports, tenant)

    def past(record: dict[str, Any], at: datetime) -> bool:
        if record["id"] in kept or record.get("status") not in ("completed", "failed"):
            return False  # the restore point stays; a backup under way is nobody's to remove
        if days is None:
            return archive.records.expired(record, at)
        when = record.get("finished_at") or record.get("created_at")
        return (
            bool(when)
            and datetime.fromisoformat(str(when).replace("Z", "+00:00")) + timedelta(days=days) <= at
        )

    due = archive.records.expirable(ports, now, tenant_id=tenant, is_expired=past)
    size = sum(int(r.get("repo_size_bytes") or 0) for r in due)
    policy = (
        f"finished more than {days:g} day(s) ago" if days is not None else "past each backup's own retention"
    )
    if dry_run or not due:
        return _result("BACKUP", len(due), 0, size, days, "COMPLETED", f"{len(due)} backup(s) {policy}")
    lines = archive.records.expire_due(ports, now, tenant_id=tenant, is_expired=past)
    # one line per record forgotten ("expired backup ...", "expired logical backup ..."); the
    # backup tool's own lines ("expired <label> from stanza ...") say what it removed
    deleted = sum(1 for line in lines if line.startswith(("expired backup ", "expired logical backup ")))
    deleted += sum(
        int(m.group(1)) for line in lines if (m := re.search(r"; (\d+) backup record\(s\) removed", line))
    )
    status = "COMPLETED" if deleted >= len(due) else "FAILED"
    return _result("BACKUP", len(due), deleted, size, days, status, "; ".join(lines)[:2000])


def run(ports: Ports, caller: Principal, body: DataCleanupRequest) -> dict[str, Any]:
    tenant = tenant_scope(caller, body.tenant_id)
    if "AUDIT" in body.categories and not caller.can("audit:read"):
        raise Forbidden(
            "cleaning the audit trail needs audit:read as well (a tenant admin, the platform's admin)"
        )
    custom = body.custom_retention_policies or {}
    results = []
    for category in dict.fromkeys(body.categories):
        asked = custom.get(category)
        if category == "AUDIT":
            legal = max(LEGAL_AUDIT_RETENTION_DAYS, ports.settings.audit_retention_days)
            days = max(float(asked), legal) if asked is not None else float(legal)
            note = (
                f"; the requested {asked:g} day(s) is below the legal retention of {legal} days: {legal} kept"
                if asked is not None and asked < legal
                else ""
            )
            results.append(_history(ports, category, ("audit",), days, tenant, body.dry_run, note))
        elif category == "MONITORING":
            days = (
                float(asked) if asked is not None else float(monitoring.metric_retention_days(ports, tenant))
            )
            results.append(_history(ports, category, MONITORING_STREAMS, days, tenant, body.dry_run))
        elif category == "SESSION":
            days = float(asked) if asked is not None else idle_connection_days(ports, tenant)
            results.append(_sessions(ports, caller, tenant, days, body.dry_run))
        else:
            results.append(_backups(ports, tenant, float(asked) if asked is not None else None, body.dry_run))
    failed = any(r["status"] == "FAILED" for r in results)
    if not body.dry_run:
        ports.history.append_all([
            audit.action_event(
                action="maintenance.cleanup", resource="history", target_id=None, user_id=caller.sub,
                tenant_id=tenant or caller.tenant_id, succeeded=not failed,
                details={"categories": list(body.categories), "deleted": {r["category"]: r["records_deleted"] for r in results},
                         "retention_days": {r["category"]: r["retention_period_days"] for r in results}},
                retention_days=ports.settings.audit_retention_days,
            )
        ])  # fmt: skip
    return {
        "cleanup_id": new_id("mcl"),
        "status": "FAILED" if failed else ("DRY_RUN" if body.dry_run else "COMPLETED"),
        "results": results,
        "summary": {
            "dry_run": body.dry_run,
            "total_identified": sum(r["records_identified"] for r in results),
            "total_deleted": sum(r["records_deleted"] for r in results),
            "total_space_freed_mb": round(sum(r["space_freed_mb"] for r in results), 4),
        },
    }


def idle_connection_days(ports: Ports, tenant: str | None) -> float:
    """How long a platform session may stay idle before SESSION cleanup ends it: the tenant's
    `idleConnectionDays` (section MAINTENANCE of the system configuration), else 1 day."""
    default = float(DEFAULT_DAYS["SESSION"] or 1)
    return float(tenant_settings.value(ports, tenant, "maintenance", "idle_connection_days", default))


def for_task(ports: Ports, tenant_id: str) -> dict[str, Any]:
    """A CLEANUP task's run: monitoring history past its tenant's metric retention (30 days
    unless the tenant set less), of its tenant."""
    tenant = None if tenant_id == "*" else tenant_id
    days = float(monitoring.metric_retention_days(ports, tenant))
    result = _history(ports, "MONITORING", MONITORING_STREAMS, days, tenant, False)
    return {"status": "COMPLETED", "rows": result["records_deleted"], "details": result["details"]}
