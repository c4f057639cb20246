"""Alerts, in the production-readiness API's shape (camelCase on the wire, like the seed's
Alert; snake_case attributes and records)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel

AlertSeverity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
AlertStatus = Literal["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]


class AlertAction(CamelModel):
    action_type: str = Field(description="What to do, e.g. RAISE_QUOTA, RESIZE, FREE_SPACE.")
    description: str
    method: str | None = Field(default=None, description="HTTP method of the endpoint that does it.")
    path: str | None = Field(default=None, description="Endpoint that does it.")


class NotificationFailure(CamelModel):
    delivery_id: str
    channel_id: str
    channel_type: str
    event: str
    attempts: int
    error: str
    at: str
    final: bool = False


class Alert(CamelModel):
    alert_id: str
    alert_name: str
    severity: AlertSeverity
    status: AlertStatus
    category: str
    description: str
    triggered_at: str
    acknowledged_at: str | None = None
    resolved_at: str | None = None
    assigned_to: str | None = None
    metric_value: float
    threshold: float
    actions: list[AlertAction]
    tenant_id: str = Field(description="Owner tenant of the resource.")
    resource_id: str
    resource_type: str
    resolution_note: str | None = Field(
        default=None, description="Why it resolved (by itself: what cleared)."
    )
    notification_failures: list[NotificationFailure] = Field(
        default_factory=list,
        description="Deliveries to notification channels that failed: one per delivery, updated at each "
        "attempt; `final` once its retries are spent.",
    )


class AlertSummary(CamelModel):
    total: int
    active: int
    acknowledged: int
    resolved: int
    critical: int
    high: int
    medium: int
    low: int


class AlertListResponse(CamelModel):
    alerts: list[Alert]
    pagination: Pagination
    summary: AlertSummary


class AlertAcknowledgeRequest(StrictCamelModel):
    acknowledgment_note: str | None = Field(default=None, max_length=2000)
    assign_to: str | None = Field(default=None, max_length=200)
    estimated_resolution: str | None = Field(default=None, max_length=64, description="ISO 8601.")


class AlertResolveRequest(StrictCamelModel):
    resolution_note: str | None = Field(
        default=None, min_length=1, max_length=2000, description="Optional: a bodiless POST resolves too."
    )
    root_cause: str | None = Field(default=None, max_length=2000)
    preventive_actions: list[str] = Field(default_factory=list, max_length=50)


class AlertRule(CamelModel):
    name: str
    description: str
    category: str
    unit: str
    below: bool = Field(description="Fires under the threshold (else over it).")
    threshold: float
    for_minutes: int = Field(description="How long the condition must hold (0: one sample).")
    severity: AlertSeverity
    enabled: bool
    source: str = Field(description="Where the default comes from.")
    overridden: list[str] = Field(description="Fields the tenant changed.")
    defaults: dict[str, Any]


class AlertRuleList(CamelModel):
    tenant_id: str
    rules: list[AlertRule]


class AlertRuleUpdate(StrictCamelModel):
    """Fields to change; null puts one back to its default."""

    threshold: float | None = Field(default=None, ge=0)
    for_minutes: int | None = Field(default=None, ge=0, le=1440)
    severity: AlertSeverity | None = None
    enabled: bool | None = None
