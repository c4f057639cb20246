"""/api/v1/security/incidents: security incidents, declared, worked through OPEN -> ... -> CLOSED
and measured (MTTR) (seed 003, phase 6, "Security Incident APIs"; snake_case). Reads need
`security:read`, creates and status changes `security:investigate`. A tenant's token sees its
tenant's incidents only (another tenant's id is a 404); a platform admin sees every tenant's."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.security import incidents
from pgfleet.domains.security.incident_models import (
    INCIDENT_ID_PATTERN,
    IncidentStatus,
    IncidentType,
    SecurityIncident,
    SecurityIncidentCreate,
    SecurityIncidentListResponse,
    SecurityIncidentStatusUpdate,
    Severity,
)

router = Router()

IncidentId = Annotated[str, Path(pattern=INCIDENT_ID_PATTERN, description="`secinc-...`")]


@router.post(
    "/incidents/create", summary="Declare a security incident (OPEN, numbered SEC-YYYY-NNN)", status_code=201
)
@requires("security:investigate")
def create_incident(body: SecurityIncidentCreate) -> SecurityIncident:
    created = incidents.create(ports(), principal(router), body, header(router, "Idempotency-Key"))
    return incidents.view(created)


@router.get("/incidents", summary="Security incidents in scope, with counts and the mean time to contain")
@requires("security:read")
def list_incidents(
    tenant_id: Annotated[str | None, Query(max_length=128, description="A platform admin's filter.")] = None,
    status: Annotated[IncidentStatus | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    incident_type: Annotated[IncidentType | None, Query()] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> SecurityIncidentListResponse:
    return incidents.list_incidents(
        ports(), principal(router), tenant_id=tenant_id, status=status, severity=severity,
        incident_type=incident_type, query=PageQuery(page=page, page_size=page_size),
    )  # fmt: skip


@router.get("/incidents/<incident_id>", summary="One security incident, with its timeline")
@requires("security:read")
def get_incident(incident_id: IncidentId) -> SecurityIncident:
    return incidents.view(incidents.get(ports(), principal(router), incident_id))


@router.put(
    "/incidents/<incident_id>/status",
    summary="Move a security incident on (steps may be skipped), or back with a reason; CLOSED is final",
)
@requires("security:investigate")
def update_incident_status(incident_id: IncidentId, body: SecurityIncidentStatusUpdate) -> SecurityIncident:
    return incidents.view(incidents.change_status(ports(), principal(router), incident_id, body))
