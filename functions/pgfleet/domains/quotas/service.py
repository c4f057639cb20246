"""Quotas of instances and clusters, and of their tenants, enforced every minute.

The quota document of a resource (PUT/GET .../quota, kind "quota", id = the resource id)
holds the limits a user set, the last measurement, and whether writes are suspended. The
"quotas" scheduled task (`run`, every minute) measures every running resource and:

- suspends the writes of the application user and of every tenant while the databases are
  over `max_storage_mb` or the data directory is over the resource's storage (GB), and
  restores them once usage is back under;
- suspends one tenant's writes while its database or schema is over its own `max_storage_mb`;
- keeps the application user's CONNECTION LIMIT at `max_connections`;
- opens and resolves alerts as usage crosses `alert_thresholds`;
- pauses the resource (scale to zero) after `auto_pause_after_minutes` without client sessions.

Suspensions are made by the database itself (see `pgfleet.ports.database_admin`): a tenant
cannot undo them from its session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgfleet.core import resources
from pgfleet.core.auth import ALL, Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import monitoring, servers, tenants
from pgfleet.domains.monitoring import AlertAction, Condition
from pgfleet.domains.quotas.models import AlertThresholds, QuotaUpdate
from pgfleet.domains.servers import MB, Server
from pgfleet.ports.database_admin import ServerUsage, TenantUsage
from pgfleet.ports.scheduler import Schedule

KIND = "quota"
SCHEDULE = Schedule(name="pgfleet-quotas", expression="rate(1 minute)", payload={"task": "quotas"})
SCHEDULER = "pgfleet-quotas"  # who suspends, restores and pauses, in status reasons


def _default(server: Server) -> dict[str, Any]:
    now = utcnow_iso()
    return {
        "id": server.id, "tenant_id": server.record["tenant_id"], "parent_id": server.id,
        "resource_type": server.kind, "max_storage_mb": None, "max_connections": None,
        "alert_thresholds": AlertThresholds().model_dump(), "auto_pause_after_minutes": None,
        "usage": None, "writes_suspended": False, "status_reason": "", "created_at": now, "updated_at": now,
    }  # fmt: skip


def _stored(ports: Ports, server: Server) -> dict[str, Any]:
    """The quota record of a resource, created with no limits the first time it is needed."""
    record = ports.store.get(KIND, server.id)
    if record is None:
        record = ports.store.create(KIND, _default(server))
    return record


def view(server: Server, record: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_storage_mb", "max_connections", "alert_thresholds", "auto_pause_after_minutes", "usage",
            "writes_suspended", "status_reason", "updated_at")  # fmt: skip
    return {
        "resource_id": server.id,
        "resource_type": server.kind,
        "storage_limit_mb": int(server.record["storage"]) * 1024,
        **{k: record.get(k) for k in keys},
    }


def get(ports: Ports, principal: Principal, kind: str, resource_id: str) -> dict[str, Any]:
    server = servers.get_visible(ports, principal, kind, resource_id)
    return view(server, ports.store.get(KIND, server.id) or _default(server))


def put(ports: Ports, principal: Principal, kind: str, resource_id: str, body: QuotaUpdate) -> dict[str, Any]:
    """Replace the quota document and, when the resource runs, enforce it at once."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    if server.record["status"] == "deleting":
        raise InvalidState(f"{kind} {resource_id} is being deleted")
    record = _stored(ports, server)
    record = ports.store.update(
        KIND,
        server.id,
        {**body.model_dump(), "updated_at": utcnow_iso(), "updated_by": principal.sub},
        record["revision"],
    )
    if server.record["status"] == "running":
        try:
            evaluate(ports, server)
        except PgfleetError as exc:
            # The document is saved; the minute task enforces it once the server answers.
            ports.store.update(KIND, server.id, {"status_reason": f"not enforced yet: {exc}"})
        record = ports.store.get(KIND, server.id) or record
    return view(server, record)


# --- evaluation ------------------------------------------------------------------------------


def run(ports: Ports, detail: dict[str, Any] | None = None) -> list[str]:
    """The scheduled task: evaluate every running instance and cluster, then forget the
    quotas, tenants and alerts of resources that were deleted."""
    lines: list[str] = []
    existing = set()
    for server in servers.all_servers(ports):
        existing.add(server.id)
        if server.record["status"] != "running":
            continue
        try:
            lines += evaluate(ports, server)
        except PgfleetError as exc:
            lines.append(f"{server.id}: quota check failed: {exc}")
    return lines + _forget_deleted(ports, existing)


# Records younger than this are never swept: their resource may be newer than the listing.
SWEEP_AFTER_SECONDS = 300


def _forget_deleted(ports: Ports, existing: set[str]) -> list[str]:
    """A deleted instance or cluster took its tenants' data with it: drop their records and
    password secrets, its quota document, and resolve its open alerts."""
    now = datetime.now(UTC)
    lines = []
    for kind in (KIND, tenants.KIND):
        token = None
        while True:
            page, token = ports.store.list(kind, limit=100, next_token=token)
            for record in page:
                parent = record["parent_id"]
                if (
                    parent in existing
                    or (now - _parse(record["created_at"])).total_seconds() < SWEEP_AFTER_SECONDS
                ):
                    continue
                if kind == tenants.KIND:
                    tenants.forget(ports, record)
                    lines.append(f"{parent}: deleted; forgot its tenant {record['name']}")
                else:
                    resolved = monitoring.resolve_all_for(ports, parent, f"{record['resource_type']} deleted")
                    ports.store.delete(KIND, record["id"])
                    lines.append(f"{parent}: deleted; forgot its quotas, resolved {resolved} alert(s)")
            if not token:
                break
    return lines


def evaluate(ports: Ports, server: Server) -> list[str]:
    """Measure one running resource and enforce its quotas and its tenants'. Returns a line for
    every change (suspended, restored, alert raised or resolved, paused). Idempotent."""
    quota = _stored(ports, server)
    admin = servers.admin(ports, server)
    if quota.get("writes_suspended"):
        # Rows deleted while suspended only give space back once vacuumed.
        admin.reclaim_space(server.record["database"])
    usage = admin.server_usage()
    lines: list[str] = []
    over = _over_limits(server, quota, usage)
    changes: dict[str, Any] = {
        "usage": {
            "storage_mb": round(usage.databases_bytes / MB, 2),
            "data_directory_mb": round(usage.data_directory_bytes / MB, 2),
            "connections": usage.client_connections,
            "measured_at": utcnow_iso(),
        },
    }
    database, username = server.record["database"], server.record["username"]
    if quota.get("applied_max_connections", "unset") != quota["max_connections"]:
        lines.append(f"{server.id}: {admin.set_role_connection_limit(username, quota['max_connections'])}")
        changes["applied_max_connections"] = quota["max_connections"]
    outcome = admin.set_owner_writes(database, username, allowed=not over)
    if bool(over) != bool(quota.get("writes_suspended")):
        why = "; ".join(over) if over else "usage is back under its limits"
        changes["writes_suspended"] = bool(over)
        changes["status_reason"] = f"{SCHEDULER} at {utcnow_iso()}: {outcome}: {why}"
        lines.append(f"{server.id}: {outcome} ({why})")
    lines += _enforce_tenants(ports, server, admin, over)
    for condition in _conditions(server, quota, usage):
        line = monitoring.observe(ports, owner_tenant=server.record["tenant_id"], resource_id=server.id,
                              resource_type=server.kind, condition=condition)  # fmt: skip
        if line:
            lines.append(line)
    idle_minutes = _idle_minutes(quota, server, usage, changes)
    # Persisted first: a pause that cannot begin now must not lose this minute's measurement.
    ports.store.update(KIND, server.id, changes)
    if idle_minutes is not None:
        lines.append(_auto_pause(ports, server, quota, idle_minutes))
    return lines


def _over_limits(server: Server, quota: dict[str, Any], usage: ServerUsage) -> list[str]:
    """Why the resource's writes must be suspended (empty: they must not)."""
    reasons = []
    storage_mb = usage.databases_bytes / MB
    if quota["max_storage_mb"] is not None and storage_mb > quota["max_storage_mb"]:
        reasons.append(f"storage {storage_mb:.1f} MB is over the quota of {quota['max_storage_mb']} MB")
    limit_mb = int(server.record["storage"]) * 1024
    if usage.data_directory_bytes / MB > limit_mb:
        reasons.append(
            f"data directory {usage.data_directory_bytes / MB:.1f} MB is over the storage of {server.record['storage']} GB"
        )
    return reasons


def _enforce_tenants(ports: Ports, server: Server, admin: Any, server_over: list[str]) -> list[str]:
    records = [r for r in tenants.of_server(ports, server.id) if r["status"] == tenants.ACTIVE]
    if not records:
        return []
    for record in records:
        if record.get("writes_suspended"):
            # Rows the tenant deleted only give space back once vacuumed.
            admin.reclaim_space(record["database_name"], record.get("schema_name"))
    measured = admin.tenant_usage([tenants.spec(r) for r in records])
    lines = []
    for record in records:
        usage: TenantUsage = measured[record["name"]]
        limit = record["quota"].get("max_storage_mb")
        reasons = list(server_over)
        if limit is not None and usage.storage_bytes / MB > limit:
            reasons.insert(
                0, f"tenant storage {usage.storage_bytes / MB:.1f} MB is over its quota of {limit} MB"
            )
        outcome = admin.set_tenant_writes(tenants.spec(record), allowed=not reasons)
        changes: dict[str, Any] = {"quota_used": tenants.usage_view(usage)}
        if bool(reasons) != bool(record.get("writes_suspended")):
            why = "; ".join(reasons) if reasons else "usage is back under its quota"
            changes.update(
                writes_suspended=bool(reasons),
                status_reason=f"{SCHEDULER} at {utcnow_iso()}: {outcome}: {why}",
            )
            lines.append(f"{server.id}: tenant {record['name']}: {outcome} ({why})")
        ports.store.update(tenants.KIND, record["id"], changes)
        condition = Condition(
            name=f"TenantStorageQuotaExceeded:{record['name']}",
            firing=limit is not None and usage.storage_bytes / MB > limit,
            severity="HIGH",
            category="quota",
            description=f"tenant {record['name']} uses {usage.storage_bytes / MB:.1f} MB of its {limit} MB: "
            "its inserts and updates are refused until it frees space",
            metric_value=round(usage.storage_bytes / MB, 2),
            threshold=float(limit or 0),
            actions=[
                AlertAction(
                    action_type="FREE_SPACE", description="DELETE or TRUNCATE rows as the tenant's user"
                )
            ],
        )
        line = monitoring.observe(ports, owner_tenant=server.record["tenant_id"], resource_id=server.id,
                              resource_type=server.kind, condition=condition)  # fmt: skip
        if line:
            lines.append(line)
    return lines


def _conditions(server: Server, quota: dict[str, Any], usage: ServerUsage) -> list[Condition]:
    """The resource's alert conditions, firing or not."""
    thresholds = quota.get("alert_thresholds") or AlertThresholds().model_dump()
    base = f"/api/v1/postgres/{'cluster' if server.kind == 'cluster' else 'single'}/{server.id}"
    raise_quota = AlertAction(
        action_type="RAISE_QUOTA", description="Raise the quota", method="PUT", path=f"{base}/quota"
    )
    resize = AlertAction(
        action_type="RESIZE",
        description="Give the resource more storage",
        method="POST",
        path=f"{base}/resize",
    )
    storage_mb = round(usage.databases_bytes / MB, 2)
    max_storage = quota["max_storage_mb"]
    storage_pct = 100 * storage_mb / max_storage if max_storage else 0.0
    data_mb = round(usage.data_directory_bytes / MB, 2)
    limit_mb = int(server.record["storage"]) * 1024
    app_sessions = usage.connections_by_role.get(server.record["username"], 0)
    max_conn = quota["max_connections"]
    conn_pct = 100 * app_sessions / max_conn if max_conn else 0.0
    return [
        Condition(
            "StorageQuotaWarning", bool(max_storage) and thresholds["storage_percent"] <= storage_pct <= 100,
            "MEDIUM", "capacity",
            f"storage {storage_mb} MB is {storage_pct:.0f}% of the {max_storage} MB quota "
            f"(threshold {thresholds['storage_percent']}%)",
            storage_pct, float(thresholds["storage_percent"]), [raise_quota],
        ),
        Condition(
            "StorageQuotaExceeded", bool(max_storage) and storage_pct > 100, "HIGH", "quota",
            f"storage {storage_mb} MB is over the {max_storage} MB quota: writes are suspended",
            storage_mb, float(max_storage or 0), [raise_quota],
        ),
        Condition(
            "StorageLimitExceeded", data_mb > limit_mb, "CRITICAL", "capacity",
            f"data directory {data_mb} MB is over the storage of {server.record['storage']} GB: writes are suspended",
            data_mb, float(limit_mb), [resize],
        ),
        Condition(
            "ConnectionQuotaWarning", bool(max_conn) and conn_pct >= thresholds["connections_percent"],
            "MEDIUM", "capacity",
            f"{app_sessions} sessions of {server.record['username']} are {conn_pct:.0f}% of max_connections "
            f"{max_conn} (threshold {thresholds['connections_percent']}%)",
            float(app_sessions), float(thresholds["connections_percent"]), [raise_quota],
        ),
    ]  # fmt: skip


def _idle_minutes(
    quota: dict[str, Any], server: Server, usage: ServerUsage, changes: dict[str, Any]
) -> float | None:
    """Minutes without any client session when that calls for an auto-pause, else None.
    Records when a session was last seen."""
    if usage.client_connections > 0:
        changes["last_client_seen_at"] = utcnow_iso()
        return None
    minutes = quota.get("auto_pause_after_minutes")
    if not minutes:
        return None
    # Idle since the last session seen, or since the resource or its quota last changed (it
    # resumed, say): never earlier than the user could expect.
    marks = [quota.get("last_client_seen_at"), server.record.get("updated_at"), quota.get("updated_at")]
    idle = (datetime.now(UTC) - max(_parse(m) for m in marks if m)).total_seconds() / 60
    return idle if idle >= minutes else None


def _auto_pause(ports: Ports, server: Server, quota: dict[str, Any], idle_minutes: float) -> str:
    """Scale to zero: begin pausing a resource nobody has used for `auto_pause_after_minutes`."""
    busy = [r["name"] for r in tenants.of_server(ports, server.id) if r["status"] == "deleting"]
    if busy:
        return f"{server.id}: idle, but not pausing while tenant(s) {', '.join(busy)} are being deleted"
    system = Principal(
        sub=SCHEDULER, tenant_id=server.record["tenant_id"], roles=("admin",), permissions=frozenset({ALL})
    )
    transition = server.rtype.transitions["pause"]
    resources.begin(
        ports, system, server.rtype, server.record, action=f"auto-pause after {idle_minutes:.0f} idle minute(s)",
        transitional=transition.transitional, workflow=transition.workflow, desired_state=transition.desired_state,
    )  # fmt: skip
    minutes = quota["auto_pause_after_minutes"]
    return f"{server.id}: no client session for {idle_minutes:.0f} minute(s) (auto_pause_after_minutes={minutes}); pausing"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
