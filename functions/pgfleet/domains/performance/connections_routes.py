"""/api/v1/performance: connection pool analysis and cache analysis (seed 003, phase 3), read
live from the servers in scope and, for the connection trends, from the monitoring samples.
Scope: `targetId` (and `node` for a cluster member), `tenantId`, or every server the caller
may see."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.domains.performance import cache, connections, pooling
from pgfleet.domains.performance.connections_models import CacheAnalysisResponse, ConnectionAnalysisResponse
from pgfleet.domains.performance.pooling_models import ConnectionConfigureRequest, ConnectionConfigureResponse

router = Router()


@router.get(
    "/connections/analysis",
    summary="Connections now (pg_stat_activity), utilization and trends from the monitoring samples, pool advice",
)
@requires("performance:read")
def connection_analysis(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    time_range_text: Annotated[
        str | None,
        Query(alias="timeRange", max_length=80, description=f"Default the last day: {time_range.FORMS}."),
    ] = None,
) -> ConnectionAnalysisResponse:
    return connections.connection_analysis(
        ports(), principal(router), target_id=target_id, tenant_id=tenant_id, node=node,
        time_range_text=time_range_text,
    )  # fmt: skip


@router.post(
    "/connections/configure",
    summary="Set max_connections (a planned restart) and put PgBouncer in front of a server, as an operation",
    status_code=202,
)
@requires("performance:optimize")
def configure_connections(body: ConnectionConfigureRequest) -> ConnectionConfigureResponse:
    return pooling.configure(ports(), principal(router), body)


@router.get(
    "/cache/analysis",
    summary="Shared buffers (pg_buffercache, hit ratios, evictions), plan reuse, the absent query cache, sizing",
)
@requires("performance:read")
def cache_analysis(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    database: Annotated[
        str | None,
        Query(
            max_length=63,
            pattern=r"^[A-Za-z_][A-Za-z0-9_$-]*$",
            description="A tenant database of the target; default the target's own database.",
        ),
    ] = None,
) -> CacheAnalysisResponse:
    return cache.cache_analysis(
        ports(), principal(router), target_id=target_id, tenant_id=tenant_id, node=node, database=database
    )
