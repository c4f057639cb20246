"""Seed 003, phase 4: lock activity, captures, blocking sessions, termination and
auto-resolve, as the seed names them (camelCase on the wire). Additions in the seed's style:
`targetId` (and `node`) on every item, the blocking `tree`, `capturedAt` on captured rows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel

Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


class LockActivity(CamelModel):
    lock_id: str
    target_id: str
    node: str | None = None
    lock_type: str
    lock_mode: str
    relation_name: str | None = None
    schema_name: str | None = None
    table_name: str | None = None
    session_pid: int
    user_name: str | None = None
    application_name: str = ""
    client_addr: str | None = None
    query_text: str = ""
    lock_acquired_time: str | None = Field(
        default=None,
        description="For a granted lock, when its transaction began: PostgreSQL does not record when a "
        "granted lock was taken, and a lock is held from then at the latest. Null while waiting.",
    )
    lock_duration: float = Field(
        description="Seconds: held since the transaction began, or waited since waitstart."
    )
    lock_granted: bool
    blocking_pid: int | None = None
    impact_score: int = Field(ge=0, le=100)
    resolution_action: str | None = None
    resolution_time: str | None = None
    captured_at: str | None = Field(
        default=None, description="Set on rows from a capture (timeRange); null when live."
    )


class LockActivitySummary(CamelModel):
    total_locks: int
    waiting_locks: int
    blocking_locks: int
    average_duration: float
    max_duration: float
    critical_locks: int


class LockActivityResponse(CamelModel):
    locks: list[LockActivity]
    summary: LockActivitySummary
    pagination: Pagination


class LockCaptureRequest(CamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=r"^pg[ic]-[0-9a-f]{12}$")
    force_capture: bool = False


class LockCaptureResponse(CamelModel):
    capture_id: str
    locks_captured: int
    blocking_locks: int
    critical_locks: int
    deadlocks_detected: int
    capture_time: str
    targets_captured: list[str]
    targets_unreachable: list[str]


class BlockingTreeNode(CamelModel):
    pid: int
    children: list[BlockingTreeNode] = []


class BlockingSession(CamelModel):
    session_id: str
    target_id: str
    node: str | None = None
    session_pid: int
    user_name: str | None = None
    database_name: str | None = None
    application_name: str = ""
    client_addr: str | None = None
    session_state: str | None = None
    blocked_sessions_count: int = Field(
        description="Every session below it in the blocking tree, however deep."
    )
    total_locks_held: int
    exclusive_locks_held: int
    blocking_duration: float = Field(description="Seconds the longest of its waiters has waited.")
    blocking_severity: Severity
    impact_score: int = Field(ge=0, le=100)
    auto_kill_eligible: bool
    escalation_level: int = Field(ge=0, le=3)
    current_query: str = ""
    last_activity: str | None = None
    recommended_action: str
    blocked_pids: list[int]
    tree: BlockingTreeNode
    resolution_action: str | None = Field(default=None, description="includeResolved: how it was ended.")
    resolution_time: str | None = None
    resolution_reason: str | None = None


class BlockingSessionSummary(CamelModel):
    total_blocking_sessions: int
    critical_sessions: int
    high_severity_sessions: int
    total_blocked_sessions: int
    average_blocking_duration: float
    auto_resolution_candidates: int


class BlockingSessionsResponse(CamelModel):
    blocking_sessions: list[BlockingSession]
    summary: BlockingSessionSummary


class TerminateSessionRequest(CamelModel):
    reason: str = Field(min_length=1, max_length=500)
    dry_run: bool = False
    force: bool = False


class TerminateSessionResponse(CamelModel):
    session_pid: int
    target_id: str
    action: Literal["TERMINATED", "TERMINATION_FAILED", "DRY_RUN"]
    result: Literal["SUCCESS", "FAILED", "SIMULATED"]
    method: str | None = Field(default=None, description="CANCEL, CANCEL_THEN_TERMINATE or TERMINATE.")
    impact_assessment: str
    affected_sessions: list[int]


class AutoResolveRequest(CamelModel):
    tenant_id: str | None = Field(default=None, max_length=128)
    target_id: str | None = Field(default=None, pattern=r"^pg[ic]-[0-9a-f]{12}$")
    max_blocking_duration: int | None = Field(default=None, ge=0, le=86400)
    dry_run: bool = False
    severity_threshold: Literal["HIGH", "CRITICAL"] | None = None
    max_sessions_to_terminate: int | None = Field(default=None, ge=1, le=100)


class ResolutionResult(CamelModel):
    session_pid: int
    target_id: str
    action: str
    result: str
    impact_assessment: str
    blocked_sessions_freed: int


class AutoResolveResponse(CamelModel):
    resolution_id: str
    actions_planned: int
    actions_executed: int
    sessions_terminated: int
    resolution_results: list[ResolutionResult]
    overall_result: Literal["SUCCESS", "PARTIAL", "FAILED"]


class AutoResolveConfig(CamelModel):
    tenant_id: str
    enabled: bool
    max_blocking_duration: int
    severity_threshold: str
    max_sessions_per_cycle: int
    excluded_users: list[str]
    excluded_applications: list[str]
    business_hours_only: bool
    business_hours_timezone: str
    business_hours_start: int
    business_hours_end: int
    notification_channels: list[str]


class AutoResolveConfigRequest(CamelModel):
    enabled: bool | None = None
    max_blocking_duration: int | None = Field(default=None, ge=0, le=86400)
    severity_threshold: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] | None = None
    max_sessions_per_cycle: int | None = Field(default=None, ge=1, le=100)
    excluded_users: list[str] | None = Field(default=None, max_length=100)
    excluded_applications: list[str] | None = Field(default=None, max_length=100)
    business_hours_only: bool | None = None
    business_hours_timezone: str | None = Field(
        default=None, max_length=64, description="IANA zone, e.g. Europe/Paris."
    )
    business_hours_start: int | None = Field(default=None, ge=0, le=23)
    business_hours_end: int | None = Field(default=None, ge=1, le=24)
    notification_channels: list[str] | None = Field(default=None, max_length=20)

    @field_validator("business_hours_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
