"""/api/v1/monitoring/alerts: alerts raised by the rules of every capture, by reconcile and by
quotas (the production-readiness API's Alert Management, camelCase), and the rules themselves
(`/alerts/rules`: defaults a tenant may change)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core import time_range
from pgfleet.core.auth import tenant_scope
from pgfleet.core.domain import requires
from pgfleet.core.errors import ValidationFailed
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.domains.monitoring import rules
from pgfleet.domains.monitoring import service as alerts
from pgfleet.domains.monitoring.models import (
    Alert,
    AlertAcknowledgeRequest,
    AlertListResponse,
    AlertResolveRequest,
    AlertRule,
    AlertRuleList,
    AlertRuleUpdate,
    AlertSeverity,
    AlertStatus,
)

router = Router()

# Alerts are kept as records; a timeRange reaches back at most this far.
ALERT_MAX_AGE = timedelta(days=365)
AlertId = Annotated[str, Path(pattern=r"^alert-[0-9a-f]{12}$", description="Alert id.")]


@router.get("/alerts", summary="Alerts of your resources (a platform admin sees every tenant's)")
@requires("monitoring:read")
def list_alerts(
    tenant_id: Annotated[str | None, Query(alias="tenantId", max_length=128)] = None,
    status: Annotated[AlertStatus | None, Query()] = None,
    severity: Annotated[AlertSeverity | None, Query()] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    time_range_text: Annotated[
        str | None,
        Query(alias="timeRange", max_length=80, description=f"When they fired: {time_range.FORMS}."),
    ] = None,
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
        span=time_range.parse(time_range_text, default=ALERT_MAX_AGE, max_age=ALERT_MAX_AGE)
        if time_range_text
        else None,
        query=PageQuery(page=page, page_size=page_size),
    )


@router.post("/alerts/<alert_id>/acknowledge", summary="Acknowledge an alert (and optionally assign it)")
@requires("monitoring:acknowledge")
def acknowledge_alert(alert_id: AlertId, body: AlertAcknowledgeRequest | None = None) -> Alert:
    return alerts.acknowledge(ports(), principal(router), alert_id, body or AlertAcknowledgeRequest())


@router.post("/alerts/<alert_id>/resolve", summary="Resolve an alert by hand")
@requires("monitoring:resolve")
def resolve_alert(alert_id: AlertId, body: AlertResolveRequest | None = None) -> Alert:
    return alerts.resolve(ports(), principal(router), alert_id, body or AlertResolveRequest())


RuleName = Annotated[str, Path(pattern=r"^[a-z_]{1,64}$", description="Rule name, e.g. server_down.")]
TenantId = Annotated[str | None, Query(alias="tenantId", max_length=128)]


def _rules_tenant(tenant_id: str | None) -> str:
    tenant = tenant_scope(principal(router), tenant_id)
    if tenant is None:
        raise ValidationFailed("alert rules are a tenant's: give tenantId", details={"field": "tenantId"})
    return tenant


@router.get("/alerts/rules", summary="The alert rules evaluated on every capture, as they apply to a tenant")
@requires("monitoring:read")
def list_alert_rules(tenant_id: TenantId = None) -> AlertRuleList:
    tenant = _rules_tenant(tenant_id)
    found = rules.rules_of(ports(), tenant)
    return AlertRuleList(tenant_id=tenant, rules=[AlertRule.model_validate(r) for r in found.values()])


@router.put(
    "/alerts/rules/<rule_name>", summary="Change a rule's threshold, duration or severity, or switch it off"
)
@requires("monitoring:configure")
def update_alert_rule(rule_name: RuleName, body: AlertRuleUpdate, tenant_id: TenantId = None) -> AlertRule:
    tenant = _rules_tenant(tenant_id)
    changes = body.model_dump(exclude_unset=True)
    return AlertRule.model_validate(rules.set_rule(ports(), tenant, rule_name, changes))
