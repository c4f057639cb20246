"""Backup schedules: what a user sets, and what pgfleet shows of it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pgfleet.core.models import StrictModel


class BackupScheduleUpdate(StrictModel):
    full_backup_cron: str | None = Field(
        default=None,
        max_length=256,
        description="EventBridge Scheduler expression for full backups: cron(0 3 * * ? *), rate(1 day), or the "
        "six cron fields alone. null: none.",
        examples=["cron(0 3 * * ? *)"],
    )
    incremental_backup_cron: str | None = Field(
        default=None, max_length=256, description="Expression for incremental backups. null: none."
    )
    retention_days: int = Field(default=7, ge=1, le=3650, description="How long each backup is kept.")
    enabled: bool = True


class BackupScheduleView(BaseModel):
    resource_id: str
    full_backup_cron: str | None
    incremental_backup_cron: str | None
    retention_days: int
    enabled: bool
    next_full_backup_at: str | None = None
    next_incremental_backup_at: str | None = None
    updated_at: str | None = None
