"""The deletion workflow of tenants: block logins, take a logical backup, drop, forget; every step idempotent."""

from __future__ import annotations

import hashlib
from typing import Any

from pgfleet.core import resources
from pgfleet.core.errors import NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import archive, servers
from pgfleet.domains.servers import Server
from pgfleet.domains.tenants.service import KIND, TENANT, forget, spec

# --- the deletion workflow (each step idempotent) ---------------------------------------------


def _context(ctx: StepContext) -> tuple[Server, dict[str, Any]]:
    record = resources.step_record(ctx, TENANT)
    server = servers.get(ctx.ports, record["parent_kind"], record["parent_id"])
    if server is None:
        raise NotFound(f"{record['parent_kind']} {record['parent_id']} no longer exists")
    return server, record


def _block_logins(ctx: StepContext) -> str:
    server, record = _context(ctx)
    return servers.admin(ctx.ports, server).block_logins(spec(record))


def _backup_id(ctx: StepContext) -> str:
    # Derived from the operation, so a retried step finds the backup it already took.
    return "bkp-" + hashlib.sha256(f"tenant-backup:{ctx.operation['id']}".encode()).hexdigest()[:12]


def _backup(ctx: StepContext) -> str:
    if ctx.params.get("create_unfinished"):
        return "skipped: the tenant's create never finished, it holds no data of the tenant's"
    if not ctx.params.get("backup_before_delete", True):
        return "skipped: backup_before_delete=false"
    server, record = _context(ctx)
    backup_id = _backup_id(ctx)
    existing = ctx.ports.store.get("backup", backup_id)
    if existing is not None and existing["status"] == "completed":
        return f"backup {backup_id} already taken"
    # Encrypted with the server's repository passphrase, like its other backups.
    passphrase = archive.service.cipher_passphrase(
        ctx.ports.secrets, archive.service.stanza_of(server.record)
    )
    dump = servers.admin(ctx.ports, server).dump_tenant(spec(record), backup_id, passphrase)
    # Recorded with the server's other backups (kind "backup", logical), restorable from there.
    stored = archive.logical.record_logical_backup(
        ctx.ports, server.record, database=record["database_name"], schema=record.get("schema_name"),
        owner=record["roles"]["owner"], tenant=record["name"], dump_file=dump.path, size_bytes=dump.size_bytes,
        record_id=backup_id, tags={"trigger": "tenant_delete"},
    )  # fmt: skip
    ctx.ports.store.update(KIND, record["id"], {"final_backup_id": stored["id"]})
    return f"logical backup {stored['id']}: {dump.size_bytes} bytes at {dump.path}"


def _drop(ctx: StepContext) -> str:
    server, record = _context(ctx)
    return servers.admin(ctx.ports, server).drop_tenant(spec(record))


def _remove_record(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "record already removed"
    forget(ctx.ports, record)
    return "tenant record and password secret removed"


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is not None:
        ctx.ports.store.update(
            KIND, record["id"], {"status": "failed", "status_reason": error, "updated_at": utcnow_iso()}
        )


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "tenant.delete",
        (
            ("block_logins", _block_logins),
            ("backup", _backup),
            ("drop", _drop),
            ("remove_record", _remove_record),
        ),
        _failed,
    ),
)
