"""/api/v1/performance/indexes: the index analysis, and optimize (an operation, now or at a
time). Scope of the analysis: `targetId`, `tenantId`, or every server the caller may see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains.performance import indexes, workflows
from pgfleet.domains.performance.indexes_models import (
    IndexAnalysisResponse,
    IndexOptimizeRequest,
    IndexOptimizeResponse,
    PlannedAction,
    RecommendationFilter,
)

router = Router()


@router.get(
    "/indexes/analysis",
    summary="Every index with usage, size, efficiency and bloat; unused, duplicate, invalid, bloated and missing ones",
)
@requires("performance:read")
def index_analysis(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    database: Annotated[
        str | None,
        Query(max_length=63, description="A tenant database of the target; default its app database."),
    ] = None,
    schema_name: Annotated[str | None, Query(alias="schemaName", max_length=63)] = None,
    table_name: Annotated[str | None, Query(alias="tableName", max_length=63)] = None,
    recommendation: Annotated[RecommendationFilter | None, Query()] = None,
    include_applied: Annotated[
        bool,
        Query(
            alias="includeApplied",
            description="Also the recommendations optimize applied, with what it measured (plan, cost, mean time).",
        ),
    ] = False,
    efficiency_threshold: Annotated[
        float | None,
        Query(alias="efficiencyThreshold", ge=0, le=100, description="Only indexes scoring below it."),
    ] = None,
) -> IndexAnalysisResponse:
    return indexes.analyze(
        ports(), principal(router), target_id, tenant_id, database=database, schema_name=schema_name,
        table_name=table_name, recommendation=recommendation, efficiency_threshold=efficiency_threshold,
        measure=workflows.measured_after if include_applied else None,
    )  # fmt: skip


@router.post(
    "/indexes/optimize",
    summary="Apply index recommendations (CREATE/DROP/REINDEX CONCURRENTLY) as an operation, now or scheduled",
    status_code=202,
)
@requires("performance:optimize")
def optimize_indexes(body: IndexOptimizeRequest) -> IndexOptimizeResponse:
    caller = principal(router)
    found = [indexes.find_recommendation(ports(), caller, rid) for rid in dict.fromkeys(body.recommendations)]
    records = {record["id"] for record, _ in found}
    if len(records) > 1:
        raise ValidationFailed(
            "the recommendations belong to different servers or databases: optimize one of them at a time",
            details={"field": "recommendations"},
        )
    record = found[0][0]
    actions = [
        PlannedAction(
            recommendation_id=rec["id"], type=rec["type"], sql=rec["sql"], target_id=rec["target_id"],
            database=rec["database"],
        )
        for _, rec in found
    ]  # fmt: skip
    rec_ids = [rec["id"] for _, rec in found]
    if body.dry_run:
        return IndexOptimizeResponse(operation_id=None, status="DRY_RUN", actions=actions)
    now = datetime.now(UTC)
    when, window = None, None
    if body.schedule_for is not None:
        when = workflows.parse_when(body.schedule_for)
        if when <= now:
            raise ValidationFailed(
                f"scheduleFor {body.schedule_for} is not in the future", details={"field": "scheduleFor"}
            )
    elif body.maintenance_window is not None:
        window = (body.maintenance_window.start, body.maintenance_window.end)
        start = workflows.window_start(window[0], window[1], now)
        when = None if start == now else start
    if when is None:
        op = workflows.start(ports(), record, rec_ids, body.lock_timeout_ms)
        return IndexOptimizeResponse(operation_id=op["id"], status="QUEUED", actions=actions)
    name = workflows.schedule(ports(), record, rec_ids, body.lock_timeout_ms, when, window)
    return IndexOptimizeResponse(
        operation_id=None, status="SCHEDULED", scheduled_for=when.isoformat().replace("+00:00", "Z"),
        schedule_name=name, actions=actions,
    )  # fmt: skip
