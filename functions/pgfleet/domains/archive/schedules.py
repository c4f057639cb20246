"""Backup schedules: cron (or rate) expressions for full and incremental backups of one
resource and how long its backups are kept.

The schedule itself is an EventBridge Scheduler schedule per backup type (the local ticker
fires them), invoking the scheduled handler with
`{"task": "backup", "resource_id", "resource_kind", "type"}`. The settings are kept in a
metadata record (kind "backup_schedule", id = the resource's id) so reads need no Scheduler
call. One platform schedule (`EXPIRY_SCHEDULE`) removes expired backups of every resource,
those of deleted resources included.

A new instance or cluster gets its tenant's default schedule (section BACKUP of the system
configuration: `fullBackupCron`, `incrementalBackupCron`, `retentionDays`) when the tenant set
one (`apply_tenant_default`); without one it has none, as before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgfleet.core import schedule_expressions, tenant_settings
from pgfleet.core.context import Ports
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.domains.archive import records as backup_records
from pgfleet.domains.archive.models import BackupScheduleUpdate
from pgfleet.ports.scheduler import Schedule

KIND = "backup_schedule"
TYPES = {"full": "full_backup_cron", "incremental": "incremental_backup_cron"}
EXPIRY_SCHEDULE = Schedule(
    name="pgfleet-backup-expiry", expression="rate(1 hour)", payload={"task": "backup", "action": "expire"}
)


def schedule_name(resource_id: str, backup_type: str) -> str:
    return f"pgfleet-backup-{resource_id}-{backup_type}"


def normalized(expression: str | None, field: str) -> str | None:
    """An EventBridge Scheduler expression; six bare cron fields become cron(...). Raises
    ValidationFailed (422) for one the scheduler could not run."""
    if expression is None or not expression.strip():
        return None
    text = " ".join(expression.split())
    if not text.startswith(("cron(", "rate(", "at(")):
        text = f"cron({text})"
    try:
        schedule_expressions.validate(text)
    except (schedule_expressions.ExpressionError, ValueError) as exc:
        raise ValidationFailed(f"{field}: {exc}", details={"field": field, "expression": expression}) from exc
    return text


def view(resource_id: str, record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {"retention_days": backup_records.DEFAULT_RETENTION.days, "enabled": False}
    now = datetime.now(UTC)
    out: dict[str, Any] = {
        "resource_id": resource_id,
        "full_backup_cron": record.get("full_backup_cron"),
        "incremental_backup_cron": record.get("incremental_backup_cron"),
        "retention_days": record["retention_days"],
        "enabled": record["enabled"],
        "updated_at": record.get("updated_at"),
    }
    for backup_type, field in TYPES.items():
        expression = record.get(field)
        upcoming = (
            schedule_expressions.next_after(expression, now) if expression and record["enabled"] else None
        )
        out[f"next_{backup_type}_backup_at"] = backup_records.iso(upcoming) if upcoming else None
    return out


def get(ports: Ports, resource: dict[str, Any]) -> dict[str, Any]:
    return view(resource["id"], ports.store.get(KIND, resource["id"]))


def put(ports: Ports, resource: dict[str, Any], body: BackupScheduleUpdate) -> dict[str, Any]:
    """Validate, then create/replace/delete the resource's two schedules and store the
    settings. Idempotent."""
    expressions = {
        backup_type: normalized(getattr(body, field), field) for backup_type, field in TYPES.items()
    }
    kind = backup_records.resource_kind(resource)
    for backup_type, expression in expressions.items():
        name = schedule_name(resource["id"], backup_type)
        if expression is None:
            ports.scheduler.delete(name)
            continue
        payload = {
            "task": "backup",
            "resource_id": resource["id"],
            "resource_kind": kind,
            "type": backup_type,
        }
        ports.scheduler.put(Schedule(name, expression, payload, enabled=body.enabled))
    ports.scheduler.put(EXPIRY_SCHEDULE)
    settings = {
        "full_backup_cron": expressions["full"],
        "incremental_backup_cron": expressions["incremental"],
        "retention_days": body.retention_days,
        "enabled": body.enabled,
        "updated_at": utcnow_iso(),
    }
    current = ports.store.get(KIND, resource["id"])
    if current is None:
        record = ports.store.create(
            KIND,
            {
                "id": resource["id"],
                "tenant_id": resource["tenant_id"],
                "parent_id": resource["id"],
                "resource_kind": kind,
                "created_at": utcnow_iso(),
                **settings,
            },
        )
    else:
        record = ports.store.update(KIND, resource["id"], settings, current["revision"])
    return view(resource["id"], record)


def apply_tenant_default(ports: Ports, resource: dict[str, Any]) -> str | None:
    """Give a new resource its tenant's default backup schedule, unless it has a schedule
    already (a retried step, a migration that carried one over) or the tenant set none.
    Returns what it did, for the step's reason (None: nothing)."""
    chosen = tenant_settings.overrides(ports, resource.get("tenant_id"), "backup")
    if not (chosen.get("full_backup_cron") or chosen.get("incremental_backup_cron")):
        return None
    if ports.store.get(KIND, resource["id"]) is not None:
        return None
    body = BackupScheduleUpdate(
        full_backup_cron=chosen.get("full_backup_cron"),
        incremental_backup_cron=chosen.get("incremental_backup_cron"),
        retention_days=backup_records.default_retention(ports, resource.get("tenant_id")).days,
    )
    view = put(ports, resource, body)
    shown = ", ".join(f"{t} {view[f]}" for t, f in TYPES.items() if view[f])
    return f"the tenant's default backup schedule ({shown}; kept {view['retention_days']} days)"


def remove(ports: Ports, resource_id: str) -> str:
    """Delete the resource's schedules and settings. Idempotent."""
    for backup_type in TYPES:
        ports.scheduler.delete(schedule_name(resource_id, backup_type))
    ports.store.delete(KIND, resource_id)
    return "backup schedules removed"
