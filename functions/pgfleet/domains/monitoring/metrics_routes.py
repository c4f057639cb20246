"""/api/v1/monitoring: metrics, health and the performance dashboard (seed 003, phase 2), from
the samples the capture schedule stores every minute. Scope of every call: `targetId` (an
instance or a cluster), `tenantId`, or every server the caller may see."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains.monitoring import dashboard, health, metrics
from pgfleet.domains.monitoring.metrics_models import (
    Aggregation,
    Category,
    MetricsResponse,
    PerformanceDashboardResponse,
    SystemHealthResponse,
)

router = Router()

# The scope parameters of seed 003 (as every /api/v1/locks route takes them).

TimeRangeParam = Annotated[
    str | None,
    Query(alias="timeRange", max_length=80, description=f"Default the last hour: {time_range.FORMS}."),
]


@router.get("/metrics", summary="Captured metrics of the servers in scope, as series per server and metric")
@requires("monitoring:read")
def get_metrics(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    category: Annotated[Category | None, Query()] = None,
    time_range_text: TimeRangeParam = None,
    aggregation: Annotated[
        Aggregation | None,
        Query(description="Mean per bucket (maximum for lags); default the finest within a week of points."),
    ] = None,
) -> MetricsResponse:
    return metrics.metric_series(
        ports(), principal(router), target_id=target_id, tenant_id=tenant_id, category=category,
        time_range_text=time_range_text, aggregation=aggregation,
    )  # fmt: skip


@router.get(
    "/health",
    summary="Health of every server in scope (newest sample, trend over the hour) and of the control plane",
)
@requires("monitoring:read")
def get_health(target_id: TargetId = None, tenant_id: TenantId = None) -> SystemHealthResponse:
    return health.system_health(ports(), principal(router), target_id, tenant_id)


@router.get(
    "/performance/dashboard", summary="Throughput, top queries (pg_stat_statements), resources and trends"
)
@requires("monitoring:read")
def get_performance_dashboard(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    time_range_text: TimeRangeParam = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many top queries.")] = 10,
) -> PerformanceDashboardResponse:
    return dashboard.performance_dashboard(
        ports(), principal(router), target_id=target_id, tenant_id=tenant_id, time_range_text=time_range_text,
        limit=limit,
    )  # fmt: skip
