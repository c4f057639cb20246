"""Incidents, in the production-readiness API's shape (seed 003, Incident Management):
camelCase on the wire, snake_case attributes and records."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel
from pgfleet.domains.monitoring.models import AlertSeverity

IncidentStatus = Literal["OPEN", "INVESTIGATING", "RESOLVED", "CLOSED"]
# What a user does (IncidentUpdateRequest.actionType, as the seed writes it).
UpdateAction = Literal["STATUS_CHANGE", "ASSIGNMENT", "NOTE", "ESCALATION"]
# What a timeline records: the users' actions, and the alerts that joined or resolved.
EventAction = Literal[
    "STATUS_CHANGE", "ASSIGNMENT", "NOTE", "ESCALATION", "ALERT_TRIGGERED", "ALERT_RESOLVED"
]


class IncidentEvent(CamelModel):
    at: str = Field(description="ISO 8601 UTC.")
    action_type: EventAction
    actor: str = Field(description="Who did it: the token's subject, or `pgfleet` for an alert evaluation.")
    note: str
    from_status: IncidentStatus | None = None
    to_status: IncidentStatus | None = None
    assigned_to: str | None = None
    alert_id: str | None = Field(default=None, description="The alert that triggered or resolved.")
    from_severity: AlertSeverity | None = None
    to_severity: AlertSeverity | None = None
    escalation_level: int | None = Field(default=None, description="The level an ESCALATION reached.")


class Incident(CamelModel):
    incident_id: str
    title: str
    severity: AlertSeverity
    status: IncidentStatus
    created_at: str
    resolved_at: str | None = None
    assigned_to: str | None = None
    affected_services: list[str] = Field(description="Ids of the servers (instances, clusters) affected.")
    related_alerts: list[str] = Field(description="Ids of the alerts that joined the incident.")
    timeline: list[IncidentEvent] = Field(description="Oldest first.")
    tenant_id: str = Field(description="Owner tenant of the affected servers.")
    updated_at: str
    alerts_open: int = Field(ge=0, description="Related alerts not resolved yet.")
    escalation_level: int = Field(default=0, ge=0, description="How many times it was escalated.")
    timeline_dropped: int = Field(
        default=0, ge=0, description="Events dropped from a long timeline (its first and latest are kept)."
    )


class IncidentSummary(CamelModel):
    total: int
    open: int
    investigating: int
    resolved: int
    closed: int
    critical: int
    high: int
    medium: int
    low: int


class IncidentListResponse(CamelModel):
    incidents: list[Incident]
    pagination: Pagination
    summary: IncidentSummary


class IncidentUpdateRequest(StrictCamelModel):
    status: IncidentStatus | None = Field(default=None, description="The new status (STATUS_CHANGE only).")
    assign_to: str | None = Field(
        default=None, min_length=1, max_length=200, description="ASSIGNMENT (or with a STATUS_CHANGE)."
    )
    note: str = Field(min_length=1, max_length=2000)
    action_type: UpdateAction

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> IncidentUpdateRequest:
        if self.action_type == "STATUS_CHANGE" and self.status is None:
            raise ValueError("a STATUS_CHANGE needs status")
        if self.action_type != "STATUS_CHANGE" and self.status is not None:
            raise ValueError(f"status is only taken with a STATUS_CHANGE, not with {self.action_type}")
        if self.action_type == "ASSIGNMENT" and self.assign_to is None:
            raise ValueError("an ASSIGNMENT needs assignTo")
        if self.action_type in ("NOTE", "ESCALATION") and self.assign_to is not None:
            raise ValueError(f"assignTo is not taken with {self.action_type}")
        return self
