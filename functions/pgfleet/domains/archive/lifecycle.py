"""Backup steps of the create and delete workflows of instances and clusters.

Create: archiving is configured before the server is provisioned (see `archiving`). The
resource is running as soon as it accepts connections: its stanza and its first full backup
then come as their own operation (`FIRST_BACKUP`, started by the create's last step). Until
the stanza exists, archive_command fails and PostgreSQL keeps the WAL and retries it; the
restorable window starts when the first backup completes, and every segment from then on is
in the archive. Until then the
resource's view says so (`backup_state`) and a restore is refused with the reason
(`not_restorable_reason`); reconcile hands a first backup that lost its worker back, and
records on the resource once it is restorable (`settle_first_backup`).

Delete: no backup may run while the server or the stanza goes (`settle_backups_step`: one
still waiting for a worker is cancelled; one running is cancelled too unless the delete keeps
backups, else waited for). With `final_backup`, a last full backup is taken before the server
goes, and the backups are kept for their retention (still restorable into a new resource);
without it, the stanza, its backups and its passphrase go with the resource.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, EngineError
from pgfleet.core.leases import lease_kept
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.core.resources import ResourceType
from pgfleet.domains.archive import records as backup_records
from pgfleet.domains.archive import schedules as backup_schedules
from pgfleet.domains.archive import service as archiving
from pgfleet.ports.metadata import Create

FIRST_BACKUP = "backup.initial"
# How long a delete waits for a backup in progress: a backup's own bound (pgBackRest's long
# timeout). A first backup of a new resource takes seconds.
BACKUP_WAIT_SECONDS = 6 * 3600.0
WAIT_POLL_SECONDS = 0.5


def take_full_backup(ctx: StepContext, resource: dict[str, Any], trigger: str) -> str:
    """A full backup of `resource` recorded under an id derived from the operation, so a
    retried step completes the same record instead of taking a second backup."""
    backup_id = backup_records.derived_id(f"{ctx.operation['id']}:{trigger}")
    backup_records.create(
        ctx.ports,
        backup_records.new_record(
            resource,
            type="full",
            trigger=trigger,
            retention=backup_records.retention_for(ctx.ports, resource),
            record_id=backup_id,
            operation_id=ctx.operation["id"],
        ),
    )
    with lease_kept(ctx):
        return backup_records.run(ctx.ports, backup_id)


def initial_backup_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    """Step: a first full backup inside the workflow (a restore into a new resource)."""

    def step(ctx: StepContext) -> str:
        return take_full_backup(ctx, resources.step_record(ctx, rtype), "initial")

    return step


# --- the first backup, as its own operation -------------------------------------------------------


def start_first_backup(ctx: StepContext, resource: dict[str, Any]) -> dict[str, Any]:
    """Record the first full backup of `resource` and hand it to the worker as its own
    operation (`FIRST_BACKUP`, whose resource is the backup record, as for `backup.run`).
    The record and its operation are stored in one transaction, under an id derived from the
    calling operation: a retried step finds them and only hands the operation over again (a
    duplicate delivery is harmless). Returns the backup record."""
    backup_id = backup_records.derived_id(f"{ctx.operation['id']}:initial")
    op = operations.new_operation(FIRST_BACKUP, backup_id, resource["tenant_id"])
    record = backup_records.new_record(
        resource,
        type="full",
        trigger="initial",
        retention=backup_records.retention_for(ctx.ports, resource),
        record_id=backup_id,
        operation_id=op["id"],
        created_by=resource.get("created_by"),
    )
    try:
        return operations.submit_with(ctx.ports, Create(backup_records.KIND, record), op)
    except AlreadyExists:
        existing = backup_records.get(ctx.ports, backup_id)
    stored = ctx.ports.store.get(operations.KIND, existing.get("operation_id") or "")
    if stored is not None and stored["status"] not in operations.TERMINAL:
        operations.resume(ctx.ports, stored["id"])
    return existing


def _create_stanza(ctx: StepContext) -> str:
    """The stanza of the backup's resource, in the repository (idempotent: stanza-create
    checks an existing one)."""
    backup = backup_records.get(ctx.ports, ctx.resource_id)
    resource = ctx.ports.store.get(backup["resource_kind"], backup["parent_id"])
    if resource is None:
        raise Conflict(f"{backup['parent_id']} is gone; its first backup is not taken")
    return archiving.create_stanza(ctx.ports, resource)


def _run_first_backup(ctx: StepContext) -> str:
    with lease_kept(ctx):
        reason = backup_records.run(ctx.ports, ctx.resource_id)
    backup = backup_records.get(ctx.ports, ctx.resource_id)
    resource = ctx.ports.store.get(backup["resource_kind"], backup["parent_id"])
    if resource is not None:
        _record_restorable(ctx.ports, resource, backup_state(ctx.ports, resource))
    return reason


def _first_backup_failed(ctx: StepContext, error: str) -> None:
    backup_records.mark_failed(ctx.ports, ctx.resource_id, error)


def _in_progress(kind: str, record: dict[str, Any]) -> str:
    first = "first " if record.get("trigger") == "initial" else ""
    return f"the {first}backup of this {kind} is {record['status']} (operation {record.get('operation_id')})"


def not_restorable_reason(ports: Ports, kind: str, resource_id: str) -> tuple[str, dict[str, Any]]:
    """Why a resource without a completed physical backup cannot be restored yet, and the
    details (the backup and its operation): its first backup is pending or running, or has
    failed."""
    physical = [r for r in backup_records.of_resource(ports, resource_id) if not r["logical"]]
    active = [r for r in physical if r["status"] in backup_records.ACTIVE]
    if active:
        record = min(active, key=lambda r: r["created_at"])
        details = {"backup_id": record["id"], "operation_id": record.get("operation_id")}
        return f"no backup yet: {_in_progress(kind, record)}", details
    failed = [r for r in physical if r["status"] == "failed" and r.get("trigger") == "initial"]
    if failed:
        record = failed[-1]
        return (
            f"no backup yet: the first backup of this {kind} failed ({record.get('error')}); "
            "take one with POST .../backup",
            {"backup_id": record["id"], "operation_id": record.get("operation_id")},
        )
    return f"no backup yet: {kind} {resource_id} has no completed backup to restore", {}


def backup_state(ports: Ports, resource: dict[str, Any]) -> dict[str, Any]:
    """What a resource's view says of its backups: `first_backup_id`, `backup_status` and
    `backup_status_reason`. Nothing to read once the resource records that a backup completed
    (`_record_restorable`): it stays restorable from then on. Before that, one
    read (the first backup's record); the catalogue of the resource's backups only when that
    backup failed or is gone, or for a resource made before first backups were operations."""
    first_id = resource.get("first_backup_id")

    def state(status: str | None, reason: str) -> dict[str, Any]:
        return {"first_backup_id": first_id, "backup_status": status, "backup_status_reason": reason}

    if resource.get("backup_status") == "completed":
        return state("completed", str(resource.get("backup_status_reason") or ""))
    kind = backup_records.resource_kind(resource)
    first = ports.store.get(backup_records.KIND, first_id) if first_id else None
    if first is not None and first["status"] in backup_records.ACTIVE:
        return state(
            first["status"],
            f"no backup yet: {_in_progress(kind, first)}; nothing is restorable until it completes",
        )
    if first is not None and first["status"] == "completed":
        return state(
            "completed",
            f"first backup {first_id} completed at {first['finished_at']}: restorable from then on",
        )
    if first_id is None and resource.get("status") == "creating":
        return state(None, f"the first backup starts once the {kind} accepts connections")
    done = [
        r
        for r in backup_records.of_resource(ports, resource["id"])
        if r["status"] == "completed" and not r["logical"]
    ]
    if done:
        oldest = min(done, key=lambda r: r["finished_at"])
        return state(
            "completed", f"restorable from backup {oldest['id']} (completed at {oldest['finished_at']})"
        )
    if first is not None:
        return state(
            "failed",
            f"the first backup {first_id} failed: {first.get('error')}; nothing is restorable until a backup "
            "completes (POST .../backup)",
        )
    return state(None, "no completed backup")


def settle_first_backup(ports: Ports, resource: dict[str, Any]) -> str | None:
    """Reconcile: hand a first backup whose operation nobody works on (its worker or its
    message was lost) back to the worker, and mark one whose operation ended without it
    failed. Once a backup of the resource has completed, record that on the resource if the
    first backup's operation could not (`_record_restorable`; as reconcile records a
    cluster's observed topology), so that neither its views nor later rounds read the backups
    again. Returns what it did, or None."""
    if resource.get("backup_status") == "completed" or resource.get("status") == "creating":
        return None
    first_id = resource.get("first_backup_id")
    record = ports.store.get(backup_records.KIND, first_id) if first_id else None
    if record is not None and record["status"] in backup_records.ACTIVE:
        op = ports.store.get(operations.KIND, record.get("operation_id") or "")
        if op is not None and op["status"] not in operations.TERMINAL:
            resumed = operations.resume_if_stale(ports, {"id": record["id"], "operation_id": op["id"]})
            return f"{resource['id']}: first backup {resumed}" if resumed else None
        why = "its operation ended without completing it"
        backup_records.mark_failed(ports, record["id"], why)
        return f"{resource['id']}: first backup {record['id']} marked failed: {why}"
    _record_restorable(ports, resource, backup_state(ports, resource))
    return None


def _record_restorable(ports: Ports, resource: dict[str, Any], state: dict[str, Any]) -> None:
    """Record on the resource that a backup of it completed. Never while a workflow works on
    it (a transitional status: its steps write the record and must not meet a conflict), and
    only over the revision read: a concurrent change wins, reconcile tries again later."""
    if state["backup_status"] != "completed" or resource.get("status") in resources.TRANSITIONAL:
        return
    changes = {"backup_status": "completed", "backup_status_reason": state["backup_status_reason"]}
    try:
        ports.store.update(
            backup_records.resource_kind(resource), resource["id"], changes, resource["revision"]
        )
    except Conflict:
        pass


# --- delete ---------------------------------------------------------------------------------------


def settle_backups_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    """Step first in a delete: no backup of the resource may run while its server or its
    stanza goes, and a final backup could not start beside one. A backup still waiting for a
    worker (the first one, right after a create) is cancelled. One running is cancelled too
    when the delete keeps no backup (nobody will restore it), else waited for; either way it
    is finished here if its worker is gone."""

    def step(ctx: StepContext) -> str:
        active = [
            r
            for r in backup_records.of_resource(ctx.ports, ctx.resource_id)
            if not r["logical"]
            and r["status"] in backup_records.ACTIVE
            and r.get("operation_id") not in (None, ctx.operation["id"])
        ]
        if not active:
            return "no backup in progress"
        return "; ".join(_settle(ctx, r, rtype.kind) for r in active)

    return step


def _settle(ctx: StepContext, record: dict[str, Any], kind: str) -> str:
    op_id = str(record["operation_id"])
    op = ctx.ports.store.get(operations.KIND, op_id)
    # Only a backup's own operation (backup.run, backup.initial: its resource is the backup)
    # is cancelled or finished here; one taken as a step of another workflow is waited for.
    own = op is not None and op.get("resource_id") == record["id"]
    # A worker id of its own: the lease of another thread of this process is not ours.
    me = f"settle:{ctx.operation['id']}"
    if own and backup_records.cancel_pending(ctx.ports, record, f"cancelled: the {kind} is being deleted"):
        operations.run(ctx.ports, op_id, worker_id=me)  # ends it now: it refuses the cancelled record
        return f"cancelled backup {record['id']} (it had not begun)"
    keep = bool(ctx.params.get("final_backup"))
    cancelled: str | None = None
    deadline = time.monotonic() + BACKUP_WAIT_SECONDS
    with lease_kept(ctx):
        while op is not None and op["status"] not in operations.TERMINAL:
            if operations.is_stale(op):
                if not own:
                    break  # its workflow lost its worker: nothing runs it any more
                operations.run(ctx.ports, op_id, worker_id=me)  # its worker is gone: finish it here
            elif own and not keep and cancelled is None:
                # Until pgBackRest runs there is nothing to cancel: ask again next time round.
                cancelled = ctx.ports.backup_engine.cancel_backup(record["stanza"])
            if time.monotonic() > deadline:
                raise EngineError(f"backup {record['id']} is still running after {BACKUP_WAIT_SECONDS:.0f}s")
            time.sleep(WAIT_POLL_SECONDS)
            op = ctx.ports.store.get(operations.KIND, op_id)
    final = ctx.ports.store.get(backup_records.KIND, record["id"])
    if final is not None and final["status"] in backup_records.ACTIVE:
        backup_records.mark_failed(ctx.ports, final["id"], "its operation ended without completing it")
        final = ctx.ports.store.get(backup_records.KIND, record["id"])
    outcome = final["status"] if final else "gone"
    if cancelled is not None:
        return f"{cancelled} (backup {record['id']}, operation {op_id}: {outcome})"
    return f"waited for backup {record['id']} (operation {op_id}) to end: {outcome}"


def final_backup_step(
    rtype: ResourceType, ensure_running: Callable[[StepContext], str]
) -> Callable[[StepContext], str]:
    """Step: with `final_backup`, start the resource if it is stopped (`ensure_running`,
    idempotent) and take a full backup of it."""

    def step(ctx: StepContext) -> str:
        if not ctx.params.get("final_backup"):
            return "no final backup requested"
        started = ensure_running(ctx)
        return f"{started}; " + take_full_backup(ctx, resources.step_record(ctx, rtype), "final")

    return step


def release_backups_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    """Step after the server is destroyed: keep the backups (final_backup) or drop them."""

    def step(ctx: StepContext) -> str:
        record = ctx.ports.store.get(rtype.kind, ctx.resource_id)
        if record is None:
            return "already released"
        backup_schedules.remove(ctx.ports, record["id"])
        if ctx.params.get("final_backup"):
            return keep_backups(ctx.ports, record)
        stanza = archiving.stanza_of(record)
        return backup_records.drop_stanza(
            ctx.ports, stanza, backup_records.of_resource(ctx.ports, record["id"])
        )

    return step


def keep_backups(ports: Ports, record: dict[str, Any]) -> str:
    kept = [r for r in backup_records.of_resource(ports, record["id"]) if r["status"] == "completed"]
    ports.scheduler.put(backup_schedules.EXPIRY_SCHEDULE)
    last = max((r["retention_expiry"] for r in kept), default="now")
    return f"kept {len(kept)} backup(s) of stanza {archiving.stanza_of(record)} until their retention ends ({last})"


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        FIRST_BACKUP, (("create_stanza", _create_stanza), ("backup", _run_first_backup)), _first_backup_failed
    ),
)
