"""/api/v1/performance/queries: statement analysis from pg_stat_statements, and a safe EXPLAIN
of one statement (seed 003, phase 3). Scope of the analysis: `targetId` (an instance or a
cluster's primary), `tenantId`, or every server the caller may see."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains.performance import explain, queries
from pgfleet.domains.performance.queries_models import (
    QueryAnalysisResponse,
    QueryAnalyzeRequest,
    QueryAnalyzeResponse,
    SortBy,
)

router = Router()


@router.get(
    "/queries/analysis",
    summary="Statements of pg_stat_statements rated, with suggestions; deltas over timeRange from snapshots",
)
@requires("performance:read")
def get_query_analysis(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    database: Annotated[
        str | None, Query(max_length=63, description="Only the statements of this database.")
    ] = None,
    time_range_text: Annotated[
        str | None,
        Query(
            alias="timeRange",
            max_length=80,
            description=f"Deltas between stored snapshots; without it, counters since the last reset: {time_range.FORMS}",
        ),
    ] = None,  # fmt: skip
    min_executions: Annotated[int | None, Query(alias="minExecutions", ge=0)] = None,
    performance_rating: Annotated[
        str | None,
        Query(
            alias="performanceRating",
            max_length=60,
            description="Comma-separated: EXCELLENT,GOOD,POOR,CRITICAL.",
        ),
    ] = None,
    sort_by: Annotated[SortBy, Query(alias="sortBy")] = "impact",
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> QueryAnalysisResponse:
    return queries.query_analysis(
        ports(), principal(router), target_id=target_id, tenant_id=tenant_id, database=database,
        time_range_text=time_range_text, min_executions=min_executions, performance_rating=performance_rating,
        sort_by=sort_by, page=PageQuery(page=page, page_size=page_size),
    )  # fmt: skip


@router.post(
    "/queries/analyze",
    summary="EXPLAIN one statement as the database's app role, in a transaction always rolled back",
)
@requires("performance:read")
def analyze_query(body: QueryAnalyzeRequest) -> QueryAnalyzeResponse:
    return explain.analyze(ports(), principal(router), body)
