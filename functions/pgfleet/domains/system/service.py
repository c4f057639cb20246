"""Reading the audit trail. Events are written by the api handler and the operation engine
(pgfleet.core.audit); nothing here or anywhere in the API changes or deletes one.

Who sees what:
- a platform admin: every event, of every tenant (`tenantId` narrows);
- `audit:read` (tenant_admin, security_analyst, compliance_officer, admin of a tenant): the
  events of its own tenant; another tenant's id is 404, as for any other tenant's resource;
- `audit:read_own` only (user): its own events; naming another user is 403.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from pgfleet.core import audit, time_range
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Forbidden, NotFound
from pgfleet.core.paging import PageQuery, Pagination
from pgfleet.domains.system.models import AuditEvent, AuditSummary, AuditTrailResponse, CountItem, TimeWindow

DEFAULT_RANGE = timedelta(hours=24)
TOP_ACTIONS = 10


def audit_trail(
    ports: Ports,
    principal: Principal,
    *,
    tenant_id: str | None,
    user_id: str | None,
    action: str | None,
    resource: str | None,
    time_range_text: str | None,
    query: PageQuery,
) -> AuditTrailResponse:
    window = time_range.parse(
        time_range_text,
        default=DEFAULT_RANGE,
        max_age=timedelta(days=ports.settings.audit_retention_days),
    )
    if not principal.is_platform_admin:
        if tenant_id is not None and tenant_id != principal.tenant_id:
            raise NotFound(f"tenant {tenant_id} not found")
        tenant_id = principal.tenant_id
    if not principal.can("audit:read"):  # audit:read_own: its own events only
        if user_id is not None and user_id != principal.sub:
            raise Forbidden(
                f"role(s) {', '.join(principal.roles)} may read only their own audit events",
                details={"required": "audit:read"},
            )
        user_id = principal.sub
    filters: dict[str, Any] = {}
    if user_id is not None:
        filters["user_id"] = user_id
    if action is not None:
        filters["action"] = action
    target_id = None
    if resource is not None:
        if audit.target_of(resource) == resource:  # an id: that resource's own trail, one read
            target_id = resource
        else:
            filters["resource"] = resource
    tally = _Tally()
    page = ports.history.query(
        audit.STREAM,
        start=window.start,
        end=window.end,
        target_id=target_id,
        tenant_id=tenant_id,
        filters=filters or None,
        page=query.page,
        page_size=query.page_size,
        visit=tally.add,
    )
    return AuditTrailResponse(
        events=[AuditEvent.model_validate(record.data) for record in page.items],
        pagination=Pagination.of(page.total_items, query.page, query.page_size),
        summary=tally.summary(window),
    )


class _Tally:
    def __init__(self) -> None:
        self.results: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.users: set[str] = set()
        self.total = 0

    def add(self, record: Any) -> None:
        data = record.data
        self.total += 1
        self.results[data.get("result", "")] += 1
        self.actions[data.get("action", "")] += 1
        self.users.add(data.get("user_id", ""))
        status = (data.get("details") or {}).get("status_code")
        if isinstance(status, int):
            self.statuses[status] += 1

    def summary(self, window: time_range.TimeRange) -> AuditSummary:
        return AuditSummary(
            total_events=self.total,
            by_result={result: self.results.get(result, 0) for result in audit.RESULTS},
            unauthenticated=self.statuses.get(401, 0),
            denied=self.statuses.get(403, 0),
            rate_limited=self.statuses.get(429, 0),
            unique_users=len(self.users),
            top_actions=[CountItem(name=a, count=n) for a, n in self.actions.most_common(TOP_ACTIONS)],
            time_range=TimeWindow(start=window.start.isoformat(), end=window.end.isoformat()),
        )
