"""/api/v1/locks: lock activity, captures, blocking sessions and their resolution (seed 003,
phase 4). Scope of every call: `targetId` (and `node` for a cluster member), `tenantId`, or
every server the caller may see."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core import time_range
from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.domains.locks import schedules, service, views
from pgfleet.domains.locks.models import (
    AutoResolveConfig,
    AutoResolveConfigRequest,
    AutoResolveRequest,
    AutoResolveResponse,
    BlockingSessionsResponse,
    LockActivityResponse,
    LockCaptureRequest,
    LockCaptureResponse,
    Severity,
    TerminateSessionRequest,
    TerminateSessionResponse,
    drop_none,
)

router = Router()

TimeRangeParam = Annotated[
    str | None,
    Query(alias="timeRange", max_length=80, description=f"Captured history too: {time_range.FORMS}."),
]
HISTORY_MAX_AGE = timedelta(seconds=service.CAPTURE_TTL_SECONDS)
RESOLVED_LOOKBACK = timedelta(hours=24)


@router.get(
    "/activity", summary="Locks now (pg_locks with pg_stat_activity), and captured ones with timeRange"
)
@requires("locks:read")
def lock_activity(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    time_range_text: TimeRangeParam = None,
    lock_type: Annotated[str | None, Query(alias="lockType", max_length=40)] = None,
    lock_mode: Annotated[str | None, Query(alias="lockMode", max_length=40)] = None,
    include_resolved: Annotated[bool, Query(alias="includeResolved")] = False,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> LockActivityResponse:
    caller = principal(router)
    snaps = service.live_snapshot(ports(), caller, target_id, tenant_id, node)
    history, resolutions = [], []
    if time_range_text:
        span = time_range.parse(time_range_text, default=timedelta(hours=1), max_age=HISTORY_MAX_AGE)
        history = service.captured(ports(), caller, target_id, tenant_id, span.start, span.end)
        tenant = service.tenant_scope(caller, tenant_id)
        resolutions = service.history_of(
            ports(), service.RESOLUTIONS, target_id, tenant, span.start, span.end
        )
    return views.activity(
        snaps, history, resolutions, lock_type=lock_type, lock_mode=lock_mode, include_resolved=include_resolved,
        query=PageQuery(page=page, page_size=page_size),
    )  # fmt: skip


@router.post("/capture", summary="Capture the blocking chains of the servers in scope into the history")
@requires("locks:read")
def capture_locks(body: LockCaptureRequest) -> LockCaptureResponse:
    found = service.targets(ports(), principal(router), body.target_id, body.tenant_id)
    result = schedules.capture(ports(), found)
    return LockCaptureResponse.model_validate(
        {**result, "deadlocks_detected": result.get("deadlocks_detected", 0)}
    )


@router.get("/blocking-sessions", summary="Root blockers, with every session below them and the tree")
@requires("locks:read")
def blocking_sessions(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    severity: Annotated[Severity | None, Query()] = None,
    min_duration: Annotated[float | None, Query(alias="minDuration", ge=0, description="Seconds.")] = None,
    include_resolved: Annotated[
        bool, Query(alias="includeResolved", description="Also the root blockers ended in the last 24 hours.")
    ] = False,
) -> BlockingSessionsResponse:
    caller = principal(router)
    snaps = service.live_snapshot(ports(), caller, target_id, tenant_id, node)
    resolved: list[dict[str, Any]] = []
    if include_resolved:
        resolved = service.resolved_blockers(ports(), caller, target_id, tenant_id, RESOLVED_LOOKBACK)
    return views.blocking_sessions(snaps, severity, min_duration, resolved=resolved)


@router.post(
    "/blocking-sessions/<sessionPid>/terminate",
    summary="Cancel, then terminate, a blocking session (dryRun: the impact only); audited",
)
@requires("locks:terminate")
def terminate_session(
    sessionPid: Annotated[int, Path(ge=1, le=2**31 - 1)],  # noqa: N803 (the seed's name)
    body: TerminateSessionRequest,
    target_id: Annotated[str, Query(alias="targetId", pattern=r"^pg[ic]-[0-9a-f]{12}$")],
    node: Node = None,
) -> TerminateSessionResponse:
    caller = principal(router)
    (target,) = service.targets(ports(), caller, target_id, None, node)
    outcome = service.terminate_pid(
        ports(), target, sessionPid, reason=body.reason, dry_run=body.dry_run, force=body.force,
        actor=caller.sub or "unknown",
    )  # fmt: skip
    return TerminateSessionResponse.model_validate({**outcome, "target_id": target.target_id})


@router.post("/auto-resolve", summary="End root blockers the configuration allows (dryRun: the plan only)")
@requires("locks:terminate")
def auto_resolve(body: AutoResolveRequest) -> AutoResolveResponse:
    caller = principal(router)
    found = service.targets(ports(), caller, body.target_id, body.tenant_id)
    tenant = service.tenant_scope(caller, body.tenant_id) or (
        found[0].tenant_id if body.target_id and found else None
    )
    if tenant is None:
        raise ValidationFailed("auto-resolve applies one tenant's configuration: give tenantId or targetId",
                               details={"field": "tenantId"})  # fmt: skip
    found = [t for t in found if t.tenant_id == tenant]
    config = {**service.config_of(ports(), tenant), **drop_none({
        "max_blocking_duration": body.max_blocking_duration,
        "severity_threshold": body.severity_threshold,
        "max_sessions_per_cycle": body.max_sessions_to_terminate,
    })}  # fmt: skip
    return AutoResolveResponse.model_validate(
        service.auto_resolve(ports(), found, config, dry_run=body.dry_run, actor=caller.sub or "unknown")
    )


def _config_tenant(tenant_id: str | None) -> str:
    caller = principal(router)
    tenant = service.tenant_scope(caller, tenant_id)
    if tenant is None or tenant == "*":
        raise ValidationFailed(
            "the auto-resolve configuration is a tenant's: give tenantId", details={"field": "tenantId"}
        )
    return tenant


@router.get("/auto-resolve/config", summary="A tenant's auto-resolve configuration")
@requires("locks:read")
def get_auto_resolve_config(tenant_id: TenantId = None) -> AutoResolveConfig:
    tenant = _config_tenant(tenant_id)
    return AutoResolveConfig.model_validate({**service.config_of(ports(), tenant), "tenant_id": tenant})


@router.put(
    "/auto-resolve/config",
    summary="Change a tenant's auto-resolve configuration (enabling it terminates sessions)",
)
@requires("locks:terminate")
def put_auto_resolve_config(body: AutoResolveConfigRequest, tenant_id: TenantId = None) -> AutoResolveConfig:
    tenant = _config_tenant(tenant_id)
    merged = {**service.config_of(ports(), tenant), **drop_none(body.model_dump(by_alias=False))}
    if merged["business_hours_start"] >= merged["business_hours_end"]:
        raise ValidationFailed(
            "businessHoursStart must be before businessHoursEnd", details={"field": "businessHoursStart"}
        )
    service.save_config(ports(), tenant, merged)
    return AutoResolveConfig.model_validate({**merged, "tenant_id": tenant})
