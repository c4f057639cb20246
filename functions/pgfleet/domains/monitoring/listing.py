"""The alerts' and the incidents' list: one scope rule, one summary."""

from __future__ import annotations

from typing import Any

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.paging import PageQuery

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


def scoped_page(
    ports: Ports,
    principal: Principal,
    kind: str,
    tenant_id: str | None,
    filters: dict[str, Any],
    query: PageQuery,
    statuses: tuple[str, ...],
    severities: tuple[str, ...] = SEVERITIES,
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """One page of the alerts or incidents the caller may see (its tenant's; every tenant's for a
    platform admin, who may narrow to `tenant_id`; a tenant's token asking for another tenant
    gets an empty page), newest first, and a summary of the filtered set by status and
    severity. Filtering, counting and paging happen in the store."""
    records: list[dict[str, Any]] = []
    total = 0
    counts: dict[str, dict[Any, int]] = {"status": {}, "severity": {}}
    if principal.is_platform_admin or tenant_id in (None, principal.tenant_id):
        scope = tenant_id if principal.is_platform_admin else principal.tenant_id
        records, total = ports.store.page(
            kind, tenant_id=scope, filters=filters, page=query.page, page_size=query.page_size
        )
        counts = ports.store.tally(kind, ("status", "severity"), tenant_id=scope, filters=filters)
    summary: dict[str, int] = {"total": total}
    for value in statuses:
        summary[value.lower()] = counts["status"].get(value, 0)
    for value in severities:
        summary[value.lower()] = counts["severity"].get(value, 0)
    return records, total, summary
