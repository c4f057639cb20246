"""Restores and recoveries: what both APIs ask for, validated and planned, recorded as one
recovery record (kind "recovery") and run as one Operation (see `workflows`).

Modes:
- new_instance: a new instance (or cluster) of the source's owner, from a backup of the
  source, archiving into its own new stanza. The source may be gone (a final backup).
- overwrite (IN_PLACE): the source's data replaced in place; its stanza continues on a new
  timeline. A failure before the restored server is committed puts the old data back.
- selective: one tenant's database (or schema) of the source comes back from a physical
  backup through a scratch server, or from a tenant's logical backup; nothing else changes.

Targets: the end of a backup, the latest archived moment, or exactly a given time.

The recovery record is snake_case throughout: its `plan` is a `RecoveryPlan` record, its
`integrity` a list of `IntegrityCheckResult` records (see `stored_integrity`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains import archive, clusters, instances
from pgfleet.domains.backups import service as backups
from pgfleet.domains.backups.models import (
    IntegrityCheckResult,
    RecoveryInitiateRequest,
    RecoveryInitiateResponse,
    RecoveryPlan,
    RecoveryStatusResponse,
    RecoveryStep,
    RestoreRequest,
    format_duration,
)
from pgfleet.domains.clusters import ClusterCreate
from pgfleet.domains.instances import InstanceCreate
from pgfleet.domains.tenants import tenant_stem

KIND = "recovery"
ONE_SECOND = timedelta(seconds=1)
# Clocks of the control plane and the servers may differ a little.
CLOCK_SKEW = timedelta(seconds=5)
RESTORE_BYTES_PER_SECOND = 150e6
OP_STATUS = {"pending": "INITIATED", "running": "RUNNING", "succeeded": "COMPLETED", "failed": "FAILED"}
RESTORABLE = ("running", "stopped", "failed")

WORKFLOWS = {
    ("instance", "new_instance"): "instance.restore",
    ("instance", "overwrite"): "instance.restore_in_place",
    ("cluster", "new_instance"): "cluster.restore",
    ("cluster", "overwrite"): "cluster.restore_in_place",
    ("instance", "selective"): "backup.restore_selective",
    ("cluster", "selective"): "backup.restore_selective",
    ("instance", "logical"): "backup.restore_logical",
    ("cluster", "logical"): "backup.restore_logical",
}

STEP_DESCRIPTIONS: dict[str, tuple[str, float]] = {
    "configure_archiving": ("Create the new resource's stanza passphrase and archive settings", 1),
    "flush_wal": ("Archive the WAL committed so far, so the latest moment is restorable", 2),
    "stop": ("Stop the server (it must not run during the restore)", 2),
    "stop_nodes": ("Stop every node, replicas first", 5),
    "restore_files": ("Set the current data directory aside and lay out the backup with pgBackRest", 0),
    "recover": ("Replay archived WAL to the target alone on a private socket, promote, shut down", 5),
    "reset_cluster_state": ("Make Patroni forget the old leader so the restored node can lead", 1),
    "provision": ("Write the server's configuration (port, tuning, archiving into its stanza)", 1),
    "start": ("Start the server and wait until it accepts connections", 2),
    "start_leader": ("Start the restored node under Patroni and wait until it leads", 10),
    "start_nodes": ("Start the other nodes; Patroni re-clones the replicas from the restored leader", 10),
    "wait_healthy": ("Wait for a writable primary and streaming replicas", 10),
    "verify_archiving": ("Check that WAL of the new timeline reaches the stanza", 2),
    "commit": ("Delete the data directory that was set aside", 1),
    "create_database": ("Give the application role the new resource's password", 1),
    "create_stanza": ("Create the new resource's stanza", 2),
    "initial_backup": ("Take a first full backup into the new stanza", 0),
    "mark_running": ("Mark the resource running", 1),
    "backup": ("Take a full backup, the start of the new timeline's restorable window", 0),
    "prepare_scratch": ("Prepare an empty scratch server", 1),
    "restore_scratch": ("Lay out the backup in the scratch server", 0),
    "start_scratch": ("Replay WAL to the target in the scratch server and promote it", 5),
    "dump_database": ("Dump the tenant's database (or schema) from the scratch server, encrypted", 5),
    "remove_scratch": ("Stop and delete the scratch server", 1),
    "restore_database": ("Rename the current database aside, restore the dump, drop the old one", 5),
    "delete_dump": ("Delete the temporary dump", 1),
    "finish": ("Record the integrity checks and the outcome", 1),
}


@dataclass(frozen=True)
class RestorePlan:
    """A validated restore: what, from which backup, to which moment, how."""

    source_kind: str
    source_id: str
    source: dict[str, Any] | None  # the live resource, None once deleted
    snapshot: dict[str, Any]
    backup: dict[str, Any]
    mode: str  # new_instance | overwrite | selective | logical
    to: str  # "end" (of the backup) | "latest" | "time"
    target_time: datetime | None
    recovery_type: str
    name: str | None = None
    database: str | None = None
    schema: str | None = None
    owner: str | None = None
    tenant: str | None = None

    @property
    def workflow(self) -> str:
        return WORKFLOWS[(self.source_kind, self.mode)]


# --- validation -----------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _physical_backups(ports: Ports, resource_id: str) -> list[dict[str, Any]]:
    done = [
        r
        for r in archive.records.of_resource(ports, resource_id)
        if r["status"] == "completed" and not r["logical"]
    ]
    return sorted(done, key=lambda r: r["finished_at"])


def _not_restorable(backup: dict[str, Any]) -> InvalidState:
    """409 for a backup that has not completed, naming the operation that takes it."""
    if backup["status"] in archive.records.ACTIVE:
        return InvalidState(
            f"backup {backup['id']} is {backup['status']} (operation {backup.get('operation_id')}): not "
            "restorable until it completes",
            details={"backup_id": backup["id"], "operation_id": backup.get("operation_id")},
        )
    return InvalidState(f"backup {backup['id']} is {backup['status']}, not restorable")


def _choose_backup(
    ports: Ports, kind: str, resource_id: str, backup_id: str | None, target: datetime | None
) -> dict[str, Any]:
    backups_done = _physical_backups(ports, resource_id)
    if backup_id is not None:
        record = next((r for r in backups_done if r["id"] == backup_id), None)
        if record is None:
            other = ports.store.get(archive.records.KIND, backup_id)
            if other is not None and other["parent_id"] == resource_id:
                raise _not_restorable(other)
            raise NotFound(f"backup {backup_id} of {resource_id} not found")
        if target is not None and target < archive.records.parse_iso(record["finished_at"]) + ONE_SECOND:
            raise ValidationFailed(
                f"pitr_target is before backup {backup_id} became consistent",
                details={"field": "pitr_target", "earliest": archive.records.iso(
                    archive.records.parse_iso(record["finished_at"]) + ONE_SECOND)},
            )  # fmt: skip
        return record
    if not backups_done:
        # The restorable window starts at the first backup: say where that backup is.
        reason, details = archive.lifecycle.not_restorable_reason(ports, kind, resource_id)
        raise InvalidState(reason, details=details)
    if target is None:
        return backups_done[-1]
    before = [r for r in backups_done if archive.records.parse_iso(r["finished_at"]) + ONE_SECOND <= target]
    if not before:
        raise ValidationFailed(
            "pitr_target is before the earliest restorable time",
            details={"field": "pitr_target", "earliest": archive.records.iso(
                archive.records.parse_iso(backups_done[0]["finished_at"]) + ONE_SECOND)},
        )  # fmt: skip
    return before[-1]


def _check_target(ports: Ports, stanza: str, target: datetime, source_running: bool) -> None:
    """A target inside the restorable window; up to now while the source runs (its WAL is
    archived up to the moment the restore starts, see `workflows`)."""
    if target > datetime.now(UTC) + CLOCK_SKEW:
        raise ValidationFailed("pitr_target is in the future", details={"field": "pitr_target"})
    try:
        window = ports.backup_engine.restorable_window(stanza)
    except EngineError:
        window = None
    if window is None:
        return
    if target < window.earliest:
        raise ValidationFailed(
            "pitr_target is before the earliest restorable time",
            details={"field": "pitr_target", "earliest": archive.records.iso(window.earliest)},
        )
    if target > window.latest and not source_running:
        raise ValidationFailed(
            "pitr_target is after the latest restorable time (the source is not running: nothing later is "
            "archived)",
            details={"field": "pitr_target", "latest": archive.records.iso(window.latest)},
        )


def plan(
    ports: Ports,
    principal: Principal,
    kind: str,
    resource_id: str,
    *,
    backup_id: str | None,
    target_time: datetime | None,
    mode: str,
    recovery_type: str,
    name: str | None = None,
    tenant: str | None = None,
) -> RestorePlan:
    """Validate a restore request and decide its backup and target. Raises NotFound (404),
    InvalidState (409) or ValidationFailed (422); changes nothing."""
    source, snapshot = backups.resource_or_snapshot(ports, principal, kind, resource_id)
    if mode in ("overwrite", "selective", "logical"):
        if source is None:
            raise NotFound(f"{kind} {resource_id} no longer exists: restore it into a new {kind}")
        resources.require_status(source, backups.RTYPES[kind], "restore", RESTORABLE)
        if mode in ("selective", "logical") and source["status"] != "running":
            raise InvalidState(f"a selective restore needs the {kind} running; it is {source['status']}")
    target = _aware(target_time) if target_time is not None else None
    backup = _choose_backup(ports, kind, resource_id, backup_id, target)
    if target is not None:
        running = source is not None and source["status"] == "running"
        _check_target(ports, backup["stanza"], target, running)
    to = "time" if target is not None else "end" if backup_id is not None else "latest"
    if mode == "new_instance" and name is None:
        name = f"{snapshot['name'][:40]}-r{new_id('x')[-6:]}"
    fields = _tenant_fields(ports, source, tenant) if mode == "selective" else {}
    return RestorePlan(
        source_kind=kind, source_id=resource_id, source=source, snapshot=snapshot, backup=backup, mode=mode,
        to=to, target_time=target, recovery_type=recovery_type, name=name, tenant=tenant, **fields,
    )  # fmt: skip


def _tenant_fields(ports: Ports, source: dict[str, Any] | None, tenant: str | None) -> dict[str, Any]:
    """The database (or schema) of a tenant of the source and the role it is restored as, from the
    tenants API's record (kind "tenant" under the resource); without one (a deleted tenant),
    the database named after the tenant, as the tenants API names it."""
    if not tenant or source is None:
        raise ValidationFailed("SELECTIVE needs targetTenant", details={"field": "targetTenant"})
    stem = tenant_stem(tenant)
    for record in archive.records.every(ports, "tenant", parent_id=source["id"]):
        if record.get("name") == tenant:
            schema_mode = record.get("mode") == "schema_per_tenant"
            # Restored as the tenant's owner role, never as a superuser (the dump is the
            # tenant's code); its database stays the platform's.
            return {
                "database": record.get("database_name") or stem,
                "schema": (record.get("schema_name") or stem) if schema_mode else None,
                "owner": (record.get("roles") or {}).get("owner"),
            }
    # The resource's own database stays its application role's.
    owner = source["username"] if stem == source.get("database") else None
    return {"database": stem, "schema": None, "owner": owner}


# --- starting ---------------------------------------------------------------------------------------


def _recovery_record(principal: Principal, plan_: RestorePlan) -> dict[str, Any]:
    return {
        "id": new_id("rcv"),
        "tenant_id": plan_.snapshot["tenant_id"],
        "parent_id": plan_.source_id,
        "source_kind": plan_.source_kind,
        "backup_id": plan_.backup["id"],
        "backup_label": plan_.backup.get("label"),
        "stanza": plan_.backup["stanza"],
        "recovery_type": plan_.recovery_type,
        "mode": plan_.mode,
        "to": plan_.to,
        "target_time": archive.records.iso(plan_.target_time) if plan_.target_time else None,
        "database": plan_.database,
        "schema": plan_.schema,
        "owner": plan_.owner,
        "tenant": plan_.tenant,
        "target_id": None,
        "operation_id": None,
        "integrity": [],
        "created_at": utcnow_iso(),
        "created_by": principal.sub,
    }


def start(ports: Ports, principal: Principal, plan_: RestorePlan) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record the recovery and hand its workflow to the worker. Returns (recovery record,
    the target resource as created or moved into "restoring", with credentials when new)."""
    recovery = _recovery_record(principal, plan_)
    recovery["target_kind"] = plan_.source_kind
    params = {"recovery_id": recovery["id"]}
    if plan_.mode == "new_instance":
        # Stored first: the worker may run the first step before create() returns.
        recovery = ports.store.create(KIND, recovery)
        owner = dataclasses.replace(principal, tenant_id=plan_.snapshot["tenant_id"])
        snap = plan_.snapshot
        name = plan_.name or f"{snap['name'][:40]}-r{new_id('x')[-6:]}"
        common = {
            k: snap[k] for k in ("version", "cpu", "memory", "storage", "database", "username") if k in snap
        }
        if plan_.source_kind == "cluster":
            cluster_body = ClusterCreate(
                name=name, node_count=snap.get("node_count", 3),
                replication_mode=snap.get("replication_mode", "async"), **common,
            )  # fmt: skip
            target = clusters.create(ports, owner, cluster_body, workflow=plan_.workflow, params=params)
        else:
            body = InstanceCreate(name=name, **common)
            target = instances.create(ports, owner, body, workflow=plan_.workflow, params=params)
        recovery = ports.store.update(
            KIND, recovery["id"], {"target_id": target["id"], "operation_id": target["operation_id"]}
        )
        return recovery, target
    source = plan_.source
    assert source is not None
    recovery["target_id"] = source["id"]
    if plan_.mode in ("selective", "logical"):
        # One database changes; the resource keeps serving the others and keeps its status.
        op = operations.new_operation(plan_.workflow, source["id"], source["tenant_id"], params)
        recovery["operation_id"] = op["id"]
        ports.store.create(KIND, recovery)
        operations.submit(ports, op)
        return recovery, source
    params["was_status"] = source["status"]
    if plan_.source_kind == "cluster":
        params["leader"] = source.get("primary") or source["nodes"][0]["id"]
    ports.store.create(KIND, recovery)
    try:
        target = resources.begin(
            ports, principal, backups.RTYPES[plan_.source_kind], source, action="restore",
            transitional="restoring", workflow=plan_.workflow, params=params,
        )  # fmt: skip
    except Exception:
        ports.store.delete(KIND, recovery["id"])
        raise
    recovery = ports.store.update(KIND, recovery["id"], {"operation_id": target["operation_id"]})
    return recovery, target


# --- the infrastructure API ---------------------------------------------------------------------------


def restore(
    ports: Ports, principal: Principal, kind: str, resource_id: str, body: RestoreRequest
) -> dict[str, Any]:
    """POST /api/v1/postgres/{single|cluster}/{id}/restore."""
    if body.name is not None and body.restore_mode == "overwrite":
        raise ValidationFailed("name is only for restore_mode new_instance", details={"field": "name"})
    restore_plan = plan(
        ports, principal, kind, resource_id, backup_id=body.backup_id, target_time=body.pitr_target,
        mode=body.restore_mode, name=body.name,
        recovery_type="POINT_IN_TIME" if body.pitr_target else "FULL",
    )  # fmt: skip
    recovery, target = start(ports, principal, restore_plan)
    return {
        "restore_id": recovery["id"],
        "operation_id": recovery["operation_id"],
        "restore_mode": body.restore_mode,
        "source_id": resource_id,
        "target_id": target["id"],
        "backup_id": restore_plan.backup["id"],
        "pitr_target": recovery["target_time"],
        "status": target["status"],
        "credentials": target.get("credentials"),
    }


# --- the production-readiness API ---------------------------------------------------------------------


def initiate(ports: Ports, principal: Principal, body: RecoveryInitiateRequest) -> RecoveryInitiateResponse:
    """POST /api/v1/backup/recovery/initiate (validateOnly: the plan, nothing changed)."""
    backup = backups.visible_backup(ports, principal, body.backupId)
    kind = backup["resource_kind"]
    if body.recoveryType == "POINT_IN_TIME" and body.targetTime is None:
        raise ValidationFailed("POINT_IN_TIME needs targetTime", details={"field": "targetTime"})
    if body.recoveryType == "FULL" and body.targetTime is not None:
        raise ValidationFailed(
            "targetTime is for POINT_IN_TIME or SELECTIVE", details={"field": "targetTime"}
        )
    if backup["logical"]:
        mode = "logical"
        if body.recoveryType == "POINT_IN_TIME" or body.recoveryLocation == "NEW_INSTANCE":
            raise ValidationFailed(
                "a logical backup restores its database in place, to the moment it was taken",
                details={"field": "recoveryType"},
            )
    elif body.recoveryType == "SELECTIVE":
        if body.recoveryLocation == "NEW_INSTANCE":
            raise ValidationFailed("SELECTIVE recovers in place", details={"field": "recoveryLocation"})
        mode = "selective"
    else:
        mode = "overwrite" if body.recoveryLocation == "IN_PLACE" else "new_instance"
    if backup["status"] != "completed":
        raise _not_restorable(backup)
    if mode == "logical":
        restore_plan = _logical_plan(ports, principal, backup, body.targetTenant)
    else:
        restore_plan = plan(
            ports, principal, kind, backup["parent_id"], backup_id=backup["id"], target_time=body.targetTime,
            mode=mode, recovery_type=body.recoveryType, tenant=body.targetTenant,
        )  # fmt: skip
    recovery_plan = plan_view(ports, restore_plan)
    if body.validateOnly:
        return RecoveryInitiateResponse(
            recovery_id=new_id("rcv"),
            status="COMPLETED",
            estimated_duration=recovery_plan.total_estimated_time,
            recovery_plan=recovery_plan,
        )
    recovery, _ = start(ports, principal, restore_plan)
    ports.store.update(KIND, recovery["id"], {"plan": recovery_plan.to_record()})
    return RecoveryInitiateResponse(
        recovery_id=recovery["id"],
        status="INITIATED",
        estimated_duration=recovery_plan.total_estimated_time,
        recovery_plan=recovery_plan,
    )


def _logical_plan(
    ports: Ports, principal: Principal, backup: dict[str, Any], tenant: str | None
) -> RestorePlan:
    kind, resource_id = backup["resource_kind"], backup["parent_id"]
    source, snapshot = backups.resource_or_snapshot(ports, principal, kind, resource_id)
    if source is None or source["status"] != "running":
        raise InvalidState(f"{kind} {resource_id} must be running to restore a database into it")
    return RestorePlan(
        source_kind=kind, source_id=resource_id, source=source, snapshot=snapshot, backup=backup,
        mode="logical", to="end", target_time=None, recovery_type="FULL", tenant=tenant or backup.get("tenant"),
        database=backup.get("database"), schema=backup.get("schema"), owner=backup.get("owner"),
    )  # fmt: skip


def plan_view(ports: Ports, restore_plan: RestorePlan) -> RecoveryPlan:
    """The recoveryPlan of seed 003: the workflow's steps with estimates, the integrity
    checks the recovery runs, and how a failure is rolled back."""
    size = int(restore_plan.backup.get("size_bytes") or 0)
    restore_s = max(2.0, size / RESTORE_BYTES_PER_SECOND)
    steps = []
    total = 0.0
    for order, (name, _) in enumerate(operations.WORKFLOWS[restore_plan.workflow].steps, start=1):
        description, estimate = STEP_DESCRIPTIONS.get(name, (name.replace("_", " ").capitalize(), 2))
        seconds = float(estimate)
        if name in ("restore_files", "restore_scratch", "initial_backup", "backup"):
            seconds = restore_s
        total += seconds
        steps.append(
            RecoveryStep(
                order=order, name=name, description=description, estimated_duration=format_duration(seconds)
            )
        )
    return RecoveryPlan(
        steps=steps,
        total_estimated_time=format_duration(total),
        data_integrity_checks=_integrity_checks(restore_plan),
        rollback_procedure=_rollback(restore_plan),
    )


def _integrity_checks(restore_plan: RestorePlan) -> list[str]:
    target = {
        "end": f"recovery stops at the end of backup {restore_plan.backup['id']}",
        "latest": "recovery replays every archived WAL segment",
        "time": f"recovery stops exactly at {archive.records.iso(restore_plan.target_time)}"
        if restore_plan.target_time
        else "",
    }[restore_plan.to]
    checks = [
        "every restored file is checked against the checksum in the backup manifest",
        f"{target}; PostgreSQL refuses to promote before the backup is consistent",
    ]
    if restore_plan.mode in ("new_instance", "overwrite"):
        checks += [
            "the restored server accepts connections",
            "WAL of the new timeline reaches the stanza (the backup engine's check)",
            "a full backup is taken of the restored data",
        ]
    else:
        checks += [
            f"the dump of {restore_plan.database} restores without error; other databases are untouched",
        ]
    return checks


def _rollback(restore_plan: RestorePlan) -> str:
    if restore_plan.mode == "new_instance":
        return (
            "Nothing existing is changed. If the restore fails, the new resource is marked failed; "
            "DELETE removes it."
        )
    if restore_plan.mode == "overwrite":
        return (
            "The current data directory (every node's, for a cluster) is set aside, not deleted, before the "
            "restore. If any step fails before the restored server is committed, it is put back and the "
            "resource returns to its previous status; the set-aside copy is deleted only once the restored "
            "server accepts connections and archives."
        )
    return (
        f"The current {'schema' if restore_plan.schema else 'database'} {restore_plan.schema or restore_plan.database} "
        "is renamed aside and dropped only after the dump is restored; if the restore fails it is renamed back."
    )


# --- status ------------------------------------------------------------------------------------------


def visible_recovery(ports: Ports, principal: Principal, recovery_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, recovery_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"recovery {recovery_id} not found")
    return record


def stored_integrity(record: dict[str, Any]) -> list[IntegrityCheckResult]:
    """The integrity checks a recovery record holds (a CamelModel parses either spelling)."""
    return [IntegrityCheckResult.model_validate(r) for r in record.get("integrity") or []]


def status(ports: Ports, principal: Principal, recovery_id: str) -> RecoveryStatusResponse:
    """GET /api/v1/backup/recovery/status/{recoveryId}."""
    record = visible_recovery(ports, principal, recovery_id)
    op = ports.store.get(operations.KIND, record.get("operation_id") or "") or {}
    steps = op.get("steps") or []
    current = next(
        (s["name"] for s in steps if s["status"] != "succeeded"), steps[-1]["name"] if steps else ""
    )
    return RecoveryStatusResponse.model_validate(
        {
            "recovery_id": record["id"],
            "status": OP_STATUS.get(op.get("status", "pending"), "INITIATED"),
            "progress": int(op.get("progress") or 0),
            "current_step": current,
            "start_time": op.get("started_at") or record["created_at"],
            "end_time": op.get("finished_at"),
            "error_message": op.get("error"),
            "data_integrity_results": stored_integrity(record) or None,
        }
    )
