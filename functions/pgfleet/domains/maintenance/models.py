"""Seed 003, phase 3 (automated maintenance), camelCase on the wire with the seed's own
spellings (`taskSQL`, `memoryLimitMB`, `ioLimitMBPS`, `diskIOMB`, `spaceReclaimedMB`).

Additions in the seed's style: `targetId` and `database` on a task (the scope rule of the
locks issue: a task without `targetId` runs on every running server of its tenant), the
maintenance windows' own CRUD (`/maintenance/windows`), `resourceLimitsApplied` on an
execution, `statements` on a dry run, `allowVacuumFull` on optimize."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel

TaskType = Literal["VACUUM", "ANALYZE", "REINDEX", "CLEANUP", "BACKUP", "OPTIMIZE"]
Category = Literal["ROUTINE", "PERFORMANCE", "SECURITY", "COMPLIANCE"]
Frequency = Literal["HOURLY", "DAILY", "WEEKLY", "MONTHLY"]
ExecutionStatus = Literal["INITIATED", "RUNNING", "COMPLETED", "FAILED"]
OptimizationType = Literal["VACUUM", "ANALYZE", "REINDEX", "ALL"]
CleanupCategory = Literal["AUDIT", "SESSION", "MONITORING", "BACKUP"]
ResultStatus = Literal["COMPLETED", "FAILED", "SKIPPED"]
ReportType = Literal["EXECUTION_SUMMARY", "PERFORMANCE_IMPACT", "OPTIMIZATION_RESULTS"]
ReportFormat = Literal["JSON", "CSV", "PDF"]
Goal = Literal["MINIMIZE_IMPACT", "MAXIMIZE_EFFICIENCY", "BALANCE"]
TaskFunction = Literal[
    "vacuum_bloated_tables", "analyze_stale_tables", "reindex_bloated_indexes", "refresh_materialized_views",
    "freeze_old_tables", "cleanup_history", "backup_full",
]  # fmt: skip
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
TASK_ID_PATTERN = r"^mtk-[0-9a-f]{12}$"
EXECUTION_ID_PATTERN = r"^mex-[0-9a-f]{12}$"
WINDOW_ID_PATTERN = r"^mwn-[0-9a-f]{12}$"
TARGET_PATTERN = r"^pg[ic]-[0-9a-f]{12}$"


class TimeWindow(StrictCamelModel):
    """A daily window in UTC, `HH:MM` to `HH:MM` (an end before the start runs past midnight)."""

    start: str = Field(pattern=TIME_PATTERN)
    end: str = Field(pattern=TIME_PATTERN)

    @field_validator("end")
    @classmethod
    def _not_empty(cls, end: str, info: object) -> str:
        data = getattr(info, "data", {}) or {}
        if data.get("start") is not None and _minutes(data["start"]) == _minutes(end):
            raise ValueError("the window's end equals its start: it would be empty")
        return end


def _minutes(text: str) -> int:
    parts = text.split(":")
    return int(parts[0]) * 60 + int(parts[1])


class TaskSchedule(StrictCamelModel):
    frequency: Frequency
    cron_expression: str = Field(
        min_length=9, max_length=120,
        description="Five fields (`0 2 * * *`, minute hour day month weekday, 0 = Sunday) or "
        "EventBridge's `cron(0 2 * * ? *)`; UTC.",
    )  # fmt: skip
    maintenance_window: TimeWindow | None = None


class ResourceLimits(StrictCamelModel):
    cpu_limit_percent: float | None = Field(default=None, gt=0, le=100)
    memory_limit_mb: int | None = Field(default=None, alias="memoryLimitMB", ge=1, le=2_097_151)
    io_limit_mbps: float | None = Field(default=None, alias="ioLimitMBPS", gt=0, le=100_000)


class NotificationSettings(StrictCamelModel):
    on_success: bool = False
    on_failure: bool = True
    recipients: list[str] = Field(
        default_factory=list, max_length=20,
        description="Notification channels (`nch-...`) of the monitoring API; empty: every channel "
        "of the task's tenant that takes the severity (LOW on success, HIGH on failure).",
    )  # fmt: skip

    @field_validator("recipients")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.match(r"^nch-[0-9a-f]{12}$", item):
                raise ValueError(f"{item!r} is not a notification channel id (nch-...)")
        return value


class TaskConfiguration(StrictCamelModel):
    max_execution_time: float = Field(
        default=10, gt=0, le=14, description="Minutes: the statement_timeout of every statement (at most 14)."
    )
    retry_attempts: int = Field(default=0, ge=0, le=10)
    retry_delay: float = Field(default=1, ge=0, le=60, description="Minutes between attempts.")
    requires_exclusive_lock: bool = False
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)
    notification_settings: NotificationSettings = Field(default_factory=NotificationSettings)


class TaskCreate(StrictCamelModel):
    task_name: str = Field(min_length=1, max_length=128)
    task_type: TaskType
    category: Category = "ROUTINE"
    description: str = Field(default="", max_length=1000)
    task_sql: str | None = Field(default=None, alias="taskSQL", min_length=1, max_length=10_000)
    task_function: TaskFunction | None = None
    schedule: TaskSchedule
    configuration: TaskConfiguration = Field(default_factory=TaskConfiguration)
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=TARGET_PATTERN)
    database: str | None = Field(default=None, min_length=1, max_length=63)
    priority: int = Field(default=5, ge=1, le=10, description="1 runs first.")
    is_enabled: bool = True


class TaskUpdate(StrictCamelModel):
    task_name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=1000)
    schedule: TaskSchedule | None = None
    configuration: TaskConfiguration | None = None
    is_enabled: bool | None = None
    priority: int | None = Field(default=None, ge=1, le=10)


class PeakValues(CamelModel):
    cpu: float | None = None
    memory: float | None = None
    disk_io: float | None = Field(default=None, alias="diskIO")


class ResourceUsage(CamelModel):
    cpu_usage_percent: float | None = None
    memory_usage_mb: float | None = Field(default=None, alias="memoryUsageMB")
    disk_io_mb: float | None = Field(default=None, alias="diskIOMB")
    peak_values: PeakValues = Field(default_factory=PeakValues)
    source: str | None = Field(
        default=None, description="`proc`: the backend's /proc counters; null: not on this host."
    )


class TaskExecution(CamelModel):
    execution_id: str
    task_id: str | None = None
    task_name: str
    task_type: str | None = None
    kind: Literal["task", "optimization"] = "task"
    target_id: str | None = None
    targets: list[str] = Field(default_factory=list)
    status: ExecutionStatus
    triggered_by: str | None = None
    dry_run: bool = False
    scheduled_for: str | None = Field(default=None, description="Set while it waits for its window.")
    start_time: str | None = None
    end_time: str | None = None
    duration: float | None = None
    progress: float | None = None
    current_object: str | None = None
    rows_affected: int | None = None
    space_reclaimed: int | None = Field(default=None, description="Bytes: relation sizes before minus after.")
    error_message: str | None = None
    performance_impact: float | None = Field(
        default=None,
        description="0-100: the backend's share of the server's CPU time over the run (cgroup or /proc).",
    )
    resource_usage: ResourceUsage = Field(default_factory=ResourceUsage)
    resource_limits_applied: list[str] = Field(default_factory=list)
    attempts: int = 0
    statements: list[dict[str, object]] = Field(default_factory=list)
    operation_id: str | None = None


class MaintenanceTask(CamelModel):
    task_id: str
    task_name: str
    task_type: str
    category: str
    description: str
    schedule: TaskSchedule
    is_enabled: bool
    priority: int
    last_execution: TaskExecution | None = None
    next_execution: str | None = None
    configuration: TaskConfiguration
    task_sql: str | None = Field(default=None, alias="taskSQL")
    task_function: str | None = None
    tenant_id: str
    target_id: str | None = None
    database: str | None = None
    schedule_expression: str = Field(description="The EventBridge Scheduler expression the task fires on.")
    created_at: str
    updated_at: str


class MaintenanceTaskSummary(CamelModel):
    total_tasks: int
    enabled_tasks: int
    disabled_tasks: int
    by_type: dict[str, int]


class MaintenanceTaskListResponse(CamelModel):
    tasks: list[MaintenanceTask]
    pagination: Pagination
    summary: MaintenanceTaskSummary


class TaskDeleted(CamelModel):
    task_id: str
    deleted: bool = True


class ExecuteTaskRequest(StrictCamelModel):
    triggered_by: str | None = Field(default=None, max_length=128)
    override_schedule: bool = False
    dry_run: bool = False


class ExecuteTaskResponse(CamelModel):
    execution_id: str
    status: ExecutionStatus
    estimated_duration: float | None = Field(
        default=None, description="Seconds: the median of this task's completed runs; null before its first."
    )
    message: str
    statements: list[dict[str, object]] = Field(default_factory=list)
    scheduled_for: str | None = None


class ExecutionListResponse(CamelModel):
    executions: list[TaskExecution]
    pagination: Pagination


class DatabaseOptimizeRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=TARGET_PATTERN)
    database: str | None = Field(default=None, min_length=1, max_length=63)
    optimization_type: OptimizationType
    dry_run: bool = False
    max_duration: float | None = Field(default=None, gt=0, le=14, description="Minutes (at most 14).")
    maintenance_window: TimeWindow | None = None
    allow_vacuum_full: bool = Field(
        default=False,
        description="VACUUM FULL (an ACCESS EXCLUSIVE lock) on the bloated tables: never without it.",
    )


class OptimizationResult(CamelModel):
    type: str
    objects_processed: int
    space_reclaimed_mb: float = Field(alias="spaceReclaimedMB")
    performance_improvement_percent: float | None = Field(
        default=None, description="Null: no measure of it exists for this kind of work (not invented)."
    )
    duration: float
    status: ResultStatus
    details: str


class OptimizationSummary(CamelModel):
    objects_selected: int
    objects_processed: int
    total_space_reclaimed_mb: float = Field(alias="totalSpaceReclaimedMB")
    duration: float | None = None
    choices: list[dict[str, object]] = Field(default_factory=list)


class DatabaseOptimizeResponse(CamelModel):
    optimization_id: str
    status: ExecutionStatus
    optimizations: list[OptimizationResult]
    summary: OptimizationSummary
    scheduled_for: str | None = None
    operation_id: str | None = None


class DataCleanupRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    categories: list[CleanupCategory] = Field(min_length=1, max_length=4)
    dry_run: bool = False
    custom_retention_policies: dict[CleanupCategory, float] | None = Field(
        default=None,
        description="Days per category (fractions allowed); AUDIT never below its legal retention.",
    )

    @field_validator("custom_retention_policies")
    @classmethod
    def _positive(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, days in (value or {}).items():
            if days < 0 or days > 3650:
                raise ValueError(f"{key}: retention days must be 0 to 3650")
        return value


class CleanupResult(CamelModel):
    category: str
    records_identified: int
    records_deleted: int
    space_freed_mb: float = Field(alias="spaceFreedMB")
    retention_period_days: float
    status: ResultStatus
    details: str = ""


class CleanupSummary(CamelModel):
    dry_run: bool
    total_identified: int
    total_deleted: int
    total_space_freed_mb: float = Field(alias="totalSpaceFreedMB")


class DataCleanupResponse(CamelModel):
    cleanup_id: str
    status: str
    results: list[CleanupResult]
    summary: CleanupSummary


class WindowCreate(StrictCamelModel):
    name: str = Field(min_length=1, max_length=128)
    start_time: str = Field(pattern=TIME_PATTERN)
    end_time: str = Field(pattern=TIME_PATTERN)
    days_of_week: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6], min_length=1, max_length=7)
    is_active: bool = True
    allowed_task_types: list[TaskType] = Field(default_factory=list, description="Empty: every type.")
    tenant_id: str | None = Field(default=None, max_length=128)

    @field_validator("days_of_week")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in value):
            raise ValueError("days of the week are 0 (Sunday) to 6")
        return sorted(set(value))


class WindowUpdate(StrictCamelModel):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    start_time: str | None = Field(default=None, pattern=TIME_PATTERN)
    end_time: str | None = Field(default=None, pattern=TIME_PATTERN)
    days_of_week: list[int] | None = Field(default=None, min_length=1, max_length=7)
    is_active: bool | None = None
    allowed_task_types: list[TaskType] | None = None


class MaintenanceWindow(CamelModel):
    window_id: str
    name: str
    start_time: str
    end_time: str
    days_of_week: list[int]
    is_active: bool
    allowed_task_types: list[str]
    tenant_id: str


class WindowDeleted(CamelModel):
    window_id: str
    deleted: bool = True


class ResourceRequirements(CamelModel):
    exclusive_lock: bool
    cpu_limit_percent: float | None = None
    memory_limit_mb: int | None = Field(default=None, alias="memoryLimitMB")
    io_limit_mbps: float | None = Field(default=None, alias="ioLimitMBPS")
    targets: list[str] = Field(default_factory=list)


class ScheduledTask(CamelModel):
    task_id: str
    task_name: str
    scheduled_time: str
    estimated_duration: float = Field(description="Seconds: median of its runs, else the default below.")
    estimated_from: Literal["executions", "default"]
    priority: int
    resource_requirements: ResourceRequirements
    dependencies: list[str]


class ScheduleConflict(CamelModel):
    conflict_type: Literal["RESOURCE", "TIME", "DEPENDENCY"]
    affected_tasks: list[str]
    description: str
    suggested_resolution: str


class MaintenanceScheduleResponse(CamelModel):
    upcoming_tasks: list[ScheduledTask]
    maintenance_windows: list[MaintenanceWindow]
    conflicts: list[ScheduleConflict]


class TimeRangeBody(StrictCamelModel):
    start: str
    end: str


class SchedulingConstraints(StrictCamelModel):
    max_concurrent_tasks: int = Field(default=1, ge=1, le=100)
    maintenance_windows: list[str] = Field(
        default_factory=list, description="Window ids; empty: every active one."
    )
    excluded_time_ranges: list[TimeRangeBody] = Field(default_factory=list, max_length=50)
    resource_limits: ResourceLimits | None = None


class ScheduleOptimizeRequest(StrictCamelModel):
    time_horizon: int = Field(default=24, ge=1, le=24 * 31, description="Hours.")
    optimization_goal: Goal = "BALANCE"
    constraints: SchedulingConstraints = Field(default_factory=SchedulingConstraints)
    apply: bool = Field(default=False, description="Change the tasks' schedules to the proposal.")


class ProposedChange(CamelModel):
    task_id: str
    task_name: str
    current_cron_expression: str
    proposed_cron_expression: str
    proposed_time: str
    window_id: str | None
    reason: str


class ScheduleOptimizeResponse(CamelModel):
    optimization_goal: str
    applied: bool
    changes: list[ProposedChange]
    conflicts_before: list[ScheduleConflict]
    conflicts_after: list[ScheduleConflict]
    unresolved: list[str]


class HealthIndicator(CamelModel):
    category: str
    status: Literal["HEALTHY", "WARNING", "CRITICAL"]
    value: float | None
    threshold: float
    trend: Literal["IMPROVING", "STABLE", "DEGRADING"] | None = Field(
        default=None, description="Against the previous dashboard read of the same scope; null on the first."
    )
    target_id: str | None = None
    detail: str = ""


class MaintenanceHealthStatus(CamelModel):
    overall_status: Literal["HEALTHY", "WARNING", "CRITICAL"]
    indicators: list[HealthIndicator]
    recommendations: list[str]


class MaintenanceSummary(CamelModel):
    total_tasks: int
    active_tasks: int
    success_rate: float | None
    avg_execution_time: float | None
    tasks_executed_today: int
    next_maintenance_window: str | None


class MaintenanceTrend(CamelModel):
    date: str
    executions: int
    completed: int
    failed: int
    space_reclaimed: int
    avg_duration: float | None


class MaintenanceDashboardResponse(CamelModel):
    summary: MaintenanceSummary
    recent_executions: list[TaskExecution]
    upcoming_tasks: list[ScheduledTask]
    system_health: MaintenanceHealthStatus
    trends: list[MaintenanceTrend]
