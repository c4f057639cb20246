"""Logical backups: one database (or one schema) of an instance or cluster as a pg_dump file,
recorded like every other backup (kind "backup", `logical: true`).

The tenants code records the dump it takes before dropping a tenant
(`record_logical_backup(..., dump_file=...)`) and can bring a tenant back from it
(`restore_logical_backup`); SELECTIVE recovery uses the same restore. Every dump is
encrypted with the resource stanza's passphrase, the tenants' final dumps included.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.domains.archive import records as backup_records
from pgfleet.domains.archive import service as archiving


def record_logical_backup(
    ports: Ports,
    resource: dict[str, Any],
    *,
    database: str,
    schema: str | None = None,
    owner: str | None = None,
    tenant: str | None = None,
    dump_file: Path | None = None,
    size_bytes: int | None = None,
    created_by: str | None = None,
    retention: timedelta | None = None,
    record_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Record a logical backup of `database` (only `schema`, when given) of `resource`.

    With `dump_file`, the caller has written a pg_dump custom-format file encrypted with the
    stanza's passphrase (the tenants' `DatabaseAdmin.dump_tenant`), which is recorded as it
    is. Without it, the database is dumped now from the resource's primary, encrypted.
    `owner` is the role that should own the restored database's objects; `tenant` names the
    tenant in listings. With `record_id` (derive it from the calling step) a retried call
    returns the record it made. Blocks while dumping. Returns the record (completed)."""
    stanza = archiving.stanza_of(resource)
    record = backup_records.new_record(
        resource,
        type="logical",
        trigger="logical",
        retention=retention or backup_records.retention_for(ports, resource),
        created_by=created_by,
        record_id=record_id,
        tags={**(tags or {}), **({"tenant": tenant} if tenant else {})},
        logical=True,
    )
    existing = ports.store.get(backup_records.KIND, record["id"])
    if existing is not None and existing["status"] == "completed":
        return existing
    if dump_file is None:
        dump_file = ports.restore_host.dump_path(stanza, record["id"])
        location = archiving.primary_location(ports, resource)
        passphrase = archiving.cipher_passphrase(ports.secrets, stanza)
        size_bytes = ports.restore_host.dump_database(location, database, dump_file, passphrase, schema)
    record.update(
        status="completed",
        started_at=record["created_at"],
        finished_at=utcnow_iso(),
        size_bytes=int(size_bytes or 0),
        repo_size_bytes=int(size_bytes or 0),
        database=database,
        schema=schema,
        owner=owner,
        tenant=tenant,
        dump_path=str(dump_file),
        encrypted=True,  # every dump pgfleet writes is (older plain ones say encrypted: false)
    )
    return backup_records.create(ports, record)


def restore_logical_backup(
    ports: Ports,
    backup_id: str,
    *,
    target: dict[str, Any] | None = None,
    database: str | None = None,
    owner: str | None = None,
) -> str:
    """Make a database of `target` (default: the backup's own resource, which must still exist)
    what the logical backup holds: `database` (default: the one dumped) is renamed aside,
    the dump restored, the old one dropped; a failure puts the old one back. Every other
    database is untouched. Blocks while restoring. Returns a short reason."""
    record = backup_records.get(ports, backup_id)
    if not record["logical"] or record["status"] != "completed":
        raise InvalidState(f"backup {backup_id} is not a completed logical backup")
    if target is None:
        target = ports.store.get(record["resource_kind"], record["parent_id"])
        if target is None:
            raise NotFound(f"{record['resource_kind']} {record['parent_id']} no longer exists")
    passphrase = (
        archiving.cipher_passphrase(ports.secrets, record["stanza"]) if record.get("encrypted") else None
    )
    return ports.restore_host.restore_database(
        archiving.primary_location(ports, target),
        database or record["database"],
        backup_records.dump_file(ports, record),
        passphrase,
        owner=owner or record.get("owner"),
        schema=record.get("schema"),
    )
