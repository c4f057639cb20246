"""/api/v1/system/audit: the audit trail of every API call and operation step (seed 003,
"Audit Trail APIs"). Read-only: events are appended by the platform and never changed."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import Node, TargetId
from pgfleet.core.time_range import FORMS
from pgfleet.domains import servers
from pgfleet.domains.system import capacity_view, configuration, service, status
from pgfleet.domains.system.models import (
    AuditTrailResponse,
    CapacityResponse,
    SystemConfigurationResponse,
    SystemStatusResponse,
    UpdateConfigurationRequest,
    UpdateConfigurationResponse,
)

router = Router()


@router.get(
    "/audit",
    summary="The audit trail: every API call (401s and 403s included) and every operation step",
)
@requires("audit:read_own")
def audit_trail(
    tenant_id: Annotated[str | None, Query(alias="tenantId", max_length=128)] = None,
    user_id: Annotated[str | None, Query(alias="userId", max_length=256)] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=256, description='e.g. "POST /api/v1/postgres/single" or "instance.create/provision".'
        ),
    ] = None,
    resource: Annotated[
        str | None, Query(max_length=512, description="A resource id (pgi-..., op-...) or a path called.")
    ] = None,
    time_range: Annotated[
        str | None,
        Query(alias="timeRange", max_length=128, description=f"{FORMS}; default: the last 24 hours."),
    ] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> AuditTrailResponse:
    return service.audit_trail(
        ports(),
        principal(router),
        tenant_id=tenant_id,
        user_id=user_id,
        action=action,
        resource=resource,
        time_range_text=time_range,
        query=PageQuery(page=page, page_size=page_size),
    )


@router.get(
    "/configuration", summary="A server's PostgreSQL settings (pg_settings, the seed's names and any GUC)"
)
@requires("system:read")
def get_configuration(
    target_id: TargetId = None,
    node: Node = None,
    settings: Annotated[
        str | None, Query(max_length=2000, description="More settings by their own names, comma-separated.")
    ] = None,
) -> SystemConfigurationResponse:
    if target_id is None:
        return SystemConfigurationResponse(
            database=None,
            database_note="section DATABASE is a server's: give targetId (and node for a cluster member)",
        )
    (target,) = servers.targets(ports(), principal(router), target_id, None, node, what="its settings")
    extra = [s.strip().lower() for s in (settings or "").split(",") if s.strip()]
    return SystemConfigurationResponse(database=configuration.database_section(ports(), target, extra))


@router.put(
    "/configuration",
    summary="Change settings, validated against pg_settings: reloaded now, or restarted (now, at a time, or later)",
)
@requires("system:configure")
def put_configuration(body: UpdateConfigurationRequest) -> UpdateConfigurationResponse:
    return UpdateConfigurationResponse.model_validate(
        configuration.update(
            ports(),
            principal(router),
            body.target_id,
            body.configuration,
            body.apply_immediately,
            body.schedule_restart,
        )
    )


@router.get(
    "/status",
    summary="The platform's components and the servers in scope; MAINTENANCE while maintenance runs",
)
@requires("system:read")
def get_status() -> SystemStatusResponse:
    return SystemStatusResponse.model_validate(status.read(ports(), principal(router)))


@router.get(
    "/capacity", summary="The host and the servers as used/total, the forecasts' projections, what to do"
)
@requires("system:read")
def get_capacity() -> CapacityResponse:
    return CapacityResponse.model_validate(capacity_view.read(ports(), principal(router)))
