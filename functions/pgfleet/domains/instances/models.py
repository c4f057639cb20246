"""Single PostgreSQL instances: what a user asks for (Create) and what exists (Instance)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from pgfleet.core.models import (
    Credentials,
    Endpoint,
    PoolerEndpoint,
    ResourceName,
    SqlIdentifier,
    StrictModel,
    reserved_database,
    reserved_role,
)

InstanceStatus = Literal[
    "creating", "running", "stopping", "stopped", "starting", "restarting", "deleting", "failed",
    # pause/resume (scale to zero) and resize
    "pausing", "paused", "resuming", "resizing",
    # backups: a restore in place
    "restoring",
    # upgrades: a major-version upgrade
    "upgrading",
]  # fmt: skip

# The first full backup runs as its own operation once the server accepts connections; the
# restorable window starts when it completes (instances and clusters alike).
BackupStatus = Literal["pending", "running", "completed", "failed"]
FirstBackupId = Field(
    default=None,
    description="The first full backup, started as its own operation as soon as the server accepts "
    "connections (null before).",
)
BackupStatusField = Field(
    default=None,
    description="Whether anything is restorable yet. pending or running: the first full backup is on its way and "
    "a restore is refused (409) until it completes; completed: restorable from the first backup on (GET "
    ".../backups shows the restorable window); failed: nothing is restorable until a backup completes (POST "
    ".../backup). null while the server is created.",
)
BackupStatusReason = Field(
    default="", description="Why: the first backup and its operation, when it completed, or why it failed."
)

Cpu = Field(default=1, ge=1, le=64, description="vCPUs.")
Memory = Field(default=1024, ge=256, le=262144, description="Memory in MB.")
Storage = Field(default=10, ge=1, le=65536, description="Storage in GB.")


class InstanceCreate(StrictModel):
    name: ResourceName
    version: str = Field(default="15", pattern=r"^\d{2}$", description="PostgreSQL major version.")
    cpu: int = Cpu
    memory: int = Memory
    storage: int = Storage
    database: SqlIdentifier = Field(default="app", description="Database created for the application.")
    username: SqlIdentifier = Field(default="app_admin", description="Owner of the database.")

    @field_validator("username")
    @classmethod
    def _not_a_platform_role(cls, value: str) -> str:
        if reserved_role(value):
            raise ValueError(f"'{value}' is reserved: the platform uses it or names its own roles so")
        return value

    @field_validator("database")
    @classmethod
    def _not_a_system_database(cls, value: str) -> str:
        if reserved_database(value):
            raise ValueError(f"'{value}' is reserved: every server has a database of that name")
        return value


class Instance(BaseModel):
    id: str
    name: str
    tenant_id: str
    status: InstanceStatus
    status_reason: str = Field(default="", description="Why the instance is in this status.")
    engine: str = Field(
        default="local",
        description="The engine that serves it: local (PostgreSQL, Patroni and pgBackRest on the control plane's hosts).",
    )
    version: str
    cpu: int
    memory: int
    storage: int
    endpoint: Endpoint
    database: str
    username: str
    created_at: str
    updated_at: str
    operation_id: str | None = Field(default=None, description="The last operation on this instance.")
    pooler: PoolerEndpoint | None = Field(
        default=None, description="PgBouncer in front of it, when configured."
    )
    first_backup_id: str | None = FirstBackupId
    backup_status: BackupStatus | None = BackupStatusField
    backup_status_reason: str = BackupStatusReason


class InstanceCreated(Instance):
    credentials: Credentials = Field(description="Shown once: the password is not returned again.")


class InstanceList(BaseModel):
    instances: list[Instance]
    next_token: str | None = None


class InstanceStats(BaseModel):
    connections: dict[str, int] = Field(description="active, idle, total, max")
    database_size_bytes: int
    uptime_seconds: float
    commits: int
    rollbacks: int
    cache_hit_ratio: float
    deadlocks: int
    collected_at: str


class LogEntry(BaseModel):
    timestamp: str
    severity: str
    message: str


class InstanceLogs(BaseModel):
    lines: list[LogEntry]
