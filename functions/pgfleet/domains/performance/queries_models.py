"""Wire shapes of query analysis and EXPLAIN (the seed's QueryAnalysisResponse,
QueryAnalyzeRequest and QueryAnalyzeResponse). The seed leaves ExecutionPlan,
QueryPerformanceMetrics and QueryPerformanceSummary open: they are designed here, the way
the nearest seed shapes are (camelCase, numbers in ms)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator

from pgfleet.core.paging import Pagination
from pgfleet.core.wire import CamelModel, StrictCamelModel

Rating = Literal["EXCELLENT", "GOOD", "POOR", "CRITICAL"]
RATINGS: tuple[str, ...] = ("EXCELLENT", "GOOD", "POOR", "CRITICAL")
SortBy = Literal["execution_time", "frequency", "impact"]
SuggestionType = Literal["INDEX", "QUERY_REWRITE", "CONFIGURATION", "SCHEMA"]
Priority = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Effort = Literal["LOW", "MEDIUM", "HIGH"]
PlanFormat = Literal["TEXT", "JSON", "XML"]
FindingType = Literal[
    "ROW_ESTIMATE", "SLOW_NODE", "ROWS_REMOVED_BY_FILTER", "DISK_SPILL", "SEQ_SCAN_LARGE_TABLE"
]
MAX_STATEMENT_TIMEOUT_MS = 30_000
MAX_PARAMETERS = 100


class OptimizationSuggestion(CamelModel):
    type: SuggestionType
    priority: Priority
    description: str = Field(description="What was measured and what to do, in a sentence or two.")
    estimated_improvement: float = Field(
        description="Percentage of the statement's time it could save (an estimate from its counters)."
    )
    implementation_effort: Effort
    sql_suggestion: str | None = None


class QueryStatistics(CamelModel):
    total_executions: int
    avg_execution_time: float = Field(description="ms")
    min_execution_time: float | None = Field(
        description="ms; null over a timeRange (pg_stat_statements keeps only the extremes since reset)."
    )
    max_execution_time: float | None = Field(description="ms; null over a timeRange, as minExecutionTime.")
    total_time: float = Field(description="ms")
    cache_hit_ratio: float | None = Field(
        description="shared_blks_hit / (shared_blks_hit + shared_blks_read); null when it touched no block."
    )
    rows_examined: int | None = Field(
        default=None,
        description="Not derivable from pg_stat_statements (it counts blocks, not rows examined): null; "
        "sharedBlocksTouched is what it read. POST /queries/analyze measures rows per plan node.",
    )
    shared_blocks_touched: int = Field(description="shared_blks_hit + shared_blks_read.")
    rows_returned: int = Field(description="Rows returned or affected (pg_stat_statements `rows`).")
    temp_blocks_written: int = 0
    share_of_total_time: float = Field(description="Its percentage of the server's customer statement time.")


class QueryAnalysis(CamelModel):
    query_hash: str = Field(description="pg_stat_statements queryid.")
    query_text: str
    performance_rating: Rating
    statistics: QueryStatistics
    optimization_suggestions: list[OptimizationSuggestion]
    target_id: str
    database_name: str | None = None
    role_name: str | None = None


class QueryPerformanceSummary(CamelModel):
    total_queries: int = Field(description="Statements matching the filters (every page).")
    total_executions: int
    total_time: float = Field(description="ms, of the matching statements")
    avg_execution_time: float | None = Field(description="ms, weighted by calls")
    by_rating: dict[str, int]
    source: Literal["since_reset", "snapshots"] = Field(
        description="since_reset: pg_stat_statements counters since their last reset (no timeRange); "
        "snapshots: deltas between the stored snapshots of the timeRange."
    )
    time_range: dict[str, str | None] | None = Field(
        default=None, description="start/end of the snapshots the deltas are between (ISO 8601)."
    )
    notes: list[str] = Field(default_factory=list)


class QueryAnalysisResponse(CamelModel):
    queries: list[QueryAnalysis]
    summary: QueryPerformanceSummary
    pagination: Pagination


class ExplainOptions(StrictCamelModel):
    analyze: bool = False
    buffers: bool = False
    timing: bool = True
    format: PlanFormat = "JSON"


class QueryAnalyzeRequest(StrictCamelModel):
    target_id: str = Field(
        validation_alias=AliasChoices("targetId", "target_id", "resourceId", "resource_id"),
        pattern=r"^pg[ic]-[0-9a-f]{12}$",
        description="The instance (pgi-...) or cluster (pgc-..., its primary) to explain on.",
    )
    database: str | None = Field(
        default=None, max_length=63, description="A tenant database of the target; default its app database."
    )
    query_text: str = Field(
        validation_alias=AliasChoices("queryText", "query_text", "query"), min_length=1, max_length=100_000
    )
    parameters: list[Any] | None = Field(
        default=None, max_length=MAX_PARAMETERS, description="Bound to $1..$n as real parameters."
    )
    explain_options: ExplainOptions = Field(default_factory=ExplainOptions)
    statement_timeout_ms: int = Field(default=5_000, ge=1, le=MAX_STATEMENT_TIMEOUT_MS)

    @field_validator("parameters")
    @classmethod
    def _scalars(cls, value: list[Any] | None) -> list[Any] | None:
        for item in value or ():
            if not isinstance(item, str | int | float | bool) and item is not None:
                raise ValueError("parameters are scalars (string, number, boolean or null)")
        return value


class PlanFinding(CamelModel):
    node_type: str
    relation: str | None = None
    finding_type: FindingType
    detail: str
    suggestion: str


class ExecutionPlan(CamelModel):
    format: PlanFormat
    plan: Any = Field(description="The JSON plan as an object for JSON; the server's text for TEXT and XML.")
    analyzed: bool = Field(
        description="Whether the statement ran (ANALYZE), inside a rolled-back transaction."
    )
    total_cost: float
    plan_rows: float
    findings: list[PlanFinding]
    notes: list[str] = Field(default_factory=list)


class QueryPerformanceMetrics(CamelModel):
    planning_time: float | None = Field(description="ms (with ANALYZE, or SUMMARY)")
    execution_time: float | None = Field(description="ms; null without ANALYZE")
    total_cost: float
    actual_rows: float | None = None
    shared_blocks_hit: int | None = None
    shared_blocks_read: int | None = None
    temp_blocks_written: int | None = None
    statement_kind: str
    rolled_back: bool = True


class QueryAnalyzeResponse(CamelModel):
    execution_plan: ExecutionPlan
    performance: QueryPerformanceMetrics
    optimization_suggestions: list[OptimizationSuggestion]
    target_id: str
    database_name: str
    role_name: str
