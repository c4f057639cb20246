"""Deadlocks found in the servers' logs (`GET /api/v1/locks/deadlocks`, `POST
/api/v1/locks/deadlocks/detect`). How a log is scanned, and how each event's numbers are
made, is in deadlock_scan."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from pgfleet.core import time_range
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.domain import requires
from pgfleet.core.paging import DEFAULT_PAGE_SIZE, PageNumber, PageQuery, PageSize, Pagination
from pgfleet.core.routing import ports as current_ports
from pgfleet.core.routing import principal
from pgfleet.core.scope_params import Node, TargetId, TenantId
from pgfleet.domains.locks import service
from pgfleet.domains.locks.deadlock_models import (
    DeadlockDetectionResponse,
    DeadlockEvent,
    DeadlockResponse,
    DeadlockSummary,
)
from pgfleet.domains.locks.deadlock_scan import RETENTION, STREAM, detect
from pgfleet.domains.locks.models import Severity
from pgfleet.ports.history import HistoryRecord

router = Router()


class _Tally:
    def __init__(self) -> None:
        self.total = 0
        self.critical = 0
        self.durations: list[float] = []
        self.patterns: Counter[str] = Counter()
        self.suggestions: Counter[str] = Counter()

    def add(self, record: HistoryRecord) -> None:
        data = record.data
        self.total += 1
        self.critical += data.get("severity") == "CRITICAL"
        if isinstance(data.get("deadlock_duration"), int | float):
            self.durations.append(float(data["deadlock_duration"]))
        self.patterns[data.get("pattern") or "?"] += 1
        self.suggestions[data.get("prevention_suggestion") or ""] += 1

    def summary(self) -> DeadlockSummary:
        return DeadlockSummary(
            total_deadlocks=self.total,
            critical_deadlocks=self.critical,
            average_resolution_time=round(sum(self.durations) / len(self.durations), 3)
            if self.durations
            else None,
            most_frequent_pattern=self.patterns.most_common(1)[0][0] if self.patterns else None,
            prevention_recommendations=[s for s, _ in self.suggestions.most_common(5) if s],
        )


def history(
    ports: Ports,
    principal_: Principal,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None,
    start: datetime,
    end: datetime,
    *,
    severity: str | None,
    include_resolved: bool,
    query: PageQuery,
) -> DeadlockResponse:
    """The deadlocks recorded in [start, end) in the caller's scope, newest first."""
    tenant = service.tenant_scope(principal_, tenant_id)
    if (
        target_id is not None or node is not None
    ):  # 404 for another tenant's, 422 for a node without its cluster
        service.targets(ports, principal_, target_id, tenant_id, node, require_running=False)
    filters: dict[str, Any] = {}
    if node is not None:
        filters["node"] = node
    if severity is not None:
        filters["severity"] = severity
    if not include_resolved:
        filters["manual_intervention_required"] = True
    tally = _Tally()
    page = ports.history.query(
        STREAM,
        start=start,
        end=end,
        target_id=target_id,
        tenant_id=tenant,
        filters=filters or None,
        page=query.page,
        page_size=query.page_size,
        visit=tally.add,
    )
    return DeadlockResponse(
        deadlocks=[DeadlockEvent.model_validate(r.data | {"target_id": r.target_id}) for r in page.items],
        summary=tally.summary(),
        pagination=Pagination.of(page.total_items, query.page, query.page_size),
    )


TimeRangeParam = Annotated[
    str | None,
    Query(alias="timeRange", max_length=128, description=f"{time_range.FORMS}; default: the last 24 hours."),
]


@router.get(
    "/deadlocks",
    summary="Deadlocks found in the servers' logs (run deadlocks/detect, or wait for the capture schedule)",
)
@requires("locks:read")
def list_deadlocks(
    target_id: TargetId = None,
    tenant_id: TenantId = None,
    node: Node = None,
    time_range_text: TimeRangeParam = None,
    severity: Annotated[Severity | None, Query()] = None,
    include_resolved: Annotated[
        bool,
        Query(
            alias="includeResolved",
            description="The server resolves every deadlock by cancelling one session; false keeps the deadlocks "
            "whose pattern recurs and needs the application changed (manualInterventionRequired).",
        ),
    ] = True,
    page: PageNumber = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> DeadlockResponse:
    span = time_range.parse(time_range_text, default=timedelta(hours=24), max_age=RETENTION)
    return history(
        current_ports(),
        principal(router),
        target_id,
        tenant_id,
        node,
        span.start,
        span.end,
        severity=severity,
        include_resolved=include_resolved,
        query=PageQuery(page=page, page_size=page_size),
    )


@router.post(
    "/deadlocks/detect",
    summary="Scan the servers' logs since the last scan for deadlocks, lock timeouts and long waits",
)
@requires("locks:read")
def detect_deadlocks(
    target_id: TargetId = None, tenant_id: TenantId = None, node: Node = None
) -> DeadlockDetectionResponse:
    found = service.targets(current_ports(), principal(router), target_id, tenant_id, node)
    return DeadlockDetectionResponse.model_validate(detect(current_ports(), found))
