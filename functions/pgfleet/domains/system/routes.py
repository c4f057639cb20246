"""/api/v1/system/audit: the audit trail of every API call and operation step (seed 003,
"Audit Trail APIs"). Read-only: events are appended by the platform and never changed."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.core.time_range import FORMS
from pgfleet.domains import compliance, servers
from pgfleet.domains.system import capacity_view, configuration, service, status, tenant_settings
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
    "/configuration",
    summary="A server's PostgreSQL settings (pg_settings, the seed's names and any GUC), and the tenant's own "
    "performance, maintenance, monitoring and backup settings",
)
@requires("system:read")
def get_configuration(
    target_id: TargetId = None,
    node: Node = None,
    settings: Annotated[
        str | None, Query(max_length=2000, description="More settings by their own names, comma-separated.")
    ] = None,
    tenant_id: TenantId = None,
) -> SystemConfigurationResponse:
    caller = principal(router)
    tenant = tenant_settings.tenant_of(ports(), caller, tenant_id, target_id)
    found: dict[str, Any] = (
        {"tenant_id": tenant, **tenant_settings.sections(ports(), tenant)}
        if tenant
        else {"tenant_note": "performance, maintenance, monitoring and backup are a tenant's: give tenantId"}
    )
    if target_id is None:
        return SystemConfigurationResponse.model_validate({
            **found, "database": None,
            "database_note": "section DATABASE is a server's: give targetId (and node for a cluster member)",
        })  # fmt: skip
    (target,) = servers.targets(ports(), caller, target_id, None, node, what="its settings")
    extra = [s.strip().lower() for s in (settings or "").split(",") if s.strip()]
    return SystemConfigurationResponse.model_validate(
        {**found, "database": configuration.database_section(ports(), target, extra)}
    )


@router.put(
    "/configuration",
    summary="Change a server's settings (validated against pg_settings: reloaded now, or restarted now, at a time "
    "or later) or a tenant's own settings (validated, in effect at once); audited with old and new values",
)
@requires("system:configure")
def put_configuration(
    body: UpdateConfigurationRequest, tenant_id: TenantId = None
) -> UpdateConfigurationResponse:
    caller = principal(router)
    if body.section == "DATABASE":
        return UpdateConfigurationResponse.model_validate(
            configuration.update(
                ports(), caller, body.target_id, body.configuration, bool(body.apply_immediately),
                body.schedule_restart,
            )
        )  # fmt: skip
    restart = [f for f, v in (("applyImmediately", body.apply_immediately), ("scheduleRestart", body.schedule_restart))
               if v is not None]  # fmt: skip
    if restart:
        raise ValidationFailed(
            f"{', '.join(restart)}: only section DATABASE restarts a server; section {body.section} takes effect at once",
            details=[{"field": f, "message": "DATABASE only"} for f in restart],
        )
    tenant = tenant_settings.tenant_of(ports(), caller, tenant_id, body.target_id)
    return UpdateConfigurationResponse.model_validate(
        tenant_settings.update(ports(), caller, body.section.lower(), tenant, body.configuration)
    )


@router.get(
    "/compliance/report",
    summary="One framework's requirements, findings and recommendations from its newest assessment in timeRange, "
    "with a presigned link to a zip of the evidence (includeEvidence)",
)
@requires("compliance:read")
def compliance_report(
    framework: Annotated[compliance.Framework, Query()],
    time_range: Annotated[
        str | None,
        Query(alias="timeRange", max_length=128, description=f"{FORMS}; default: the last 30 days."),
    ] = None,
    tenant_id: TenantId = None,
    include_evidence: Annotated[bool, Query(alias="includeEvidence")] = False,
) -> compliance.ComplianceReportResponse:
    data = compliance.system_report(
        ports(), principal(router), framework, time_range, tenant_id, include_evidence
    )
    return compliance.ComplianceReportResponse.model_validate(data)


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
