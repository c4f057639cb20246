"""Alerts: raised by the evaluations that watch resources (quotas, ...), resolved by them when
the condition clears, acknowledged and resolved by users. Shaped like the production-readiness
API's Alert (camelCase on the wire); records are snake_case (`id` is the alert id, `parent_id`
the resource's).

One alert per (resource, alert name) is open at a time: a claim on `alert-open#<resource>#<name>`
names it, so an evaluation that runs every minute updates the open alert instead of piling up
new ones; a new alert opens after the previous one was resolved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic.alias_generators import to_snake

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.paging import Page, PageQuery
from pgfleet.core.time_range import TimeRange
from pgfleet.domains.monitoring import listing
from pgfleet.domains.monitoring.models import (
    Alert,
    AlertAcknowledgeRequest,
    AlertAction,
    AlertListResponse,
    AlertResolveRequest,
    AlertSummary,
)
from pgfleet.ports.metadata import Range

log = logging.getLogger(__name__)

KIND = "alert"
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
STATUSES = ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")


@dataclass(frozen=True)
class Condition:
    """A condition an evaluation watches on one resource: `firing` opens (or keeps open)
    the alert named `name`; not firing resolves it."""

    name: str
    firing: bool
    severity: str
    category: str
    description: str
    metric_value: float
    threshold: float
    actions: list[AlertAction] = field(default_factory=list)
    # Only these notification channels (a capacity threshold's own), else every channel of
    # the tenant whose routing takes the alert.
    channels: list[str] | None = None


def _iso(moment: datetime) -> str:
    """A moment as the records write it (utcnow_iso: milliseconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _open_key(resource_id: str, name: str) -> str:
    return f"alert-open#{resource_id}#{name}"


def snake_record(record: dict[str, Any]) -> dict[str, Any]:
    """An alert record in snake_case. Records written before alerts were stored snake_case
    also hold camelCase copies (`alertName`, `metricValue`, ...): a snake_case field wins,
    a camelCase-only one is converted."""
    converted = {to_snake(k): v for k, v in record.items() if to_snake(k) != k}
    return {**converted, **{k: v for k, v in record.items() if to_snake(k) == k}}


def open_alert(ports: Ports, resource_id: str, name: str) -> dict[str, Any] | None:
    """The open (not resolved) alert `name` of a resource, or None."""
    claim = ports.store.claimed(_open_key(resource_id, name))
    stored = ports.store.get(KIND, claim["owner"]) if claim else None
    record = snake_record(stored) if stored is not None else None
    return record if record is not None and record["status"] != "RESOLVED" else None


def announce(ports: Ports, record: dict[str, Any], event: str) -> list[str]:
    """Tell the incidents and the notification channels that an alert fired or cleared.
    Neither may stop an evaluation: a failure is logged and recorded on the alert."""
    lines: list[str] = []
    for what in ("incident", "notification"):
        try:
            if what == "notification" and record.get("notification_channels"):
                outcome = _listener(what)(ports, record, event, only=record["notification_channels"])
            else:
                outcome = _listener(what)(ports, record, event)
        except Exception as exc:  # the evaluation goes on; the alert says what went wrong
            log.exception("alert %s: %s of %s failed", record["id"], what, event)
            _note_failure(ports, record["id"], f"{what} of {event} failed: {exc}")
            continue
        if isinstance(outcome, str):
            lines.append(outcome)
        elif outcome:
            lines += outcome
    return lines


def _listener(what: str) -> Any:
    """The incidents' or the notifications' hook (imported late: both import this module's
    domain)."""
    if what == "incident":
        from pgfleet.domains.monitoring import incidents

        return incidents.on_alert
    from pgfleet.domains import notifications

    return notifications.notify


def _note_failure(ports: Ports, alert_id: str, error: str) -> None:
    try:
        current = ports.store.get(KIND, alert_id) or {}
        failures = [*(current.get("announce_failures") or []), {"error": error[:500], "at": utcnow_iso()}]
        ports.store.update(KIND, alert_id, {"announce_failures": failures[-20:]})
    except Exception:  # noqa: BLE001 - recording is best effort, the log has it
        log.exception("alert %s: could not record a failure", alert_id)


def observe(
    ports: Ports, *, owner_tenant: str, resource_id: str, resource_type: str, condition: Condition
) -> str | None:
    """Open, update or resolve the alert of `condition` on a resource. Returns a line when
    something opened or resolved. Idempotent."""
    key = _open_key(resource_id, condition.name)
    claim = ports.store.claimed(key)
    stored = ports.store.get(KIND, claim["owner"]) if claim else None
    current = snake_record(stored) if stored is not None else None
    if condition.firing:
        if current is not None and current["status"] != "RESOLVED":
            if current["metric_value"] != condition.metric_value:
                ports.store.update(KIND, current["id"], {"metric_value": condition.metric_value})
            return None
        alert_id = new_id("alert")
        now = utcnow_iso()
        created = ports.store.create(
            KIND,
            {
                "id": alert_id, "tenant_id": owner_tenant, "parent_id": resource_id, "created_at": now,
                "alert_name": condition.name, "severity": condition.severity, "status": "ACTIVE",
                "category": condition.category, "description": condition.description,
                "triggered_at": now, "acknowledged_at": None, "resolved_at": None, "assigned_to": None,
                "metric_value": condition.metric_value, "threshold": condition.threshold,
                "actions": [action.to_record() for action in condition.actions],
                "resource_type": resource_type, "notification_channels": condition.channels,
            },
        )  # fmt: skip
        ports.store.release(key)
        ports.store.claim(key, alert_id)
        announced = announce(ports, snake_record(created), "triggered")
        return "; ".join(
            [f"{resource_id}: alert {condition.name} raised ({condition.description})", *announced]
        )
    if claim is None:
        return None
    ports.store.release(key)
    if current is not None and current["status"] != "RESOLVED":
        resolved = ports.store.update(KIND, current["id"], _resolution("condition cleared"))
        announced = announce(ports, snake_record(resolved), "resolved")
        return "; ".join([f"{resource_id}: alert {condition.name} resolved (condition cleared)", *announced])
    return None


def _resolution(note: str) -> dict[str, Any]:
    return {"status": "RESOLVED", "resolved_at": utcnow_iso(), "resolution": {"resolution_note": note}}


def resolve_all_for(ports: Ports, resource_id: str, note: str) -> int:
    """Resolve every open alert of a resource (it was deleted). Returns how many."""
    resolved = 0
    token = None
    while True:
        page, token = ports.store.list(KIND, parent_id=resource_id, limit=100, next_token=token)
        for record in map(snake_record, page):
            ports.store.release(_open_key(resource_id, record["alert_name"]), record["id"])
            if record["status"] != "RESOLVED":
                announce(
                    ports, snake_record(ports.store.update(KIND, record["id"], _resolution(note))), "resolved"
                )
                resolved += 1
        if not token:
            return resolved


def alert_view(record: dict[str, Any]) -> Alert:
    snake = snake_record(record)
    note = (snake.get("resolution") or {}).get("resolution_note")
    return Alert.model_validate(
        {**snake, "alert_id": snake["id"], "resource_id": snake["parent_id"], "resolution_note": note}
    )


def _visible(ports: Ports, principal: Principal, alert_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, alert_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"alert {alert_id} not found")
    return snake_record(record)


def list_alerts(
    ports: Ports,
    principal: Principal,
    *,
    tenant_id: str | None = None,
    status: str | None = None,
    severity: str | None = None,
    category: str | None = None,
    span: TimeRange | None = None,
    query: PageQuery,
) -> AlertListResponse:
    """Alerts the caller may see (its tenant's; every tenant's for a platform admin, who may
    narrow to `tenant_id`), newest first, filtered, one page, with a summary of the filtered
    set. Filtering, counting and paging happen in the store."""
    filters: dict[str, Any] = {
        name: value
        for name, value in (("status", status), ("severity", severity), ("category", category))
        if value is not None
    }
    if span is not None:
        filters["triggered_at"] = Range(_iso(span.start), _iso(span.end))
    records, total, summary = listing.scoped_page(ports, principal, KIND, tenant_id, filters, query, STATUSES)
    page = Page.of([alert_view(r) for r in records], total, query)
    return AlertListResponse(
        alerts=page.items, pagination=page.pagination, summary=AlertSummary.model_validate(summary)
    )


def acknowledge(ports: Ports, principal: Principal, alert_id: str, body: AlertAcknowledgeRequest) -> Alert:
    record = _visible(ports, principal, alert_id)
    if record["status"] == "RESOLVED":
        raise InvalidState(f"alert {alert_id} is already resolved")
    changes: dict[str, Any] = {
        "status": "ACKNOWLEDGED",
        "acknowledged_at": record.get("acknowledged_at") or utcnow_iso(),
        "acknowledged_by": principal.sub,
        "acknowledgment": body.to_record(),
    }
    if body.assign_to:
        changes["assigned_to"] = body.assign_to
    return alert_view(ports.store.update(KIND, alert_id, changes, record["revision"]))


def resolve(ports: Ports, principal: Principal, alert_id: str, body: AlertResolveRequest) -> Alert:
    """Resolve an alert by hand. If its condition still holds, the next evaluation opens a new one."""
    record = _visible(ports, principal, alert_id)
    if record["status"] == "RESOLVED":
        raise InvalidState(f"alert {alert_id} is already resolved")
    key = _open_key(record["parent_id"], record["alert_name"])
    claim = ports.store.claimed(key)
    if claim and claim["owner"] == alert_id:
        ports.store.release(key, alert_id)
    note = body.resolution_note or f"resolved by {principal.sub}"
    changes = {**_resolution(note), "resolved_by": principal.sub,
               "resolution": body.to_record()}  # fmt: skip
    resolved = ports.store.update(KIND, alert_id, changes, record["revision"])
    announce(ports, snake_record(resolved), "resolved")
    return alert_view(resolved)
