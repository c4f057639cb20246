"""Backup steps of the create and delete workflows of instances and clusters.

Create: after archiving is configured (see `archiving`) and the stanza exists, a first full
backup makes every moment from creation on restorable. Delete: with `final_backup`, a last
full backup is taken before the server goes, and the backups are kept for their retention
(still restorable into a new resource); without it, the stanza, its backups and its
passphrase go with the resource.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgfleet.core import resources
from pgfleet.core.context import Ports
from pgfleet.core.leases import lease_kept
from pgfleet.core.operations import StepContext
from pgfleet.core.resources import ResourceType
from pgfleet.domains.archive import records as backup_records
from pgfleet.domains.archive import schedules as backup_schedules
from pgfleet.domains.archive import service as archiving


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
            retention=backup_records.retention_for(ctx.ports, resource["id"]),
            record_id=backup_id,
            operation_id=ctx.operation["id"],
        ),
    )
    with lease_kept(ctx):
        return backup_records.run(ctx.ports, backup_id)


def initial_backup_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    def step(ctx: StepContext) -> str:
        return take_full_backup(ctx, resources.step_record(ctx, rtype), "initial")

    return step


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
