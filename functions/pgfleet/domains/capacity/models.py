"""Seed 003, phase 5 (capacity planning), camelCase as the seed writes it. Additions in the
seed's style: `targetId`, `resourceId` and `unit` on every item; prediction `intervals`,
`backtestErrors`, `reason` (why a series has no pattern yet) on a growth pattern."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from pgfleet.core.wire import CamelModel, StrictCamelModel

ResourceType = Literal["STORAGE", "CONNECTIONS", "CPU", "MEMORY", "TENANT_STORAGE"]
Pattern = Literal["LINEAR", "EXPONENTIAL", "SEASONAL", "STABLE"]
Aggregation = Literal["HOURLY", "DAILY", "WEEKLY"]
Horizon = Literal["7d", "30d", "90d", "1y"]
TARGET_PATTERN = r"^pg[ic]-[0-9a-f]{12}$"


class CaptureUtilizationRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=TARGET_PATTERN)
    resource_types: list[ResourceType] | None = Field(default=None, max_length=5)


class ResourceUtilization(CamelModel):
    resource_type: str
    resource_id: str
    target_id: str
    tenant_id: str
    current_usage: float
    capacity: float | None = Field(description="Null: no limit is known for it (the figure is still kept).")
    utilization_percentage: float | None
    status: Literal["NORMAL", "WARNING", "CRITICAL"]
    unit: str


class CaptureUtilizationResponse(CamelModel):
    success: bool
    data: list[ResourceUtilization]
    problems: list[str] = Field(default_factory=list)


class UtilizationDataPoint(CamelModel):
    timestamp: str
    resource_type: str
    resource_id: str
    target_id: str
    usage: float
    capacity: float | None
    utilization_percentage: float | None
    samples: int
    unit: str | None


class UtilizationHistoryResponse(CamelModel):
    data: list[UtilizationDataPoint]


class CapacityStatus(CamelModel):
    tenant_id: str
    resource_type: str
    resource_id: str
    target_id: str
    current_usage: float
    total_capacity: float | None
    utilization_percentage: float | None
    status: str
    last_measurement: str
    unit: str | None


class CapacityStatusResponse(CamelModel):
    data: list[CapacityStatus]


class AnalyzeGrowthRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=TARGET_PATTERN)
    resource_type: ResourceType | None = None
    analysis_days: int = Field(default=30, ge=1, le=3650)


class Interval(CamelModel):
    low: float | None
    high: float | None


class GrowthPattern(CamelModel):
    resource_type: str
    resource_id: str
    target_id: str
    tenant_id: str
    pattern_type: Pattern | None = Field(
        description="Null with `reason` when the history is too short to fit."
    )
    reason: str | None = None
    growth_rate_percentage: float | None = Field(description="Per day, at the last measurement.")
    confidence_level: float | None = Field(
        description="100 minus the holdout backtest's mean absolute percentage error."
    )
    current_usage: float
    capacity: float | None
    unit: str | None
    forecast7d: float | None = Field(alias="forecast7d")
    forecast30d: float | None = Field(alias="forecast30d")
    forecast90d: float | None = Field(alias="forecast90d")
    intervals: dict[str, Interval] = Field(
        description="95 % prediction intervals by horizon (7d, 30d, 90d, 365d)."
    )
    time_to_capacity_days: float | None = Field(
        description="When the interval's upper bound reaches capacity; null: not within 10 years."
    )
    recommended_action: str
    backtest_errors: dict[str, float] = Field(description="Each model's holdout error (MAPE, %).")
    points: int
    analyzed_at: str


class AnalyzeGrowthResponse(CamelModel):
    data: list[GrowthPattern]


class CapacityForecast(CamelModel):
    resource_type: str
    resource_id: str
    target_id: str
    tenant_id: str
    current_usage: float
    projected_usage: float | None
    projected_interval: Interval | None
    growth_rate: float | None
    confidence_level: float | None
    time_to_capacity: float | None
    recommended_actions: list[str]
    pattern_type: str | None
    analyzed_at: str


class ForecastsResponse(CamelModel):
    data: list[CapacityForecast]


class ForecastSummary(CamelModel):
    tenant_id: str
    resource_type: str
    resource_id: str
    target_id: str
    current_usage: float
    projected30d: float | None = Field(alias="projected30d")
    projected90d: float | None = Field(alias="projected90d")
    daily_growth_rate: float | None
    days_to_capacity: float | None
    priority: Literal["LOW", "MEDIUM", "HIGH", "URGENT"]


class ForecastSummaryResponse(CamelModel):
    data: list[ForecastSummary]


def forecast_view(record: dict[str, Any], horizon: str) -> dict[str, Any]:
    key = {"7d": "7d", "30d": "30d", "90d": "90d", "1y": "365d"}[horizon]
    interval = (record.get("intervals") or {}).get(key)
    projected = {"7d": "forecast7d", "30d": "forecast30d", "90d": "forecast90d", "1y": "forecast1y"}[horizon]
    return {
        **record, "projected_usage": record.get(projected), "projected_interval": interval,
        "growth_rate": record.get("growth_rate_percentage"), "time_to_capacity": record.get("time_to_capacity_days"),
        "recommended_actions": [record["recommended_action"]],
    }  # fmt: skip


ThresholdType = Literal["WARNING", "CRITICAL", "MAXIMUM"]
Channels = list[Annotated[str, Field(pattern=r"^nch-[0-9a-f]{12}$")]]


class CreateThresholdRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128, description="Default: the caller's tenant.")
    target_id: str | None = Field(
        default=None, pattern=TARGET_PATTERN, description="Only this server; default every one."
    )
    threshold_name: str = Field(min_length=1, max_length=128)
    resource_type: ResourceType
    threshold_percentage: float = Field(gt=0, le=100)
    threshold_type: ThresholdType
    alert_enabled: bool = True
    notification_channels: Channels = Field(default_factory=list, max_length=20)


class UpdateThresholdRequest(StrictCamelModel):
    threshold_percentage: float | None = Field(default=None, gt=0, le=100)
    alert_enabled: bool | None = None
    notification_channels: Channels | None = Field(default=None, max_length=20)
    escalation_enabled: bool | None = None
    is_active: bool | None = None


class ThresholdCreated(CamelModel):
    threshold_id: str


class CreateThresholdResponse(CamelModel):
    success: bool
    data: ThresholdCreated


class CapacityThreshold(CamelModel):
    threshold_id: str
    tenant_id: str
    target_id: str | None
    threshold_name: str
    resource_type: str
    threshold_percentage: float
    threshold_type: str
    alert_enabled: bool
    is_active: bool
    escalation_enabled: bool
    notification_channels: list[str]
    last_triggered: str | None
    trigger_count24h: int = Field(alias="triggerCount24h")
    effectiveness: float | None = Field(
        description="% of the alerts it raised whose condition cleared; null before the first."
    )


class ThresholdsResponse(CamelModel):
    data: list[CapacityThreshold]


class EvaluateThresholdsRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=TARGET_PATTERN)


class ThresholdEvaluation(CamelModel):
    threshold_id: str
    threshold_name: str
    resource_type: str
    resource_id: str
    current_utilization: float
    threshold_percentage: float
    threshold_exceeded: bool
    alert_severity: str
    recommended_action: str


class EvaluateThresholdsResponse(CamelModel):
    data: list[ThresholdEvaluation]


class CapacityAlert(CamelModel):
    alert_id: str
    threshold_name: str
    resource_type: str | None
    resource_id: str | None
    severity: str | None
    current_utilization: float | None
    threshold_percentage: float | None
    triggered_at: str
    status: Literal["ACTIVE", "RESOLVED", "SUPPRESSED"]
    resolution_time: float | None = Field(description="Seconds from trigger to resolution; null while open.")


class CapacityAlertsResponse(CamelModel):
    data: list[CapacityAlert]


class RunAnalysisRequest(StrictCamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    create_default_thresholds: bool = True
    analysis_days: int = Field(default=30, ge=1, le=3650)


class AnalysisResult(CamelModel):
    analysis_id: str
    resources_analyzed: int
    patterns_detected: int
    forecasts_generated: int
    thresholds_created: int
    alerts_triggered: int
    problems: list[str] = Field(default_factory=list)


class RunAnalysisResponse(CamelModel):
    success: bool
    data: AnalysisResult


class DashboardSummary(CamelModel):
    total_resources: int
    resources_at_capacity: int
    resources_near_capacity: int
    average_utilization: float | None
    growth_rate: float | None = Field(description="Mean daily growth (%) of the analyzed series.")


class ResourceStatusItem(CamelModel):
    resource_type: str
    resource_id: str
    utilization: float | None
    status: str
    days_to_capacity: float | None


class RecentAlert(CamelModel):
    alert_id: str
    severity: str | None
    message: str
    timestamp: str


class GrowthTrend(CamelModel):
    resource_type: str
    resource_id: str
    trend: Literal["INCREASING", "STABLE", "DECREASING"]
    growth_rate: float
    confidence: float | None


class CapacityDashboard(CamelModel):
    summary: DashboardSummary
    resource_status: list[ResourceStatusItem]
    recent_alerts: list[RecentAlert]
    growth_trends: list[GrowthTrend]


class CapacityDashboardResponse(CamelModel):
    data: CapacityDashboard


ReportType = Literal["UTILIZATION", "FORECASTS", "THRESHOLDS", "COMPREHENSIVE"]
ReportFormat = Literal["JSON", "CSV", "PDF"]
