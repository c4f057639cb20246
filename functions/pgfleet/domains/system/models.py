"""The audit trail's wire shapes (seed 003, "Audit Trail APIs"): camelCase, as the seed's
AuditEvent; snake_case in storage (pgfleet.core.audit)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel
from pgfleet.domains.system.tenant_settings import (
    BackupSettings,
    MaintenanceSettings,
    MonitoringSettings,
    PerformanceSettings,
)

AuditResult = Literal["SUCCESS", "FAILURE", "PARTIAL"]


class AuditEvent(CamelModel):
    event_id: str
    timestamp: str
    user_id: str = Field(
        description="The token's subject; `anonymous` without a valid token, `system` for the control plane's own work."
    )
    tenant_id: str | None = Field(
        description="The tenant of the caller's token (`*`: a platform token); null without a valid token."
    )
    action: str = Field(
        description='"<METHOD> <route>" of an API call, "<operation type>/<step>" of an operation step.'
    )
    resource: str = Field(
        description="The path called, or the id of the resource an operation step works on."
    )
    details: dict[str, Any] = Field(
        description="Method, path, status code, query and body (secrets redacted), error code, duration."
    )
    ip_address: str | None
    user_agent: str | None
    result: AuditResult


class CountItem(CamelModel):
    name: str
    count: int


class TimeWindow(CamelModel):
    start: str
    end: str


class AuditSummary(CamelModel):
    """Over every event that matches the query, not only the page."""

    total_events: int
    by_result: dict[str, int] = Field(description="SUCCESS / FAILURE / PARTIAL counts.")
    unauthenticated: int = Field(description="Calls answered 401 (no or invalid token).")
    denied: int = Field(description="Calls answered 403 (the role may not).")
    rate_limited: int = Field(description="Calls answered 429.")
    unique_users: int
    top_actions: list[CountItem] = Field(description="The most frequent actions, at most 10.")
    time_range: TimeWindow


class AuditTrailResponse(CamelModel):
    events: list[AuditEvent]
    pagination: Pagination
    summary: AuditSummary


# --- configuration and status -------------------------------------------------------------------

Section = Literal["DATABASE", "PERFORMANCE", "MAINTENANCE", "MONITORING", "BACKUP"]


class UpdateConfigurationRequest(StrictCamelModel):
    section: Section = Field(
        description="DATABASE: a server's PostgreSQL settings (targetId), by the seed's names or their own. "
        "PERFORMANCE, MAINTENANCE, MONITORING, BACKUP: pgfleet's own settings of a tenant (tenantId; a tenant "
        "token: its own), in effect at once; null puts a setting back to its default."
    )
    configuration: dict[str, Any] = Field(min_length=1, max_length=50)
    target_id: str | None = Field(
        default=None, pattern=r"^pg[ic]-[0-9a-f]{12}$",
        description="DATABASE: the server. Other sections: optional, names the tenant by one of its servers.",
    )  # fmt: skip
    apply_immediately: bool | None = Field(
        default=None,
        description="DATABASE only: restart now (an operation) when a setting needs it; else it waits.",
    )
    schedule_restart: str | None = Field(
        default=None, description="DATABASE only: ISO 8601: restart then (an at() schedule)."
    )


class SystemConfigurationResponse(CamelModel):
    database: dict[str, Any] | None = Field(
        description="The target's settings (seed names, then every setting read under `settings`); null without targetId."
    )
    database_note: str | None = None
    tenant_id: str | None = Field(
        default=None, description="The tenant of performance, maintenance, monitoring and backup."
    )
    performance: PerformanceSettings | None = None
    maintenance: MaintenanceSettings | None = None
    monitoring: MonitoringSettings | None = None
    backup: BackupSettings | None = None
    tenant_note: str | None = None


class UpdateConfigurationResponse(CamelModel):
    section: str
    target_id: str | None = Field(default=None, description="DATABASE: the server changed.")
    tenant_id: str | None = Field(
        default=None, description="The tenant changed (sections other than DATABASE)."
    )
    applied: dict[str, Any] = Field(
        description="DATABASE: settings in effect now (reloaded). Other sections: each setting given, its new value."
    )
    pending_restart: list[str]
    operation_id: str | None
    scheduled_restart: str | None
    previous: dict[str, Any]
    message: str
    database: dict[str, Any] | None = None
    performance: PerformanceSettings | None = None
    maintenance: MaintenanceSettings | None = None
    monitoring: MonitoringSettings | None = None
    backup: BackupSettings | None = None


class ComponentStatus(CamelModel):
    component: str
    status: str
    version: str | None = None
    last_check: str
    details: dict[str, Any]


class VersionInfo(CamelModel):
    control_plane: str
    api: str
    postgres_versions: list[str]


class SystemStatusResponse(CamelModel):
    overall: Literal["HEALTHY", "WARNING", "CRITICAL", "MAINTENANCE", "UNKNOWN"]
    components: list[ComponentStatus]
    version: VersionInfo
    uptime: float = Field(description="Seconds since the API process answering started.")
    last_restart: str


class ResourceCapacity(CamelModel):
    used: float
    total: float
    utilization_percent: float
    trend: Literal["INCREASING", "STABLE", "DECREASING"] | None = Field(
        description="From the forecasts' growth rates; null before any growth analysis."
    )
    unit: str


class CapacityMetrics(CamelModel):
    cpu: ResourceCapacity | None
    memory: ResourceCapacity | None
    disk: ResourceCapacity | None
    connections: ResourceCapacity | None


class ServerCapacity(CamelModel):
    target_id: str
    resource_id: str
    resource_type: str
    used: float
    total: float | None
    utilization_percent: float | None
    status: str
    unit: str | None
    measured_at: str


class CapacityProjection(CamelModel):
    resource_type: str
    resource_id: str
    pattern_type: str | None
    current: float
    projected30d: float | None = Field(alias="projected30d")
    projected90d: float | None = Field(alias="projected90d")
    time_to_capacity_days: float | None
    priority: str


class CapacityRecommendation(CamelModel):
    resource_type: str
    resource_id: str
    priority: str
    action: str


class CapacityResponse(CamelModel):
    current: CapacityMetrics
    servers: list[ServerCapacity]
    projected: list[CapacityProjection]
    recommendations: list[CapacityRecommendation]
