"""Wire shapes of the index analysis and optimization (seed 003, phase 3:
IndexAnalysisResponse, IndexRecommendation, IndexOptimizeRequest; camelCase on the wire).

The seed's fields come first, with its types: `estimatedBenefit` is a number (the percent the
statement's planned cost falls) and `estimatedCost` a sentence. The evidence behind them is
added as `benefit` (costs before and after, weighted by calls) and `writeCost` (the index
size estimate and the table's write rate). A number nothing measured is null."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pgfleet.core.wire import CamelModel, StrictCamelModel

RecommendationType = Literal["CREATE", "DROP", "REBUILD"]
RecommendationFilter = Literal["CREATE", "DROP", "REBUILD", "REINDEX"]
Priority = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Finding = Literal["UNUSED", "DUPLICATE", "INVALID", "BLOATED"]


class IndexUsageStats(CamelModel):
    scans: int = Field(description="idx_scan since the statistics were reset.")
    tuples_read: int = Field(description="idx_tup_read: index entries returned by its scans.")
    tuples_fetched: int = Field(description="idx_tup_fetch: live table rows fetched through it.")
    last_used: str | None = Field(None, description="last_idx_scan (PostgreSQL 16+); null before.")
    usage_ratio: float = Field(
        description="Its scans over every scan of its table (sequential and index), 0 to 1."
    )


class IndexAnalysis(CamelModel):
    target_id: str
    database: str
    schema_name: str
    table_name: str
    index_name: str
    index_type: str = Field(description="The access method: btree, hash, gin, gist, brin...")
    index_size: int = Field(description="Bytes.")
    columns: list[str | None] = Field(description="Key columns in order; null for an expression.")
    definition: str
    usage_statistics: IndexUsageStats
    efficiency_score: float = Field(
        description="0-100: 100 x (1 - bloat fraction) x min(1, log10(1 + scans) / 3); an index "
        "never scanned scores 0, one scanned 999 times or more and not bloated scores 100."
    )
    bloat_percentage: float | None = Field(
        description="Estimated from pg_stats (btree only, PgHero's method): the pages the index "
        "has over those its rows need at its fillfactor. Null for other methods or unanalysed tables."
    )
    findings: list[Finding]
    recommendation: str = Field(description="DROP, REINDEX or NONE.")
    maintenance_priority: str = Field(description="HIGH, MEDIUM, LOW or NONE.")
    recommendation_id: str | None = Field(None, description="The recommendation that applies it.")


class Evidence(CamelModel):
    query_id: str
    query_text: str
    calls: int
    mean_time_ms: float = Field(description="Its mean execution time, from pg_stat_statements.")
    cost_before: float = Field(description="Planned total cost of the statement now.")
    cost_after: float = Field(description="Planned total cost with the hypothetical index (hypopg).")
    improvement_percent: float
    weighted_cost_before: float = Field(description="cost_before x calls.")
    weighted_cost_after: float = Field(description="cost_after x calls.")
    method: str


class WriteCost(CamelModel):
    index_size_bytes: int | None = Field(description="hypopg_relation_size of the hypothetical index.")
    writes_per_hour: float = Field(
        description="n_tup_ins + n_tup_upd + n_tup_del of the table per hour (see writesBasis)."
    )
    reads_per_hour: float = Field(description="Calls of the statements it serves per hour.")
    write_share: float = Field(description="writes / (writes + reads) per hour; lowers the priority.")
    writes_basis: str = Field(
        "",
        description="What the write rate is computed over: the time since the previous analysis "
        "(counter deltas), or since the statistics were reset.",
    )


class Measured(CamelModel):
    """What optimize measured after it built the index."""

    measured_at: str
    plan_uses_index: bool
    cost_before: float | None
    cost_after: float | None
    mean_time_ms_before: float | None = Field(description="pg_stat_statements mean before the build.")
    mean_time_ms_after: float | None = Field(
        description="The mean of the timed runs after the build (a sample, measured by optimize)."
    )
    sample_runs: int
    improvement_factor: float | None


class IndexRecommendation(CamelModel):
    id: str
    type: RecommendationType
    priority: Priority
    table_name: str
    index_definition: str | None = Field(None, description="The statement optimize runs.")
    estimated_benefit: float = Field(description="Percent the statement's planned cost falls (CREATE); "
                                     "for DROP and REBUILD, 0.")  # fmt: skip
    estimated_cost: str
    reasoning: str
    target_id: str
    database: str
    schema_name: str
    columns: list[str] = Field(default_factory=list)
    index_type: str = "btree"
    index_name: str | None = None
    sql: str | None = None
    benefit: Evidence | None = None
    write_cost: WriteCost | None = None
    status: str = Field("RECOMMENDED", description="RECOMMENDED, APPLYING, APPLIED or FAILED.")
    measured: Measured | None = None


class IndexOptimizationSummary(CamelModel):
    total_indexes: int
    total_index_size: int
    unused_indexes: int
    duplicate_indexes: int
    invalid_indexes: int
    bloated_indexes: int
    missing_indexes: int
    reclaimable_bytes: int = Field(description="Size of the unused and duplicate indexes.")
    statements_analyzed: int
    what_if: bool = Field(description="Whether hypopg tested the candidates (all servers in scope).")
    duration_ms: float
    notes: list[str] = Field(default_factory=list)


class IndexAnalysisResponse(CamelModel):
    indexes: list[IndexAnalysis]
    recommendations: list[IndexRecommendation]
    summary: IndexOptimizationSummary


class MaintenanceWindow(StrictCamelModel):
    start: str = Field(
        description="HH:MM (UTC): the next such time starts the work.", pattern=r"^\d{2}:\d{2}(:\d{2})?$"
    )
    end: str = Field(description="HH:MM (UTC).", pattern=r"^\d{2}:\d{2}(:\d{2})?$")


class IndexOptimizeRequest(StrictCamelModel):
    recommendations: list[str] = Field(min_length=1, max_length=50, description="Recommendation ids.")
    execute_immediately: bool | None = None
    schedule_for: str | None = Field(None, description="ISO 8601: when to start.")
    maintenance_window: MaintenanceWindow | None = None
    dry_run: bool = Field(False, description="Only say what would run.")
    lock_timeout_ms: int = Field(5000, ge=100, le=600_000)

    @model_validator(mode="after")
    def _one_time(self) -> IndexOptimizeRequest:
        chosen = [
            self.schedule_for is not None,
            self.maintenance_window is not None,
            bool(self.execute_immediately),
        ]
        if sum(chosen) > 1:
            raise ValueError("give one of executeImmediately, scheduleFor and maintenanceWindow")
        return self


class PlannedAction(CamelModel):
    recommendation_id: str
    type: RecommendationType
    sql: str
    target_id: str
    database: str


class IndexOptimizeResponse(CamelModel):
    operation_id: str | None = Field(description="Null for a dry run or a scheduled start.")
    status: str = Field(description="QUEUED, SCHEDULED or DRY_RUN.")
    scheduled_for: str | None = None
    schedule_name: str | None = None
    actions: list[PlannedAction]
