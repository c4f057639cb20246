"""/api/v1/monitoring/incidents: incidents opened by critical alerts, and what people do with
them (the production-readiness API's Incident Management, camelCase)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.domains.monitoring import incidents
from pgfleet.domains.monitoring.incidents_models import (
    Incident,
    IncidentListResponse,
    IncidentStatus,
    IncidentUpdateRequest,
)
from pgfleet.domains.monitoring.models import AlertSeverity

router = Router()

IncidentId = Annotated[str, Path(pattern=r"^inc-[0-9a-f]{12}$", description="Incident id.")]


@router.get("/incidents", summary="Incidents of your servers (a platform admin sees every tenant's)")
@requires("monitoring:read")
def list_incidents(
    tenant_id: Annotated[str | None, Query(alias="tenantId", max_length=128)] = None,
    status: Annotated[IncidentStatus | None, Query()] = None,
    severity: Annotated[AlertSeverity | None, Query()] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> IncidentListResponse:
    return incidents.list_incidents(
        ports(),
        principal(router),
        tenant_id=tenant_id,
        status=status,
        severity=severity,
        query=PageQuery(page=page, page_size=page_size),
    )


@router.get("/incidents/<incident_id>", summary="One incident, with its timeline")
@requires("monitoring:read")
def get_incident(incident_id: IncidentId) -> Incident:
    return incidents.get_incident(ports(), principal(router), incident_id)


@router.post(
    "/incidents/<incident_id>/update",
    summary="Change an incident's status, assign, annotate or escalate it (recorded in its timeline)",
)
@requires("monitoring:incidents")
def update_incident(incident_id: IncidentId, body: IncidentUpdateRequest) -> Incident:
    return incidents.update(ports(), principal(router), incident_id, body)
