"""/api/v1/capacity (seed 003, phase 5): utilization capture, history and status, growth
analysis, forecasts and their summary. Reads need `capacity:read`; capture and analysis
`capacity:manage`. Scope: `targetId`, `tenantId`, or every server the caller may see."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Response, Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.models import new_id
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains import servers
from pgfleet.domains.capacity import live, reports, service, thresholds
from pgfleet.domains.capacity.models import (
    Aggregation,
    AnalyzeGrowthRequest,
    AnalyzeGrowthResponse,
    CapacityAlertsResponse,
    CapacityDashboardResponse,
    CapacityStatusResponse,
    CapacityThreshold,
    CaptureUtilizationRequest,
    CaptureUtilizationResponse,
    CreateThresholdRequest,
    CreateThresholdResponse,
    EvaluateThresholdsRequest,
    EvaluateThresholdsResponse,
    ForecastsResponse,
    ForecastSummaryResponse,
    Horizon,
    ReportFormat,
    ReportType,
    ResourceType,
    RunAnalysisRequest,
    RunAnalysisResponse,
    ThresholdsResponse,
    ThresholdType,
    UpdateThresholdRequest,
    UtilizationHistoryResponse,
    forecast_view,
)

router = Router()
Resource = Annotated[ResourceType | None, Query(alias="resourceType")]


@router.post(
    "/utilization/capture", summary="Measure storage, connections, CPU and memory of the servers in scope now"
)
@requires("capacity:manage")
def capture_utilization(body: CaptureUtilizationRequest) -> CaptureUtilizationResponse:
    found = servers.targets(
        ports(), principal(router), body.target_id, body.tenant_id, what="its utilization"
    )
    items, problems, _ = live.capture_and_follow(ports(), found)
    if body.resource_types:
        items = [i for i in items if i["resource_type"] in body.resource_types]
    return CaptureUtilizationResponse.model_validate(
        {"success": not problems, "data": items, "problems": problems}
    )


@router.get("/utilization/history", summary="Utilization over time, by hour, day or week")
@requires("capacity:read")
def utilization_history(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    resource_type: Resource = None,
    start_date: Annotated[str | None, Query(alias="startDate", max_length=40)] = None,
    end_date: Annotated[str | None, Query(alias="endDate", max_length=40)] = None,
    aggregation: Annotated[Aggregation, Query()] = "HOURLY",
) -> UtilizationHistoryResponse:
    data = service.history(
        ports(), principal(router), target_id, tenant_id, resource_type,
        service._date(start_date, "startDate"), service._date(end_date, "endDate"), aggregation,
    )  # fmt: skip
    return UtilizationHistoryResponse.model_validate({"data": data})


@router.get("/status", summary="The latest utilization of every resource in scope")
@requires("capacity:read")
def capacity_status(target_id: TargetId = None, tenant_id: TenantId = None) -> CapacityStatusResponse:
    return CapacityStatusResponse.model_validate(
        {"data": service.status(ports(), principal(router), target_id, tenant_id)}
    )


@router.post(
    "/growth/analyze",
    summary="Fit LINEAR, EXPONENTIAL, SEASONAL and STABLE; keep the one that backtests best",
)
@requires("capacity:manage")
def analyze_growth(body: AnalyzeGrowthRequest) -> AnalyzeGrowthResponse:
    data = service.analyze(
        ports(), principal(router), body.target_id, body.tenant_id, body.resource_type, body.analysis_days
    )
    return AnalyzeGrowthResponse.model_validate({"data": data})


@router.get("/forecasts", summary="The latest forecast of every resource in scope, at a horizon")
@requires("capacity:read")
def get_forecasts(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    resource_type: Resource = None,
    forecast_horizon: Annotated[Horizon, Query(alias="forecastHorizon")] = "30d",
) -> ForecastsResponse:
    found = service.forecasts(ports(), principal(router), target_id, tenant_id, resource_type)
    return ForecastsResponse.model_validate({"data": [forecast_view(f, forecast_horizon) for f in found]})


@router.get(
    "/forecasts/summary", summary="Days to capacity and a priority (URGENT under 7 days, HIGH 30, MEDIUM 90)"
)
@requires("capacity:read")
def forecast_summary(target_id: TargetId = None, tenant_id: TenantId = None) -> ForecastSummaryResponse:
    found = service.forecasts(ports(), principal(router), target_id, tenant_id, None)
    data = [
        {**f, "projected30d": f.get("forecast30d"), "projected90d": f.get("forecast90d"),
         "daily_growth_rate": f.get("growth_rate_percentage"), "days_to_capacity": f.get("time_to_capacity_days"),
         "priority": service.priority_of(f.get("time_to_capacity_days"))}
        for f in sorted(found, key=lambda f: (f.get("time_to_capacity_days") is None, f.get("time_to_capacity_days") or 0))
    ]  # fmt: skip
    return ForecastSummaryResponse.model_validate({"data": data})


ThresholdId = Annotated[
    str, Path(pattern=r"^cth-[0-9a-f]{12}$", alias="thresholdId", description="`cth-...`")
]


@router.post(
    "/thresholds", summary="Create a capacity threshold (it feeds the monitoring alerts)", status_code=201
)
@requires("capacity:manage")
def create_threshold(body: CreateThresholdRequest) -> CreateThresholdResponse:
    record = thresholds.create(ports(), principal(router), body)
    return CreateThresholdResponse.model_validate({"success": True, "data": {"threshold_id": record["id"]}})


@router.put("/thresholds/<thresholdId>", summary="Change a capacity threshold")
@requires("capacity:manage")
def update_threshold(threshold_id: ThresholdId, body: UpdateThresholdRequest) -> CapacityThreshold:
    return CapacityThreshold.model_validate(
        thresholds.view(thresholds.update(ports(), principal(router), threshold_id, body))
    )


@router.get("/thresholds", summary="Capacity thresholds with how often they fired and how well")
@requires("capacity:read")
def list_thresholds(
    tenant_id: TenantId = None,
    resource_type: Resource = None,
    threshold_type: Annotated[ThresholdType | None, Query(alias="thresholdType")] = None,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> ThresholdsResponse:
    found = [
        thresholds.view(t) for t in thresholds.visible(ports(), principal(router), tenant_id)
        if (resource_type is None or t["resource_type"] == resource_type)
        and (threshold_type is None or t["threshold_type"] == threshold_type)
        and (is_active is None or bool(t.get("is_active", True)) == is_active)
    ]  # fmt: skip
    return ThresholdsResponse.model_validate({"data": found})


@router.post(
    "/thresholds/evaluate",
    summary="Every threshold against the latest utilization: alerts raised and resolved",
)
@requires("capacity:manage")
def evaluate_thresholds(body: EvaluateThresholdsRequest) -> EvaluateThresholdsResponse:
    data, _ = thresholds.evaluate(ports(), principal(router), body.tenant_id, body.target_id)
    return EvaluateThresholdsResponse.model_validate({"data": data})


@router.get("/alerts", summary="The alerts capacity thresholds raised")
@requires("capacity:read")
def capacity_alerts(
    tenant_id: TenantId = None,
    severity: Annotated[Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] | None, Query()] = None,
    status: Annotated[Literal["ACTIVE", "RESOLVED", "SUPPRESSED"] | None, Query()] = None,
    start_date: Annotated[str | None, Query(alias="startDate", max_length=40)] = None,
    end_date: Annotated[str | None, Query(alias="endDate", max_length=40)] = None,
) -> CapacityAlertsResponse:
    data = thresholds.alerts(ports(), principal(router), tenant_id, status, severity,
                             service._date(start_date, "startDate"), service._date(end_date, "endDate"))  # fmt: skip
    return CapacityAlertsResponse.model_validate({"data": data})


@router.post(
    "/analysis/run", summary="Capture, analyze and forecast everything in scope; default thresholds; evaluate"
)
@requires("capacity:manage")
def run_analysis(body: RunAnalysisRequest) -> RunAnalysisResponse:
    caller = principal(router)
    found = servers.targets(ports(), caller, None, body.tenant_id)
    _, problems, _ = live.capture_and_follow(ports(), found)
    analyzed = service.analyze(ports(), caller, None, body.tenant_id, None, body.analysis_days)
    created = (
        thresholds.create_defaults(ports(), caller, body.tenant_id) if body.create_default_thresholds else 0
    )
    _, opened = thresholds.evaluate(ports(), caller, body.tenant_id)
    patterns = sum(1 for a in analyzed if a["pattern_type"] is not None)
    return RunAnalysisResponse.model_validate({
        "success": not problems,
        "data": {"analysis_id": new_id("can"), "resources_analyzed": len(analyzed), "patterns_detected": patterns,
                 "forecasts_generated": patterns, "thresholds_created": created, "alerts_triggered": opened,
                 "problems": problems},
    })  # fmt: skip


@router.get("/dashboard", summary="Utilization, days to capacity, recent alerts and growth trends in scope")
@requires("capacity:read")
def capacity_dashboard(tenant_id: TenantId = None) -> CapacityDashboardResponse:
    caller = principal(router)
    alerts = thresholds.alerts(ports(), caller, tenant_id, None, None, None, None)
    return CapacityDashboardResponse.model_validate(
        {"data": service.dashboard(ports(), caller, tenant_id, alerts)}
    )


@router.get(
    "/reports/export",
    summary="UTILIZATION | FORECASTS | THRESHOLDS | COMPREHENSIVE as JSON, CSV or PDF (forecast charts)",
    responses={
        200: {
            "description": "The report; PDF base64-encoded through API Gateway",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
@requires("capacity:read")
def export_report(  # type: ignore[no-untyped-def]  # no return annotation: a PDF body is bytes
    report_type: Annotated[ReportType, Query(alias="reportType")],
    format: Annotated[ReportFormat, Query()] = "JSON",  # noqa: A002 (the seed's name)
    tenant_id: TenantId = None,
    start_date: Annotated[str | None, Query(alias="startDate", max_length=40)] = None,
    end_date: Annotated[str | None, Query(alias="endDate", max_length=40)] = None,
):
    caller = principal(router)
    start, end = reports.window(service._date(start_date, "startDate"), service._date(end_date, "endDate"))
    data = {
        "utilization": service.history(ports(), caller, None, tenant_id, None, start, end, "HOURLY"),
        "forecasts": service.forecasts(ports(), caller, None, tenant_id, None),
        "thresholds": [thresholds.view(t) for t in thresholds.visible(ports(), caller, tenant_id)],
    }
    report = reports.build(report_type, format, data, start, end)
    body: str | bytes = report.body if report.content_type == "application/pdf" else report.body.decode()
    return Response(
        status_code=200, content_type=report.content_type, body=body,
        headers={"Content-Disposition": report.content_disposition},
    )  # fmt: skip
