"""/api/v1/monitoring/alerts: alerts raised by quotas and other evaluations (the
production-readiness API's Alert Management, camelCase)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.domains.monitoring import service as alerts
from pgfleet.domains.monitoring.models import (
    Alert,
    AlertAcknowledgeRequest,
    AlertListResponse,
    AlertResolveRequest,
    AlertSeverity,
    AlertStatus,
)

router = Router()

AlertId = Annotated[str, Path(pattern=r"^alert-[0-9a-f]{12}$", description="Alert id.")]


@router.get("/alerts", summary="Alerts of your resources (a platform admin sees every tenant's)")
@requires("monitoring:read")
def list_alerts(
    tenant_id: Annotated[str | None, Query(alias="tenantId", max_length=128)] = None,
    status: Annotated[AlertStatus | None, Query()] = None,
    severity: Annotated[AlertSeverity | None, Query()] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> AlertListResponse:
    return alerts.list_alerts(
        ports(),
        principal(router),
        tenant_id=tenant_id,
        status=status,
        severity=severity,
        category=category,
        query=PageQuery(page=page, page_size=page_size),
    )


@router.post("/alerts/<alert_id>/acknowledge", summary="Acknowledge an alert (and optionally assign it)")
@requires("monitoring:acknowledge")
def acknowledge_alert(alert_id: AlertId, body: AlertAcknowledgeRequest) -> Alert:
    return alerts.acknowledge(ports(), principal(router), alert_id, body)


@router.post("/alerts/<alert_id>/resolve", summary="Resolve an alert by hand")
@requires("monitoring:resolve")
def resolve_alert(alert_id: AlertId, body: AlertResolveRequest) -> Alert:
    return alerts.resolve(ports(), principal(router), alert_id, body)
