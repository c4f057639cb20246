"""/api/v1/security/threats: threats detected from the servers' logs and catalogs and from the
API's audit trail, their investigation and mitigations (seed 003, phase 6, "Security
Management APIs"; snake_case). Reads need `security:read`; investigating and scanning
`security:investigate`. A tenant's token sees its own servers' threats only (another
tenant's threat is a 404); threats against the API itself are the platform's."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize
from pgfleet.core.routing import ports, principal
from pgfleet.core.scope_params import TargetId, TenantId
from pgfleet.domains import servers
from pgfleet.domains.security import threat_investigation, threat_scan, threats
from pgfleet.domains.security.threat_models import (
    THREAT_ID_PATTERN,
    ActiveThreatsResponse,
    InvestigationResponse,
    SecurityThreat,
    Severity,
    ThreatInvestigation,
    ThreatScanResponse,
    ThreatType,
    TimeRange,
)

router = Router()

ThreatId = Annotated[str, Path(pattern=THREAT_ID_PATTERN, description="`thr-...`")]


@router.get("/threats/active", summary="Open threats (ACTIVE, INVESTIGATING) with evidence in the time range")
@requires("security:read")
def active_threats(
    severity: Annotated[Severity | None, Query()] = None,
    threat_type: Annotated[ThreatType | None, Query()] = None,
    time_range: Annotated[TimeRange, Query(description="How far back the newest evidence may be.")] = "24h",
    tenant_id: Annotated[str | None, Query(max_length=128, description="A platform admin's filter.")] = None,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> ActiveThreatsResponse:
    return threats.active(
        ports(), principal(router), severity=severity, threat_type=threat_type, time_range=time_range,
        tenant_id=tenant_id, query=PageQuery(page=page, page_size=page_size),
    )  # fmt: skip


@router.post("/threats/investigate", summary="Investigate a threat: status, assignee, notes, mitigations")
@requires("security:investigate")
def investigate_threat(body: ThreatInvestigation) -> InvestigationResponse:
    record = threat_investigation.investigate(ports(), principal(router), body)
    shown = threats.view(record)
    return InvestigationResponse(
        threat_id=shown.threat_id, status=shown.status, updated_at=shown.updated_at, assigned_to=shown.assigned_to,
        mitigation_actions=shown.mitigation_actions, mitigations=shown.mitigations,
    )  # fmt: skip


@router.post("/threats/scan", summary="Detect now: read the signals the minute schedule reads")
@requires("security:investigate")
def scan_threats(target_id: TargetId = None, tenant_id: TenantId = None) -> ThreatScanResponse:
    caller = principal(router)
    found = servers.targets(ports(), caller, target_id, tenant_id, what="its logs")
    result = threat_scan.scan(ports(), found)
    visible = [threats.view(r) for r in result.detected.values() if caller.sees_tenant(r["tenant_id"])]
    return ThreatScanResponse(
        detected=visible, targets_scanned=result.scanned, targets_unreachable=result.unreachable,
        log_lines_scanned=result.lines, audit_events_scanned=result.audit_events,
        mitigations_lifted=result.lifted if caller.is_platform_admin else [], notes=result.notes,
    )  # fmt: skip


@router.get("/threats/<threat_id>", summary="One threat, open or closed, with its mitigations")
@requires("security:read")
def get_threat(threat_id: ThreatId) -> SecurityThreat:
    return threats.view(threats.get(ports(), principal(router), threat_id))
