"""Backups through both APIs: take one (now, on a schedule, or as a set of every resource of a
tenant), list them with the restorable window, and report status and progress.

Every backup is one record (see `backup_records`) and one Operation of type "backup.run"
whose resource is the backup record: taking the backup, then expiring what the stanza's
retention no longer needs.
"""

from __future__ import annotations

import math
import posixpath
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.core.leases import lease_kept
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains import archive, clusters, instances
from pgfleet.domains.backups.models import (
    BackupExecuteRequest,
    BackupExecuteResponse,
    BackupInfo,
    BackupListResponse,
    BackupStatusResponse,
    format_duration,
    parse_duration,
)
from pgfleet.ports.metadata import Range

RTYPES = {"instance": instances.INSTANCE, "cluster": clusters.CLUSTER}
ENUM = {"full": "FULL", "incremental": "INCREMENTAL", "differential": "DIFFERENTIAL"}
STATUS_003 = {"pending": "RUNNING", "running": "RUNNING", "completed": "COMPLETED", "failed": "FAILED"}
DEFAULT_ESTIMATE_S = 30.0
# Progress of a backup pgBackRest has finished but the record does not say so yet.
FINISHED_NOT_RECORDED = 99
# An operation this long without a heartbeat has lost its worker (backups beat every minute).
STALE_AFTER_S = 180.0


def kind_of(resource_id: str) -> str:
    return "cluster" if resource_id.startswith("pgc-") else "instance"


def visible_resource(ports: Ports, principal: Principal, kind: str, resource_id: str) -> dict[str, Any]:
    return resources.get_visible(ports, principal, RTYPES[kind], resource_id)


def resource_or_snapshot(
    ports: Ports, principal: Principal, kind: str, resource_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the live resource or None once deleted, what its backups recorded of it). A deleted
    resource is visible while a backup of it is kept; 404 otherwise."""
    record = ports.store.get(kind, resource_id)
    if record is not None:
        if not principal.sees_tenant(record["tenant_id"]):
            raise NotFound(f"{kind} {resource_id} not found")
        return record, archive.records.source_snapshot(record)
    kept = [r for r in archive.records.of_resource(ports, resource_id) if r["resource_kind"] == kind]
    if not kept or not principal.sees_tenant(kept[0]["tenant_id"]):
        raise NotFound(f"{kind} {resource_id} not found")
    return None, kept[-1]["source"]


# --- taking backups ----------------------------------------------------------------------------


def active_backup(ports: Ports, resource_id: str) -> dict[str, Any] | None:
    """The backup of the resource in progress. One whose operation ended or lost its worker
    is settled here: marked failed, or handed to the worker again."""
    for record in archive.records.of_resource(ports, resource_id):
        if record["status"] not in archive.records.ACTIVE or record["logical"]:
            continue
        op = ports.store.get(operations.KIND, record.get("operation_id") or "")
        if op is not None and op["status"] not in operations.TERMINAL:
            age = (datetime.now(UTC) - archive.records.parse_iso(op["updated_at"])).total_seconds()
            if operations.is_stale(op) and age > STALE_AFTER_S:
                operations.resume(ports, op["id"])
            return record
        if op is None and record.get("operation_id") is None:
            return record  # a backup step of a create or delete workflow: that operation owns it
        archive.records.mark_failed(ports, record["id"], "its operation ended without completing it")
    return None


def start_backup(
    ports: Ports,
    resource: dict[str, Any],
    backup_type: str,
    *,
    trigger: str,
    created_by: str | None,
    retention: timedelta | None = None,
    compression_level: int | None = None,
    tags: dict[str, str] | None = None,
    set_id: str | None = None,
) -> dict[str, Any]:
    """Record a backup of a running resource and hand it to the worker. InvalidState (409)
    when the resource is not running or a backup of it is in progress."""
    rtype = RTYPES[archive.records.resource_kind(resource)]
    resources.require_status(resource, rtype, "back up", ("running",))
    busy = active_backup(ports, resource["id"])
    if busy is not None:
        raise InvalidState(
            f"backup {busy['id']} of {resource['id']} is in progress", details={"backup_id": busy["id"]}
        )
    record = archive.records.new_record(
        resource,
        type=backup_type,
        trigger=trigger,
        retention=retention or archive.records.retention_for(ports, resource),
        created_by=created_by,
        compression_level=compression_level,
        tags=tags,
        set_id=set_id,
    )
    op = operations.new_operation("backup.run", record["id"], resource["tenant_id"])
    record["operation_id"] = op["id"]
    ports.store.create(archive.records.KIND, record)
    operations.submit(ports, op)
    return record


def request_backup(
    ports: Ports, principal: Principal, kind: str, resource_id: str, backup_type: str
) -> dict[str, Any]:
    """POST /api/v1/postgres/{single|cluster}/{id}/backup."""
    resource = visible_resource(ports, principal, kind, resource_id)
    record = start_backup(ports, resource, backup_type, trigger="api", created_by=principal.sub)
    return {
        "backup_id": record["id"],
        "operation_id": record["operation_id"],
        "resource_id": resource_id,
        "type": record["type"],
        "status": record["status"],
    }


def _run_step(ctx: StepContext) -> str:
    with lease_kept(ctx):
        return archive.records.run(ctx.ports, ctx.resource_id)


def _expire_step(ctx: StepContext) -> str:
    record = archive.records.get(ctx.ports, ctx.resource_id)
    lines = archive.records.expire_due(ctx.ports, stanza=record["stanza"])
    return "; ".join(lines) if lines else "no backup of the stanza is past its retention"


def _backup_failed(ctx: StepContext, error: str) -> None:
    archive.records.mark_failed(ctx.ports, ctx.resource_id, error)


# --- the infrastructure API (snake_case) ---------------------------------------------------------


def summary_view(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "backup_id": record["id"],
        "timestamp": record["finished_at"] or record["started_at"] or record["created_at"],
        "size_mb": round(record["size_bytes"] / (1024 * 1024), 2),
        "type": record["type"],
        "status": record["status"],
    }


def list_for_resource(ports: Ports, principal: Principal, kind: str, resource_id: str) -> dict[str, Any]:
    """GET .../{id}/backups: physical backups oldest first, and the restorable window."""
    _, snapshot = resource_or_snapshot(ports, principal, kind, resource_id)
    records = [
        r
        for r in archive.records.of_resource(ports, resource_id)
        if not r["logical"] and r["resource_kind"] == kind
    ]
    records.sort(key=lambda r: r["created_at"])
    stanza = records[0]["stanza"] if records else archive.service.stanza_of(snapshot)
    try:
        window = ports.backup_engine.restorable_window(stanza)
    except EngineError:
        window = None
    return {
        "backups": [summary_view(r) for r in records],
        "earliest_restorable_time": archive.records.iso(window.earliest) if window else None,
        "latest_restorable_time": archive.records.iso(window.latest) if window else None,
    }


# --- the production-readiness API (camelCase) ------------------------------------------------------


def estimate_seconds(ports: Ports, resource_id: str, backup_type: str) -> float:
    """How long the resource's last backup of that type took (a default without one)."""
    done = [
        r
        for r in archive.records.of_resource(ports, resource_id)
        if r["status"] == "completed" and not r["logical"] and r["type"] == backup_type and r["started_at"]
    ]
    if not done:
        return DEFAULT_ESTIMATE_S
    last = max(done, key=lambda r: r["finished_at"])
    took = archive.records.parse_iso(last["finished_at"]) - archive.records.parse_iso(last["started_at"])
    return max(took.total_seconds(), 1.0)


def execute(ports: Ports, principal: Principal, body: BackupExecuteRequest) -> BackupExecuteResponse:
    """POST /api/v1/backup/execute: one resource (targetId) or every running resource of the
    tenant (of every tenant for a platform admin without tenantId) as one backup set."""
    tenant = tenant_scope(principal, body.tenantId)
    backup_type = body.backupType.lower()
    retention = parse_duration(body.retentionPeriod) if body.retentionPeriod else None
    options: dict[str, Any] = {
        "trigger": "api",
        "created_by": principal.sub,
        "retention": retention,
        "compression_level": body.compressionLevel,
        "tags": body.tags,
    }
    if body.targetId:
        kind = kind_of(body.targetId)
        resource = visible_resource(ports, principal, kind, body.targetId)
        if tenant is not None and resource["tenant_id"] != tenant:
            raise NotFound(f"{kind} {body.targetId} not found in tenant {tenant}")
        record = start_backup(ports, resource, backup_type, **options)
        estimate = estimate_seconds(ports, resource["id"], backup_type)
        return BackupExecuteResponse(
            backup_id=record["id"],
            status="INITIATED",
            estimated_duration=format_duration(estimate),
            backup_location=ports.backup_engine.location(record["stanza"]),
            message=f"{ENUM[backup_type]} backup of {kind} {resource['id']} ({resource['name']}) initiated",
        )
    return _execute_set(ports, principal, tenant, backup_type, options)


def _execute_set(
    ports: Ports, principal: Principal, tenant: str | None, backup_type: str, options: dict[str, Any]
) -> BackupExecuteResponse:
    set_id = new_id("bks")
    candidates = [
        r
        for kind in RTYPES
        for r in archive.records.every(ports, kind, **({"tenant_id": tenant} if tenant else {}))
    ]
    members, skipped = [], []
    for resource in candidates:
        try:
            members.append(start_backup(ports, resource, backup_type, set_id=set_id, **options))
        except InvalidState as exc:
            skipped.append(f"{resource['id']}: {exc.message}")
    if not members:
        raise InvalidState(
            "nothing to back up: no running instance or cluster" + (f" in tenant {tenant}" if tenant else ""),
            details={"skipped": skipped},
        )
    ports.store.create(
        archive.records.SET_KIND,
        {
            "id": set_id,
            "tenant_id": tenant or principal.tenant_id,
            "scope": tenant or "*",
            "members": [m["id"] for m in members],
            "skipped": skipped,
            "type": backup_type,
            "tags": dict(options.get("tags") or {}),
            "created_at": utcnow_iso(),
            "created_by": principal.sub,
        },
    )
    estimate = max(estimate_seconds(ports, m["parent_id"], backup_type) for m in members)
    location = posixpath.dirname(ports.backup_engine.location(members[0]["stanza"]))
    message = f"backup set of {len(members)} resource(s) initiated" + (
        f"; skipped {len(skipped)}: {'; '.join(skipped)}" if skipped else ""
    )
    return BackupExecuteResponse(
        backup_id=set_id,
        status="INITIATED",
        estimated_duration=format_duration(estimate),
        backup_location=location,
        message=message,
    )


def visible_backup(ports: Ports, principal: Principal, backup_id: str) -> dict[str, Any]:
    record = ports.store.get(archive.records.KIND, backup_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"backup {backup_id} not found")
    return record


def _progress(ports: Ports, record: dict[str, Any]) -> int:
    """0-100, never lower than the worker has seen (pgBackRest's own figure only exists
    while its backup lock is held)."""
    if record["status"] == "completed":
        return 100
    if record["status"] != "running":
        return 0
    seen = archive.records.recorded_progress(ports, record["id"])
    try:
        live = ports.backup_engine.backup_progress(record["stanza"])
        if live is None and "labels_before" in record:
            # Nothing runs: either it has not begun, or it has finished and is being recorded.
            before = set(record["labels_before"])
            if any(b.backup_id not in before for b in ports.backup_engine.list_backups(record["stanza"])):
                live = FINISHED_NOT_RECORDED
    except EngineError:
        live = None
    if live is not None and live > seen:
        archive.records.save_progress(ports, record, live)  # a high-water mark for every reader
    return max(seen, live or 0)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((archive.records.parse_iso(end) - archive.records.parse_iso(start)).total_seconds(), 3)


def status(ports: Ports, principal: Principal, backup_id: str) -> BackupStatusResponse:
    """GET /api/v1/backup/status/{backupId}: a backup, or a backup set (aggregated)."""
    if backup_id.startswith("bks-"):
        return _set_status(ports, principal, backup_id)
    record = visible_backup(ports, principal, backup_id)
    start = record["started_at"] or record["created_at"]
    end = record["finished_at"] if record["status"] in ("completed", "failed") else None
    return BackupStatusResponse.model_validate(
        {
            "backup_id": record["id"],
            "status": STATUS_003[record["status"]],
            "progress": _progress(ports, record),
            "start_time": start,
            "end_time": end,
            "duration": _seconds_between(start, end),
            "backup_size": record["repo_size_bytes"] if record["status"] == "completed" else None,
            "error_message": record.get("error"),
            "verification_status": record.get("verification_status") or "PENDING",
        }
    )


def _set_status(ports: Ports, principal: Principal, set_id: str) -> BackupStatusResponse:
    backup_set = ports.store.get(archive.records.SET_KIND, set_id)
    if backup_set is None or not principal.sees_tenant(backup_set["tenant_id"]):
        raise NotFound(f"backup {set_id} not found")
    members = [m for m in (ports.store.get(archive.records.KIND, i) for i in backup_set["members"]) if m]
    states = [status(ports, principal, m["id"]) for m in members]
    if not states:
        raise NotFound(f"backup {set_id} has no backup left (expired)")
    running = any(s.status == "RUNNING" for s in states)
    failed = [s for s in states if s.status == "FAILED"]
    verifications = {s.verification_status for s in states}
    start = min(s.start_time for s in states)
    end = None if running else max(s.end_time or s.start_time for s in states)
    return BackupStatusResponse(
        backup_id=set_id,
        status="RUNNING" if running else "FAILED" if failed else "COMPLETED",
        progress=math.floor(sum(s.progress for s in states) / len(states)),
        start_time=start,
        end_time=end,
        duration=_seconds_between(start, end),
        backup_size=sum(s.backup_size or 0 for s in states) if not running else None,
        error_message="; ".join(f"{s.backup_id}: {s.error_message}" for s in failed) or None,
        verification_status="FAILED"
        if "FAILED" in verifications
        else "VERIFIED"
        if verifications == {"VERIFIED"}
        else "PENDING",
    )


def info_view(record: dict[str, Any]) -> BackupInfo:
    tags = dict(record.get("tags") or {})
    tags.setdefault("resourceId", record["parent_id"])
    if record.get("set_id"):
        tags.setdefault("backupSetId", record["set_id"])
    if record["logical"]:
        tags.update({"logical": "true", "database": str(record.get("database"))})
    return BackupInfo(
        backup_id=record["id"],
        backup_type=ENUM.get(record["type"], record["type"].upper()),
        status=STATUS_003[record["status"]],
        start_time=record["started_at"] or record["created_at"],
        end_time=record["finished_at"],
        backup_size=record["repo_size_bytes"],
        retention_expiry=record["retention_expiry"],
        verification_status=record.get("verification_status") or "PENDING",
        tags=tags,
    )


def list_backups(
    ports: Ports,
    principal: Principal,
    *,
    tenant_id: str | None,
    backup_type: str | None,
    status_filter: str | None,
    start: datetime | None,
    end: datetime | None,
    query: PageQuery,
) -> BackupListResponse:
    """GET /api/v1/backup/list: newest first (by when each backup was requested), filtered
    and paged in the store. startDate / endDate bound when a backup was requested."""
    tenant = tenant_scope(principal, tenant_id)
    filters: dict[str, Any] = {}
    if backup_type is not None:
        filters["type"] = backup_type.lower()
    if status_filter is not None:
        filters["status"] = [mine for mine, theirs in STATUS_003.items() if theirs == status_filter]
    if start is not None or end is not None:
        filters["created_at"] = Range(
            archive.records.iso(_aware(start)) if start else None,
            archive.records.iso(_aware(end)) if end else None,
        )
    records, total = ports.store.page(
        archive.records.KIND, tenant_id=tenant, filters=filters, page=query.page, page_size=query.page_size
    )
    page = Page.of([info_view(r) for r in records], total, query)
    return BackupListResponse(backups=page.items, pagination=page.pagination)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# --- schedules -------------------------------------------------------------------------------------


def get_schedule(ports: Ports, principal: Principal, kind: str, resource_id: str) -> dict[str, Any]:
    return archive.schedules.get(ports, visible_resource(ports, principal, kind, resource_id))


def put_schedule(
    ports: Ports, principal: Principal, kind: str, resource_id: str, body: Any
) -> dict[str, Any]:
    return archive.schedules.put(ports, visible_resource(ports, principal, kind, resource_id), body)


def run_scheduled(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The scheduled task "backup": a resource's scheduled backup, or expiry of every stanza."""
    if detail.get("action") == "expire":
        return archive.records.expire_due(ports)
    resource_id = str(detail.get("resource_id") or "")
    kind = str(detail.get("resource_kind") or kind_of(resource_id))
    resource = ports.store.get(kind, resource_id)
    if resource is None:
        return [f"{resource_id}: gone; {archive.schedules.remove(ports, resource_id)}"]
    backup_type = str(detail.get("type") or "full")
    try:
        record = start_backup(ports, resource, backup_type, trigger="schedule", created_by="scheduler")
    except InvalidState as exc:
        return [f"{resource_id}: scheduled {backup_type} backup skipped: {exc.message}"]
    return [
        f"{resource_id}: scheduled {backup_type} backup {record['id']} (operation {record['operation_id']})"
    ]


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow("backup.run", (("backup", _run_step), ("expire", _expire_step)), _backup_failed),
)
