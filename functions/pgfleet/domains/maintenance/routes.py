"""/api/v1/maintenance (seed 003, phase 3): tasks, executions, optimize, cleanup, schedule,
windows, dashboard, reports. Reads need `maintenance:read`; execute, optimize and cleanup
`maintenance:execute`; task and window changes `maintenance:create|update|delete`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.paging import Page, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains.maintenance import (
    cleanup,
    dashboard,
    executions,
    optimize,
    reports,
    schedule,
    tasks,
    windows,
)
from pgfleet.domains.maintenance.models import (
    EXECUTION_ID_PATTERN,
    TASK_ID_PATTERN,
    WINDOW_ID_PATTERN,
    Category,
    DatabaseOptimizeRequest,
    DatabaseOptimizeResponse,
    DataCleanupRequest,
    DataCleanupResponse,
    ExecuteTaskRequest,
    ExecuteTaskResponse,
    ExecutionListResponse,
    ExecutionStatus,
    MaintenanceDashboardResponse,
    MaintenanceScheduleResponse,
    MaintenanceTask,
    MaintenanceTaskListResponse,
    MaintenanceTaskSummary,
    MaintenanceWindow,
    ReportFormat,
    ReportType,
    ScheduleOptimizeRequest,
    ScheduleOptimizeResponse,
    TaskCreate,
    TaskDeleted,
    TaskExecution,
    TaskType,
    TaskUpdate,
    WindowCreate,
    WindowDeleted,
    WindowUpdate,
)
from pgfleet.ports.metadata import Range

router = Router()

TaskId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="`mtk-...`")]
ExecutionId = Annotated[str, Path(pattern=EXECUTION_ID_PATTERN, description="`mex-...`")]
WindowId = Annotated[str, Path(pattern=WINDOW_ID_PATTERN, description="`mwn-...`")]
HISTORY_DAYS = 90


def execution_view(record: dict | None) -> TaskExecution | None:  # type: ignore[type-arg]
    if record is None:
        return None
    return TaskExecution.model_validate({**record, "execution_id": record["id"]})


def task_view(record: dict) -> MaintenanceTask:  # type: ignore[type-arg]
    last = (
        ports().store.get(executions.KIND, record["last_execution_id"])
        if record.get("last_execution_id")
        else None
    )
    return MaintenanceTask.model_validate({
        **record, "task_id": record["id"], "last_execution": execution_view(last),
        "next_execution": executions.iso(tasks.next_execution(record)),
    })  # fmt: skip


# --- tasks -----------------------------------------------------------------------------------


@router.get("/tasks", summary="Maintenance tasks in scope, with their last and next execution")
@requires("maintenance:read")
def list_tasks(
    tenant_id: TenantId = None,
    task_type: Annotated[TaskType | None, Query(alias="taskType")] = None,
    category: Annotated[Category | None, Query()] = None,
    is_enabled: Annotated[bool | None, Query(alias="isEnabled")] = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> MaintenanceTaskListResponse:
    found = tasks.visible(ports(), principal(router), tenant_id)
    found = [t for t in found if (task_type is None or t["task_type"] == task_type)
             and (category is None or t["category"] == category) and (is_enabled is None or t["is_enabled"] == is_enabled)]  # fmt: skip
    found.sort(key=lambda t: (int(t.get("priority") or 5), t["created_at"], t["id"]))
    query = PageQuery(page=page, page_size=page_size)
    shown = Page.of(found[query.offset : query.offset + page_size], len(found), query)
    by_type: dict[str, int] = {}
    for t in found:
        by_type[t["task_type"]] = by_type.get(t["task_type"], 0) + 1
    enabled = sum(1 for t in found if t["is_enabled"])
    return MaintenanceTaskListResponse(
        tasks=[task_view(t) for t in shown.items], pagination=shown.pagination,
        summary=MaintenanceTaskSummary(total_tasks=len(found), enabled_tasks=enabled, disabled_tasks=len(found) - enabled,
                                       by_type=by_type),
    )  # fmt: skip


@router.post(
    "/tasks", summary="Create a maintenance task; its cron becomes an EventBridge schedule", status_code=201
)
@requires("maintenance:create")
def create_task(body: TaskCreate) -> MaintenanceTask:
    return task_view(tasks.create(ports(), principal(router), body))


@router.get("/tasks/<task_id>", summary="One maintenance task")
@requires("maintenance:read")
def get_task(task_id: TaskId) -> MaintenanceTask:
    return task_view(tasks.get(ports(), principal(router), task_id))


@router.put("/tasks/<task_id>", summary="Change a maintenance task (its schedule follows)")
@requires("maintenance:update")
def update_task(task_id: TaskId, body: TaskUpdate) -> MaintenanceTask:
    return task_view(tasks.update(ports(), principal(router), task_id, body))


@router.delete("/tasks/<task_id>", summary="Delete a maintenance task and its schedule (its executions stay)")
@requires("maintenance:delete")
def delete_task(task_id: TaskId) -> TaskDeleted:
    tasks.delete(ports(), principal(router), task_id)
    return TaskDeleted(task_id=task_id)


@router.post(
    "/tasks/<task_id>/execute",
    summary="Run a task now (or when its window opens); dryRun lists the statements and objects, changing nothing",
    status_code=202,
)
@requires("maintenance:execute")
def execute_task(task_id: TaskId, body: ExecuteTaskRequest) -> ExecuteTaskResponse:
    caller = principal(router)
    task = tasks.get(ports(), caller, task_id)
    label = (
        f"{body.triggered_by} ({caller.sub})" if body.triggered_by else caller.sub
    )  # who, whatever the label
    record = executions.execute_task(
        ports(), task, triggered_by=label, override=body.override_schedule, dry_run=body.dry_run
    )  # fmt: skip
    if record["dry_run"]:
        message = f"dry run: {len(record['statements'])} statement(s) would run; nothing changed"
    elif record["scheduled_for"]:
        message = f"outside its window: waits for it, starting at {record['scheduled_for']}"
    else:
        message = f"started (operation {record['operation_id']})"
    return ExecuteTaskResponse(
        execution_id=record["id"], status=record["status"], estimated_duration=executions.median_duration(ports(), task_id),
        message=message, statements=record["statements"] if record["dry_run"] else [], scheduled_for=record["scheduled_for"],
    )  # fmt: skip


# --- executions ------------------------------------------------------------------------------


@router.get(
    "/executions/<execution_id>", summary="One execution: progress, rows, space reclaimed, resource use"
)
@requires("maintenance:read")
def get_execution(execution_id: ExecutionId) -> TaskExecution:
    view = execution_view(executions.get(ports(), principal(router), execution_id))
    assert view is not None
    return view


@router.get("/executions", summary="The execution history, newest first")
@requires("maintenance:read")
def list_executions(
    tenant_id: TenantId = None,
    task_id: Annotated[str | None, Query(alias="taskId", pattern=TASK_ID_PATTERN)] = None,
    status: Annotated[ExecutionStatus | None, Query()] = None,
    time_range_text: Annotated[str | None, Query(alias="timeRange", max_length=100)] = None,
    page: PageNumber = 1,
    page_size: PageSize = 20,
) -> ExecutionListResponse:
    caller = principal(router)
    span = time_range.parse(time_range_text, default=timedelta(days=30), max_age=timedelta(days=HISTORY_DAYS))
    filters: dict[str, object] = {"created_at": Range(executions.iso(span.start), executions.iso(span.end))}
    if status is not None:
        filters["status"] = status
    if task_id is not None:
        filters["task_id"] = task_id
    records: list[dict] = []  # type: ignore[type-arg]
    total = 0
    if caller.is_platform_admin or tenant_id in (None, caller.tenant_id):
        scope = tenant_id if caller.is_platform_admin else caller.tenant_id
        records, total = ports().store.page(
            executions.KIND, tenant_id=scope, filters=filters, page=page, page_size=page_size
        )
    shown = Page.of(records, total, PageQuery(page=page, page_size=page_size))
    return ExecutionListResponse(
        executions=[v for v in (execution_view(r) for r in shown.items) if v is not None],
        pagination=shown.pagination,
    )


# --- optimize and cleanup ----------------------------------------------------------------------


@router.post(
    "/optimize/database",
    summary="VACUUM / ANALYZE / REINDEX CONCURRENTLY what needs it (autovacuum's formula, stale statistics, bloat, XID age)",
    status_code=202,
)
@requires("maintenance:execute")
def optimize_database(body: DatabaseOptimizeRequest) -> DatabaseOptimizeResponse:
    record = optimize.start(ports(), principal(router), body)
    return DatabaseOptimizeResponse.model_validate(optimize.view(record))


@router.get("/optimize/database/<optimization_id>", summary="An optimization's results, by type")
@requires("maintenance:read")
def get_optimization(
    optimization_id: Annotated[str, Path(pattern=EXECUTION_ID_PATTERN)],
) -> DatabaseOptimizeResponse:
    record = executions.get(ports(), principal(router), optimization_id)
    return DatabaseOptimizeResponse.model_validate(optimize.view(record))


@router.post("/cleanup/data", summary="Delete records past retention (dry run counts the same records)")
@requires("maintenance:execute")
def cleanup_data(body: DataCleanupRequest) -> DataCleanupResponse:
    return DataCleanupResponse.model_validate(cleanup.run(ports(), principal(router), body))


# --- schedule and windows ------------------------------------------------------------------------


@router.get("/schedule", summary="Upcoming runs from the real schedules, the windows, and the conflicts")
@requires("maintenance:read")
def get_schedule(
    tenant_id: TenantId = None,
    hours: Annotated[int, Query(ge=1, le=24 * 31, description="Horizon in hours.")] = 24,
    max_concurrent_tasks: Annotated[int, Query(alias="maxConcurrentTasks", ge=1, le=100)] = 1,
) -> MaintenanceScheduleResponse:
    return MaintenanceScheduleResponse.model_validate(
        schedule.read(ports(), principal(router), tenant_id, hours, max_concurrent_tasks)
    )


@router.post(
    "/schedule/optimize",
    summary="Propose times inside the windows that remove the conflicts; apply when asked",
)
@requires("maintenance:update")
def optimize_schedule(body: ScheduleOptimizeRequest) -> ScheduleOptimizeResponse:
    return ScheduleOptimizeResponse.model_validate(schedule.optimize(ports(), principal(router), body))


def window_view(record: dict) -> MaintenanceWindow:  # type: ignore[type-arg]
    return MaintenanceWindow.model_validate({**record, "window_id": record["id"]})


@router.get("/windows", summary="Maintenance windows in scope")
@requires("maintenance:read")
def list_windows(tenant_id: TenantId = None) -> list[MaintenanceWindow]:
    return [window_view(w) for w in windows.visible(ports(), principal(router), tenant_id)]


@router.post("/windows", summary="Create a maintenance window", status_code=201)
@requires("maintenance:create")
def create_window(body: WindowCreate) -> MaintenanceWindow:
    return window_view(windows.create(ports(), principal(router), body))


@router.put("/windows/<window_id>", summary="Change a maintenance window")
@requires("maintenance:update")
def update_window(window_id: WindowId, body: WindowUpdate) -> MaintenanceWindow:
    return window_view(windows.update(ports(), principal(router), window_id, body))


@router.delete("/windows/<window_id>", summary="Delete a maintenance window")
@requires("maintenance:delete")
def delete_window(window_id: WindowId) -> WindowDeleted:
    windows.delete(ports(), principal(router), window_id)
    return WindowDeleted(window_id=window_id)


# --- dashboard and reports ------------------------------------------------------------------------


@router.get("/dashboard", summary="Tasks, runs, what is next, and the servers' maintenance health")
@requires("maintenance:read")
def get_dashboard(target_id: TargetId = None, tenant_id: TenantId = None) -> MaintenanceDashboardResponse:
    data = dashboard.read(ports(), principal(router), tenant_id, target_id)
    data["recent_executions"] = [execution_view(e) for e in data["recent_executions"]]
    return MaintenanceDashboardResponse.model_validate(data)


@router.get(
    "/reports", summary="EXECUTION_SUMMARY | PERFORMANCE_IMPACT | OPTIMIZATION_RESULTS as JSON, CSV or PDF"
)
@requires("maintenance:read")
def get_report(
    report_type: Annotated[ReportType, Query(alias="reportType")],
    time_range_text: Annotated[str | None, Query(alias="timeRange", max_length=100)] = None,
    tenant_id: TenantId = None,
    format: Annotated[ReportFormat, Query()] = "JSON",  # noqa: A002 (the seed's name)
):  # type: ignore[no-untyped-def]  # no return annotation: a PDF body is bytes, not validated as text
    span = time_range.parse(time_range_text, default=timedelta(days=7), max_age=timedelta(days=HISTORY_DAYS))
    rows = dashboard.report_rows(ports(), principal(router), tenant_id, span.start, span.end)
    report = reports.build(report_type, format, rows, span.start, span.end)
    body: str | bytes = report.body if report.content_type == "application/pdf" else report.body.decode()
    return Response(
        status_code=200, content_type=report.content_type, body=body,
        headers={"Content-Disposition": report.content_disposition},
    )  # fmt: skip
