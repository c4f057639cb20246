"""Single PostgreSQL instances: what a user asks for (Create) and what exists (Instance)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from pgfleet.core.models import (
    RESERVED_ROLE_NAMES,
    Credentials,
    Endpoint,
    ResourceName,
    SqlIdentifier,
    StrictModel,
)

InstanceStatus = Literal[
    "creating", "running", "stopping", "stopped", "starting", "restarting", "deleting", "failed",
    # pause/resume (scale to zero) and resize
    "pausing", "paused", "resuming", "resizing",
    # backups: a restore in place
    "restoring",
]  # fmt: skip

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
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_ROLE_NAMES or value.startswith("pg_"):
            raise ValueError(f"'{value}' is reserved")
        return value


class Instance(BaseModel):
    id: str
    name: str
    tenant_id: str
    status: InstanceStatus
    status_reason: str = Field(default="", description="Why the instance is in this status.")
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
