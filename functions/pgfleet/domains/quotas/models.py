"""Quotas of an instance or a cluster: storage and connection limits, alert thresholds, and
scale to zero (auto-pause)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pgfleet.core.models import StrictModel


class AlertThresholds(StrictModel):
    storage_percent: int = Field(
        default=80, ge=1, le=100, description="Alert when storage reaches this % of max_storage_mb."
    )
    connections_percent: int = Field(
        default=90, ge=1, le=100, description="Alert when connections reach this % of max_connections."
    )


class QuotaUpdate(StrictModel):
    """The whole quota document of a resource (PUT replaces it)."""

    max_storage_mb: int | None = Field(
        default=None,
        ge=1,
        le=64 * 1024 * 1024,
        description="Storage of all databases, in MB. Over it, writes of the application user and of every "
        "tenant are refused (reads, DELETE and TRUNCATE keep working) until usage drops under it. "
        "Absent: unlimited.",
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Concurrent sessions of the application user (tenants have their own limits). Absent: unlimited.",
    )
    alert_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    auto_pause_after_minutes: int | None = Field(
        default=None,
        ge=1,
        le=7 * 24 * 60,
        description="Scale to zero: pause the resource after this many minutes without any client session "
        "(checked every minute). Absent: never.",
    )


class QuotaUsage(BaseModel):
    storage_mb: float = Field(description="Size of all databases, in MB.")
    data_directory_mb: float = Field(description="Databases plus WAL: what the storage limit applies to.")
    connections: int = Field(description="Client sessions (non-superuser), all nodes.")
    measured_at: str


class Quota(BaseModel):
    resource_id: str
    resource_type: Literal["instance", "cluster"]
    max_storage_mb: int | None = None
    max_connections: int | None = None
    alert_thresholds: AlertThresholds
    auto_pause_after_minutes: int | None = None
    storage_limit_mb: int = Field(
        description="The resource's storage (GB) in MB: a limit on its data directory."
    )
    usage: QuotaUsage | None = Field(
        default=None, description="The last measurement (every minute while running)."
    )
    writes_suspended: bool = False
    status_reason: str = ""
    updated_at: str | None = None
