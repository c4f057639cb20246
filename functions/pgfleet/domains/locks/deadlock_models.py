"""Seed 003, phase 4, "Deadlock Detection & Analysis": DeadlockEvent, its summary and the
detection response, as the seed names them (camelCase on the wire). Additions in the seed's
style: `targetId` and `node` on every event, its `severity` (the listing filters on it), the
`pattern` it shares with other deadlocks, and `unavailable`, which says why a field is null."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel
from pgfleet.domains.locks.models import Severity


class DeadlockGraphNode(CamelModel):
    pid: int
    user_name: str | None = None
    query: str | None = None
    victim: bool = Field(description="The backend the deadlock detector cancelled.")
    waits_for_table: str | None = Field(default=None, description="The table of the lock it was waiting for.")


class DeadlockGraphEdge(CamelModel):
    source: int = Field(description="The waiting pid.")
    target: int = Field(description="The pid it waits on (holds the lock, or is queued before it).")
    lock_type: str = Field(
        description="As pg_locks.locktype names it: transactionid, tuple, relation, advisory, ..."
    )
    lock_mode: str
    lock_object: str = Field(description='The object, as the server logged it ("transaction 737").')
    table_name: str | None = None


class DeadlockGraph(CamelModel):
    nodes: list[DeadlockGraphNode]
    edges: list[DeadlockGraphEdge]


class DeadlockEvent(CamelModel):
    deadlock_id: str
    target_id: str
    node: str | None = None
    database_name: str | None = None
    deadlock_timestamp: str
    involved_sessions: list[int]
    involved_queries: list[str] = Field(
        description="One per involved session, in the order of involvedSessions."
    )
    involved_users: list[str] = Field(
        description="The users of the involved sessions that the log (or pg_stat_activity, while they last) names."
    )
    deadlock_victim_pid: int = Field(description="The backend whose transaction the detector rolled back.")
    deadlock_resolution: str
    deadlock_duration: float | None = Field(
        description="Milliseconds the victim waited before the detector broke the cycle (its log_lock_waits line)."
    )
    affected_tables: list[str] = Field(
        description="Tables of the locks and of the queries; in schema public unqualified, as the default search_path shows them."
    )
    lock_types_involved: list[str] = Field(
        description='"<mode> on <locktype>", e.g. "ShareLock on transactionid".'
    )
    frequency_score: int = Field(
        description="Deadlocks of the same pattern (same query fingerprints and lock types) on this target in the 7 days "
        "up to this one, this one included."
    )
    prevention_suggestion: str
    business_impact: str
    recovery_time: float | None = Field(
        description="Milliseconds from the cycle's break until every surviving session had its lock (their log_lock_waits lines)."
    )
    data_consistency_affected: bool = Field(
        description="Always false: the victim's whole transaction is rolled back, no partial write survives. "
        "Its work is lost until the application retries it."
    )
    manual_intervention_required: bool = Field(
        description="True once the pattern recurs (3 or more in 7 days): the server resolves each deadlock, "
        "but only a change of the application's lock order stops them."
    )
    severity: Severity
    pattern: str = Field(
        description="What the deadlocks of this pattern do, e.g. 'update orders / update payments'."
    )
    pattern_id: str
    deadlock_graph: DeadlockGraph
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Why a null field could not be computed."
    )


class DeadlockSummary(CamelModel):
    total_deadlocks: int
    critical_deadlocks: int
    average_resolution_time: float | None = Field(
        description="Milliseconds, the mean deadlockDuration of the events that have one."
    )
    most_frequent_pattern: str | None
    prevention_recommendations: list[str]


class DeadlockResponse(CamelModel):
    deadlocks: list[DeadlockEvent]
    summary: DeadlockSummary
    pagination: Pagination


class DeadlockDetectionResponse(CamelModel):
    detection_id: str
    deadlocks_detected: bool
    deadlock_count: int
    detection_time: str
    deadlocks: list[DeadlockEvent]
    lock_timeouts_found: int = Field(
        description="Statements cancelled by lock_timeout (SQLSTATE 55P03) in the new lines."
    )
    lock_waits_found: int = Field(
        description="Lock waits longer than deadlock_timeout that ended, in the new lines."
    )
    lines_scanned: int
    targets_scanned: list[str]
    targets_unreachable: dict[str, str] = Field(
        default_factory=dict, description="Target (and node) -> why its log was not read."
    )
    notes: list[str] = Field(default_factory=list, description="What the scan could not do completely.")


def event_from_record(data: dict[str, Any]) -> DeadlockEvent:
    return DeadlockEvent.model_validate(data)
