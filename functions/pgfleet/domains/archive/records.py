"""Backup records: one metadata record (kind "backup", parent_id = the instance or cluster) per
backup, whichever API asked for it, and the work of taking one and of expiring old ones.

A record keeps a snapshot of its resource (`source`), so backups outlive a resource deleted
with a final backup and can still be restored into a new one. Physical backups are pgBackRest
backups of the resource's stanza (`label`); logical ones (`logical: true`) are encrypted
pg_dump files of one database (see `logical_backups`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgfleet.core import tenant_settings
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, EngineError, InvalidState, NotFound, PgfleetError
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.archive import service as archiving
from pgfleet.ports.backup_engine import BackupInfo

KIND = "backup"
SET_KIND = "backup_set"
PROGRESS_KIND = "backup_progress"
PROGRESS_SECONDS = 1.0
ACTIVE = ("pending", "running")
DEFAULT_RETENTION = timedelta(days=7)
API_TYPE = {"full": "full", "incr": "incremental", "diff": "differential"}
SOURCE_FIELDS = (
    "id",
    "name",
    "tenant_id",
    "version",
    "cpu",
    "memory",
    "storage",
    "database",
    "username",
    "replication_mode",
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def derived_id(seed: str, prefix: str = "bkp") -> str:
    """A stable id for a record a workflow step creates, so a retried step finds it again."""
    return f"{prefix}-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


def resource_kind(resource: dict[str, Any]) -> str:
    return "cluster" if archiving.is_cluster(resource) else "instance"


def source_snapshot(resource: dict[str, Any]) -> dict[str, Any]:
    """What a restore into a new resource needs of the source, once the source is gone."""
    snapshot = {k: resource[k] for k in SOURCE_FIELDS if k in resource}
    snapshot["kind"] = resource_kind(resource)
    if archiving.is_cluster(resource):
        snapshot["node_count"] = len(resource["nodes"])
    return snapshot


def new_record(
    resource: dict[str, Any],
    *,
    type: str,
    trigger: str,
    retention: timedelta,
    created_by: str | None = None,
    record_id: str | None = None,
    operation_id: str | None = None,
    compression_level: int | None = None,
    tags: dict[str, str] | None = None,
    set_id: str | None = None,
    logical: bool = False,
) -> dict[str, Any]:
    """A pending backup record of `resource` (not stored yet)."""
    now = datetime.now(UTC)
    return {
        "id": record_id or new_id("bkp"),
        "tenant_id": resource["tenant_id"],
        "parent_id": resource["id"],
        "resource_kind": resource_kind(resource),
        "stanza": archiving.stanza_of(resource),
        "source": source_snapshot(resource),
        "type": type,
        "requested_type": type,
        "trigger": trigger,
        "logical": logical,
        "status": "pending",
        "error": None,
        "label": None,
        "references": [],
        "created_at": iso(now),
        "updated_at": iso(now),
        "started_at": None,
        "finished_at": None,
        "size_bytes": 0,
        "repo_size_bytes": 0,
        "retention_expiry": iso(now + retention),
        "compression_level": compression_level,
        "encrypted": True,
        "tags": dict(tags or {}),
        "set_id": set_id,
        "operation_id": operation_id,
        "verification_status": "PENDING",
        "verification_id": None,
        "created_by": created_by,
    }


def create(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    """Store a new record; the one already stored under its id when a step is retried."""
    try:
        return ports.store.create(KIND, record)
    except AlreadyExists:
        existing = ports.store.get(KIND, record["id"])
        if existing is None:
            raise
        return existing


def get(ports: Ports, backup_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, backup_id)
    if record is None:
        raise NotFound(f"backup {backup_id} not found")
    return record


def every(ports: Ports, kind: str = KIND, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every record of `kind` (filtered by tenant_id / parent_id), all pages."""
    token = None
    while True:
        page, token = ports.store.list(kind, limit=100, next_token=token, **filters)
        yield from page
        if not token:
            return


def of_resource(ports: Ports, resource_id: str) -> list[dict[str, Any]]:
    return list(every(ports, parent_id=resource_id))


def latest_completed(ports: Ports, resource_id: str) -> dict[str, Any] | None:
    """The physical backup of the resource that completed last, or None: the newest created
    of those completed (one backup of a resource runs at a time, so they complete in the order
    they were created). One page of one record, filtered in the store."""
    found, _ = ports.store.page(
        KIND,
        parent_id=resource_id,
        filters={"status": "completed", "logical": False},
        page=1,
        page_size=1,
        newest_first=True,
    )
    return found[0] if found else None


def active_backup(ports: Ports, resource_id: str) -> dict[str, Any] | None:
    return next(
        (r for r in of_resource(ports, resource_id) if r["status"] in ACTIVE and not r["logical"]), None
    )


def update(ports: Ports, record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return ports.store.update(KIND, record["id"], {**changes, "updated_at": utcnow_iso()}, record["revision"])


def default_retention(ports: Ports, tenant_id: str | None) -> timedelta:
    """The retention of a backup nothing else sets one for: its tenant's (section BACKUP of
    the system configuration, `retentionDays`), else DEFAULT_RETENTION."""
    days = tenant_settings.value(ports, tenant_id, "backup", "retention_days", DEFAULT_RETENTION.days)
    return timedelta(days=int(days))


def retention_for(ports: Ports, resource: dict[str, Any]) -> timedelta:
    """The retention of the resource's backup schedule, else its tenant's default."""
    schedule = ports.store.get("backup_schedule", resource["id"])
    if schedule is not None and schedule.get("retention_days"):
        return timedelta(days=int(schedule["retention_days"]))
    return default_retention(ports, resource.get("tenant_id"))


def _label_key(stanza: str, label: str) -> str:
    return f"backup-label#{stanza}#{label}"


# --- taking a backup ------------------------------------------------------------------------------


def run(ports: Ports, backup_id: str) -> str:
    """Take the backup a pending record asks for and complete the record. Safe to repeat: a
    complete record is left alone, and a backup that finished before a crash (a new label
    nobody claimed) is adopted rather than taken twice."""
    record = get(ports, backup_id)
    if record["status"] == "completed":
        return f"backup {backup_id} already complete ({record['label']})"
    if record["status"] == "failed":
        # Cancelled before it began (see `cancel_pending`), or failed for good: never taken now.
        raise InvalidState(f"backup {backup_id} will not be taken: {record.get('error') or 'it failed'}")
    resource = ports.store.get(record["resource_kind"], record["parent_id"])
    if resource is None:
        raise InvalidState(f"{record['resource_kind']} {record['parent_id']} no longer exists")
    stanza = record["stanza"]
    engine = ports.backup_engine
    if record["status"] == "pending":
        before = [backup.backup_id for backup in engine.list_backups(stanza)]
        record = update(ports, record, status="running", started_at=utcnow_iso(), labels_before=before)
    archiving.point_stanza_at_primary(ports, resource)
    info = _adoptable(ports, record)
    if info is None:
        with progress_recorded(ports, record):
            info = engine.backup(stanza, record["type"], record.get("compression_level"))
    if not ports.store.claim(_label_key(stanza, info.backup_id), record["id"]):
        raise EngineError(f"pgBackRest backup {info.backup_id} already belongs to another record")
    record = complete(ports, get(ports, backup_id), info)
    return (
        f"{record['type']} backup {info.backup_id} of stanza {stanza}: "
        f"{info.size_bytes / 1e6:.1f} MB database, {info.repo_size_bytes / 1e6:.1f} MB stored"
    )


@contextlib.contextmanager
def progress_recorded(
    ports: Ports, record: dict[str, Any], every: float = PROGRESS_SECONDS
) -> Iterator[None]:
    """While the block runs, record the backup's progress (pgBackRest's percentage) every
    `every` seconds in a record of its own, so the API reports a figure that never goes
    back, whichever process asks."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every):
            try:
                percent = ports.backup_engine.backup_progress(record["stanza"])
                if percent is not None:
                    save_progress(ports, record, percent)
            except PgfleetError:
                continue

    thread = threading.Thread(target=poll, name=f"progress-{record['id']}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def save_progress(ports: Ports, record: dict[str, Any], percent: int) -> None:
    """Raise the recorded progress of a running backup to `percent` (never lower it)."""
    stored = ports.store.get(PROGRESS_KIND, record["id"])
    if stored is None:
        try:
            ports.store.create(
                PROGRESS_KIND, {"id": record["id"], "tenant_id": record["tenant_id"], "progress": percent}
            )
        except AlreadyExists:
            pass
    elif percent > int(stored.get("progress") or 0):
        try:
            ports.store.update(PROGRESS_KIND, record["id"], {"progress": percent})
        except Conflict:
            pass  # another reader raised it at the same instant: a mark, not a count


def recorded_progress(ports: Ports, backup_id: str) -> int:
    stored = ports.store.get(PROGRESS_KIND, backup_id)
    return int(stored.get("progress") or 0) if stored else 0


def _adoptable(ports: Ports, record: dict[str, Any]) -> BackupInfo | None:
    """A backup that appeared since this record began and that no record claims."""
    before = set(record.get("labels_before") or [])
    for info in reversed(ports.backup_engine.list_backups(record["stanza"])):
        if info.backup_id in before:
            continue
        claim = ports.store.claimed(_label_key(record["stanza"], info.backup_id))
        if claim is None or claim["owner"] == record["id"]:
            return info
    return None


def complete(ports: Ports, record: dict[str, Any], info: BackupInfo) -> dict[str, Any]:
    return update(
        ports,
        record,
        status="completed",
        label=info.backup_id,
        type=API_TYPE.get(info.type, info.type),
        references=list(info.references),
        started_at=iso(info.started_at),
        finished_at=iso(info.finished_at),
        size_bytes=info.size_bytes,
        repo_size_bytes=info.repo_size_bytes,
        wal_start=info.wal_start,
        wal_stop=info.wal_stop,
        error=None,
    )


def mark_failed(ports: Ports, backup_id: str, error: str) -> None:
    """Record that the backup failed; a record already failed keeps its first reason (a
    cancelled backup's operation then fails too, saying only that it was refused)."""
    record = ports.store.get(KIND, backup_id)
    if record is not None and record["status"] not in ("completed", "failed"):
        update(ports, record, status="failed", error=error, finished_at=utcnow_iso())


def cancel_pending(ports: Ports, record: dict[str, Any], reason: str) -> bool:
    """Fail a backup that has not begun, so that it never will (`run` refuses a failed
    record). False when it has begun: the write is conditional on the revision `record` was
    read at, and `run` marks a record running with the same check, so exactly one wins."""
    if record["status"] != "pending":
        return False
    try:
        update(ports, record, status="failed", error=reason, finished_at=utcnow_iso())
    except Conflict:
        return False
    return True


# --- retention ----------------------------------------------------------------------------------


def expired(record: dict[str, Any], now: datetime) -> bool:
    return parse_iso(record["retention_expiry"]) <= now


Expired = Callable[[dict[str, Any], datetime], bool]


def _by_stanza(ports: Ports, stanza: str | None, tenant_id: str | None) -> dict[str, list[dict[str, Any]]]:
    by_stanza: dict[str, list[dict[str, Any]]] = {}
    for record in every(ports, **({"tenant_id": tenant_id} if tenant_id else {})):
        if stanza is None or record["stanza"] == stanza:
            by_stanza.setdefault(record["stanza"], []).append(record)
    return by_stanza


def expire_due(
    ports: Ports, now: datetime | None = None, stanza: str | None = None, *, tenant_id: str | None = None,
    is_expired: Expired = expired,
) -> list[str]:  # fmt: skip
    """Remove every backup past its retention (of one stanza, or one tenant's, when given;
    `is_expired` may judge by a policy of its own: maintenance's cleanup). A full backup stays
    while a backup based on it is kept; a deleted resource's stanza goes once all its backups
    have expired."""
    now = now or datetime.now(UTC)
    lines = []
    for name, records in _by_stanza(ports, stanza, tenant_id).items():
        if not any(is_expired(r, now) for r in records):
            continue
        resource = ports.store.get(records[0]["resource_kind"], records[0]["parent_id"])
        if resource is None and all(is_expired(r, now) for r in records):
            lines.append(drop_stanza(ports, name, records))
        else:
            lines.extend(_expire_some(ports, name, records, now, is_expired))
    return lines


def expirable(
    ports: Ports, now: datetime, *, tenant_id: str | None = None, is_expired: Expired = expired
) -> list[dict[str, Any]]:
    """The backup records `expire_due` (with the same arguments) would remove: a dry run of it."""
    found = []
    for _, records in _by_stanza(ports, None, tenant_id).items():
        physical = [r for r in records if not r["logical"] and r["status"] == "completed"]
        for record in records:
            if not is_expired(record, now):
                continue
            if record in physical:
                dependents = [r for r in physical if record["label"] in (r.get("references") or [])]
                if any(not is_expired(r, now) for r in dependents):
                    continue
            found.append(record)
    return found


def _expire_some(
    ports: Ports, stanza: str, records: list[dict[str, Any]], now: datetime, is_expired: Expired = expired
) -> list[str]:
    lines = []
    physical = [r for r in records if not r["logical"] and r["status"] == "completed"]
    for record in sorted(physical, key=lambda r: r["finished_at"] or ""):
        dependents = [r for r in physical if record["label"] in (r.get("references") or [])]
        if not is_expired(record, now) or any(not is_expired(r, now) for r in dependents):
            continue
        try:
            lines.append(ports.backup_engine.expire_backup(stanza, record["label"]))
        except EngineError as exc:
            lines.append(f"kept {record['id']}: {exc}")
    present = {info.backup_id for info in ports.backup_engine.list_backups(stanza)} if physical else set()
    for record in records:
        gone = record["status"] == "completed" and not record["logical"] and record["label"] not in present
        if gone or (record["status"] != "completed" and is_expired(record, now)):
            forget(ports, record)
            lines.append(f"expired backup {record['id']} ({record.get('label') or record['status']})")
        elif record["logical"] and record["status"] == "completed" and is_expired(record, now):
            ports.restore_host.delete_dump(dump_file(ports, record))
            forget(ports, record)
            lines.append(f"expired logical backup {record['id']}")
    return lines


def dump_file(ports: Ports, record: dict[str, Any]) -> Path:
    """Where a logical backup's dump is (the tenants code may have written it elsewhere)."""
    path = record.get("dump_path") or record.get("path")  # "path": written by the tenants code
    return Path(path) if path else ports.restore_host.dump_path(record["stanza"], record["id"])


def forget(ports: Ports, record: dict[str, Any]) -> None:
    keys = (_label_key(record["stanza"], record["label"]),) if record.get("label") else ()
    ports.store.delete(KIND, record["id"], unique_keys=keys)
    ports.store.delete(PROGRESS_KIND, record["id"])


def drop_stanza(ports: Ports, stanza: str, records: list[dict[str, Any]]) -> str:
    """Delete a stanza with all its backups, dumps, records and its passphrase."""
    reason = ports.backup_engine.delete_stanza(stanza)
    for record in records:
        if record["logical"]:
            ports.restore_host.delete_dump(dump_file(ports, record))
        forget(ports, record)
    ports.secrets.delete(archiving.cipher_secret_name(stanza))
    return f"{reason}; {len(records)} backup record(s) removed"
