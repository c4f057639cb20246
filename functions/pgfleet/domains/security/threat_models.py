"""Security threats on the wire (seed 003, "Security Management APIs"): snake_case, as the seed
writes this group, and as they are stored."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from pgfleet.core.models import StrictModel
from pgfleet.core.paging import Pagination

ThreatType = Literal["BRUTE_FORCE", "SQL_INJECTION", "XSS", "PRIVILEGE_ESCALATION"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
# ACTIVE: detected, nobody works on it yet; the investigation moves it on.
ThreatStatus = Literal["ACTIVE", "INVESTIGATING", "RESOLVED", "FALSE_POSITIVE"]
InvestigationStatus = Literal["INVESTIGATING", "RESOLVED", "FALSE_POSITIVE"]
TimeRange = Literal["1h", "24h", "7d"]
# What a mitigation does: refuse a source address at the server (a pg_hba reject line), refuse
# it at the API (a deny entry checked before authentication), or stop a role logging in.
MitigationAction = Literal["BLOCK_SOURCE_DATABASE", "BLOCK_SOURCE_API", "DISABLE_ROLE"]
MitigationStatus = Literal["ACTIVE", "LIFTED"]

THREAT_ID_PATTERN = r"^thr-[0-9a-f]{12}$"
MITIGATION_ID_PATTERN = r"^mit-[0-9a-f]{12}$"
MAX_NOTES = 2000
MAX_ACTIONS = 10
MIN_MITIGATION_SECONDS = 10
MAX_MITIGATION_SECONDS = 7 * 86400
DEFAULT_MITIGATION_SECONDS = 3600

Action = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
RoleName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[^\x00]+$")]


class MitigationRequest(StrictModel):
    """One mitigation to apply: to a source the threat observed, or to a role it names."""

    action: MitigationAction
    source_ip: str | None = Field(
        default=None, description="BLOCK_SOURCE_*: one of the threat's `indicators.source_ips`."
    )
    role: RoleName | None = Field(
        default=None, description="DISABLE_ROLE: one of the threat's `indicators.roles`."
    )
    duration_seconds: int = Field(
        default=DEFAULT_MITIGATION_SECONDS,
        ge=MIN_MITIGATION_SECONDS,
        le=MAX_MITIGATION_SECONDS,
        description="How long it lasts; it is lifted then (an at() schedule, and the minute detection).",
    )

    @field_validator("source_ip")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc

    @model_validator(mode="after")
    def _subject(self) -> MitigationRequest:
        if self.action == "DISABLE_ROLE":
            if self.role is None or self.source_ip is not None:
                raise ValueError("DISABLE_ROLE names a role (and no source_ip)")
        elif self.source_ip is None or self.role is not None:
            raise ValueError(f"{self.action} names a source_ip (and no role)")
        return self


class ThreatInvestigation(StrictModel):
    threat_id: str = Field(pattern=THREAT_ID_PATTERN)
    investigation_status: InvestigationStatus
    assigned_to: str | None = Field(default=None, min_length=1, max_length=200)
    investigation_notes: str | None = Field(default=None, max_length=MAX_NOTES)
    mitigation_actions: list[Action] = Field(
        default_factory=list,
        max_length=MAX_ACTIONS,
        description="What was done outside pgfleet, as the seed's free text; recorded with the threat.",
    )
    apply_mitigations: list[MitigationRequest] = Field(
        default_factory=list, max_length=MAX_ACTIONS, description="Mitigations pgfleet applies now, audited."
    )
    lift_mitigations: list[Annotated[str, StringConstraints(pattern=MITIGATION_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_ACTIONS,
        description="Active mitigations of this threat to lift now.",
    )


class Mitigation(BaseModel):
    mitigation_id: str
    threat_id: str
    action: MitigationAction
    target_id: str | None = Field(description="The server it applies to; null for BLOCK_SOURCE_API.")
    source_ip: str | None
    role: str | None
    status: MitigationStatus
    applied_at: str
    applied_by: str
    expires_at: str
    lifted_at: str | None = None
    lifted_by: str | None = None
    description: str = Field(description="What it is, as `mitigation_actions` lists it.")
    sessions_ended: int | None = Field(
        default=None,
        description="DISABLE_ROLE: the role's open sessions it ended; null for the other actions.",
    )


class ThreatIndicators(BaseModel):
    """The evidence. The seed's three fields, then what the detector that found it adds
    (`signals`: which signal found it; `source_ips`, `roles`, `databases`, `signatures`,
    `samples`, ...)."""

    model_config = ConfigDict(extra="allow")

    failed_attempts: int | None = None
    time_window_minutes: float | None = None
    user_agents: list[str] = Field(default_factory=list)
    signals: list[str] = Field(default_factory=list)


class SecurityThreat(BaseModel):
    threat_id: str
    threat_type: ThreatType
    severity: Severity
    source_ip: str | None = Field(description="The main source (null: a local socket, or none observed).")
    target_resource: str = Field(description="The server (and database) or API route attacked.")
    target_id: str | None = Field(description="The instance or cluster; null for a threat against the API.")
    tenant_id: str
    detection_timestamp: str = Field(description="When it was first detected (ISO 8601 UTC).")
    last_seen: str = Field(description="The newest evidence.")
    confidence_score: float = Field(ge=0, le=100, description="0..100, from the evidence (see threats.py).")
    status: ThreatStatus
    mitigation_actions: list[str] = Field(
        description="Mitigations applied (and lifted), then those recorded."
    )
    mitigations: list[Mitigation] = Field(default_factory=list)
    indicators: ThreatIndicators
    assigned_to: str | None = None
    investigation_notes: str | None = None
    incident_id: str | None = Field(
        default=None,
        description="The security incident detection opened for it (PGFLEET_THREAT_AUTO_INCIDENT), if any.",
    )
    updated_at: str


class ThreatSummary(BaseModel):
    critical_threats: int
    high_threats: int
    medium_threats: int
    low_threats: int
    by_type: dict[str, int] = Field(description="Threats per threat_type.")
    investigating: int


class ActiveThreatsResponse(BaseModel):
    threats: list[SecurityThreat]
    total_count: int
    summary: ThreatSummary
    pagination: Pagination


class InvestigationResponse(BaseModel):
    threat_id: str
    status: ThreatStatus
    updated_at: str
    assigned_to: str | None
    mitigation_actions: list[str]
    mitigations: list[Mitigation]


class ThreatScanResponse(BaseModel):
    detected: list[SecurityThreat] = Field(description="Threats created or updated by this scan.")
    targets_scanned: list[str]
    targets_unreachable: dict[str, str]
    log_lines_scanned: int
    audit_events_scanned: int
    mitigations_lifted: list[str]
    notes: list[str]

    @classmethod
    def of(cls, found: dict[str, Any]) -> ThreatScanResponse:
        return cls.model_validate(found)
