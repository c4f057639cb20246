"""Security incidents on the wire (seed 003, "Security Incident APIs"): snake_case, as the seed
writes this group, and as they are stored."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from pgfleet.core.models import StrictModel
from pgfleet.core.paging import Pagination

IncidentType = Literal["DATA_BREACH", "UNAUTHORIZED_ACCESS", "MALWARE", "DDOS"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
IncidentStatus = Literal["OPEN", "INVESTIGATING", "CONTAINED", "ERADICATED", "RECOVERED", "CLOSED"]
# What a status update may ask for (the seed's list): an incident is OPEN only until it is worked on.
TargetStatus = Literal["INVESTIGATING", "CONTAINED", "ERADICATED", "RECOVERED", "CLOSED"]

INCIDENT_ID_PATTERN = r"^secinc-[0-9a-f]{12}$"
INCIDENT_NUMBER_PATTERN = r"^SEC-[0-9]{4}-[0-9]{3,}$"
# Bounds that keep an incident record well under DynamoDB's 400 KB item (see incidents.py).
MAX_ACTIONS = 10
MAX_NOTES = 2000

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Action = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class SecurityIncidentCreate(StrictModel):
    incident_type: IncidentType
    severity: Severity
    description: str = Field(min_length=1, max_length=4000)
    affected_systems: list[Label] = Field(default_factory=list, max_length=100)
    affected_users: int = Field(default=0, ge=0, le=10**12)
    affected_records: int = Field(default=0, ge=0, le=10**15)
    data_types_affected: list[Label] = Field(default_factory=list, max_length=50)
    detection_method: str | None = Field(default=None, min_length=1, max_length=500)
    incident_commander: str | None = Field(
        default=None, min_length=1, max_length=200, description="Who leads the response (an id or a name)."
    )
    tenant_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The tenant the incident belongs to: the caller's own (default); a platform admin may name any.",
    )


class SecurityIncidentStatusUpdate(StrictModel):
    status: TargetStatus
    status_notes: str | None = Field(
        default=None,
        max_length=MAX_NOTES,
        description="What happened; required as the reason when the status moves back.",
    )
    updated_by: str | None = Field(
        default=None,
        max_length=200,
        description="Kept as the client's note (`reported_by`); the change is recorded as the token's subject.",
    )
    containment_actions: list[Action] = Field(default_factory=list, max_length=MAX_ACTIONS)


class TimelineEntry(BaseModel):
    timestamp: str = Field(description="ISO 8601 UTC.")
    status: IncidentStatus = Field(description="The status the incident entered.")
    action: str
    from_status: IncidentStatus | None = Field(default=None, description="None for the creation.")
    updated_by: str = Field(description="The token's subject of whoever made the change.")
    reported_by: str | None = Field(default=None, description="The `updated_by` the client sent, if any.")
    notes: str | None = None
    containment_actions: list[str] = Field(default_factory=list)


class SecurityIncident(BaseModel):
    incident_id: str
    incident_number: str = Field(description="SEC-YYYY-NNN: per year of creation, unique, in creation order.")
    tenant_id: str
    incident_type: IncidentType
    severity: Severity
    status: IncidentStatus
    description: str
    affected_systems: list[str]
    affected_users: int
    affected_records: int
    data_types_affected: list[str]
    detection_method: str | None
    incident_commander: str | None
    created_by: str
    created_at: str
    updated_at: str
    contained_at: str | None = Field(
        description="When it first reached CONTAINED (or ERADICATED or RECOVERED, which imply it)."
    )
    closed_at: str | None
    mttr_minutes: float | None = Field(description="Minutes from created_at to contained_at.")
    time_to_close_minutes: float | None = Field(description="Minutes from created_at to closed_at.")
    containment_actions: list[str] = Field(description="Every containment action reported, oldest first.")
    timeline: list[TimelineEntry] = Field(description="Every status change, oldest first.")
    threat_id: str | None = Field(
        default=None, description="The detected threat that opened it (threat detection), if one did."
    )
    timeline_dropped: int = Field(
        default=0,
        ge=0,
        description="Entries dropped from a very long timeline (its first and latest are kept).",
    )


class SecurityIncidentSummary(BaseModel):
    total: int
    open: int
    investigating: int
    contained: int
    eradicated: int
    recovered: int
    closed: int
    critical: int
    high: int
    medium: int
    low: int
    contained_incidents: int = Field(description="How many of them have an MTTR (reached CONTAINED).")
    mean_mttr_minutes: float | None = Field(
        description="Mean minutes from creation to containment over those; null when none."
    )


class SecurityIncidentListResponse(BaseModel):
    incidents: list[SecurityIncident]
    pagination: Pagination
    summary: SecurityIncidentSummary
