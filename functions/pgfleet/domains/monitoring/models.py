"""Alerts, in the production-readiness API's shape (camelCase, like the seed's Alert)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pgfleet.core.models import StrictModel

AlertSeverity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
AlertStatus = Literal["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]


class AlertAction(BaseModel):
    actionType: str = Field(description="What to do, e.g. RAISE_QUOTA, RESIZE, FREE_SPACE.")
    description: str
    method: str | None = Field(default=None, description="HTTP method of the endpoint that does it.")
    path: str | None = Field(default=None, description="Endpoint that does it.")


class Alert(BaseModel):
    alertId: str
    alertName: str
    severity: AlertSeverity
    status: AlertStatus
    category: str
    description: str
    triggeredAt: str
    acknowledgedAt: str | None = None
    resolvedAt: str | None = None
    assignedTo: str | None = None
    metricValue: float
    threshold: float
    actions: list[AlertAction]
    tenantId: str = Field(description="Owner tenant of the resource.")
    resourceId: str
    resourceType: str


class PaginationInfo(BaseModel):
    page: int
    pageSize: int
    totalItems: int
    totalPages: int


class AlertSummary(BaseModel):
    total: int
    active: int
    acknowledged: int
    resolved: int
    critical: int
    high: int
    medium: int
    low: int


class AlertListResponse(BaseModel):
    alerts: list[Alert]
    pagination: PaginationInfo
    summary: AlertSummary


class AlertAcknowledgeRequest(StrictModel):
    acknowledgmentNote: str | None = Field(default=None, max_length=2000)
    assignTo: str | None = Field(default=None, max_length=200)
    estimatedResolution: str | None = Field(default=None, max_length=64, description="ISO 8601.")


class AlertResolveRequest(StrictModel):
    resolutionNote: str = Field(min_length=1, max_length=2000)
    rootCause: str | None = Field(default=None, max_length=2000)
    preventiveActions: list[str] = Field(default_factory=list, max_length=50)
