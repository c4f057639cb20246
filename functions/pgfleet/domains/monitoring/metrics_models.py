"""Wire shapes of the metrics, the health and the performance dashboard (the seed's
MetricsResponse, SystemHealthResponse and PerformanceDashboardResponse: camelCase on the
wire, snake_case attributes). Where the seed leaves a shape open (TimeRange,
ResourceUtilization, PerformanceTrend) it is designed the way the nearest seed shape is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pgfleet.core.wire import CamelModel

Category = Literal["PERFORMANCE", "AVAILABILITY", "SECURITY", "COMPLIANCE"]
Aggregation = Literal["MINUTE", "HOUR", "DAY"]
PointStatus = Literal["NORMAL", "WARNING", "CRITICAL"]
HealthStatus = Literal["HEALTHY", "WARNING", "CRITICAL", "UNKNOWN"]
Trend = Literal["IMPROVING", "STABLE", "DEGRADING"]
Rating = Literal["EXCELLENT", "GOOD", "POOR", "CRITICAL"]


class TimeRange(CamelModel):
    start: str = Field(description="ISO 8601, UTC.")
    end: str = Field(description="ISO 8601, UTC.")


class DataPoint(CamelModel):
    timestamp: str = Field(description="Start of the bucket (ISO 8601, UTC).")
    value: float
    status: PointStatus | None = Field(
        default=None, description="Against the metric's thresholds; null for a metric without any."
    )


class MetricSeries(CamelModel):
    name: str
    category: Category
    unit: str
    target_id: str = Field(description="The instance or cluster the series is of.")
    data_points: list[DataPoint]


class MetricsResponse(CamelModel):
    metrics: list[MetricSeries]
    time_range: TimeRange
    aggregation: Aggregation


class Threshold(CamelModel):
    warning: float | None = Field(description="From this value the metric is WARNING.")
    critical: float | None = Field(description="From this value it is CRITICAL; null when no value is.")


class HealthMetric(CamelModel):
    name: str
    value: float
    unit: str
    threshold: Threshold | None = Field(
        default=None,
        description="Null for a metric without thresholds. Higher is worse unless the warning value is "
        "above the critical one (cache hit ratio: lower is worse).",
    )
    trend: Trend = Field(
        description="Least-squares slope of the last hour's samples, against the metric's good direction; "
        "STABLE when it changes the value by less than 5 % over the hour."
    )


class ComponentHealth(CamelModel):
    component: str = Field(
        description="`server:<id>` for a managed server; queue, metadata, history, scheduler for the "
        "control plane (`control-plane`, their worst status, for a token confined to a tenant).",
        examples=["server:pgi-0123456789ab", "queue"],
    )
    status: HealthStatus
    metrics: list[HealthMetric]
    last_check: str = Field(description="When it was measured: a server's newest sample (ISO 8601, UTC).")
    message: str = Field(description="What was found, in a sentence.")
    target_id: str | None = None


class SystemHealthResponse(CamelModel):
    overall: HealthStatus = Field(description="The worst status of the components.")
    components: list[ComponentHealth]
    last_updated: str


class PerformanceSummary(CamelModel):
    avg_response_time: float | None = Field(
        description="Milliseconds: pg_stat_statements' mean execution time weighted by calls; null "
        "where pg_stat_statements is not installed."
    )
    throughput: float | None = Field(
        description="Transactions (commits + rollbacks) per second, newest samples."
    )
    error_rate: float | None = Field(description="Rollbacks / transactions of the newest samples.")
    active_connections: int | None
    cache_hit_ratio: float | None


class QueryPerformance(CamelModel):
    query_hash: str = Field(description="pg_stat_statements' queryid.")
    query_text: str
    avg_execution_time: float = Field(description="Milliseconds (mean_exec_time).")
    execution_count: int
    performance_rating: Rating
    optimization_suggestions: list[str]
    target_id: str
    database_name: str | None = None
    total_execution_time: float = Field(description="Milliseconds.")


class ResourceUtilization(CamelModel):
    resource: Literal["cpu", "memory", "connections", "storage"]
    current: float | None
    average: float | None
    peak: float | None
    unit: str
    target_id: str


class PerformanceTrend(CamelModel):
    metric: str
    direction: Trend
    change_percent: float | None = Field(
        description="Change over the range (least-squares), percent of its mean."
    )
    target_id: str


class PerformanceDashboardResponse(CamelModel):
    summary: PerformanceSummary
    top_queries: list[QueryPerformance]
    system_resources: list[ResourceUtilization]
    trends: list[PerformanceTrend]
    time_range: TimeRange
    notes: list[str] = Field(
        default_factory=list,
        description="What could not be read, and why (a server without pg_stat_statements).",
    )
