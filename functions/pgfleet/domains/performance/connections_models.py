"""Wire shapes of the connection pool analysis and the cache analysis (seed 003, phase 3:
ConnectionAnalysisResponse and CacheAnalysisResponse, camelCase on the wire). The seed's
fields come first; what it leaves open (the breakdowns, the trend points, what a number is
computed from) is added the way the monitoring shapes do it. A number nothing measured is
null, never a made-up value."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pgfleet.core.wire import CamelModel

ConnectionRecommendationType = Literal[
    "INCREASE_POOL", "DECREASE_POOL", "CONFIGURE_POOLER", "OPTIMIZE_QUERIES"
]
CacheType = Literal["SHARED_BUFFERS", "QUERY_CACHE", "PLAN_CACHE"]
CacheStatus = Literal["AVAILABLE", "PARTIAL", "NOT_AVAILABLE"]


class TimeRange(CamelModel):
    start: str = Field(description="ISO 8601, UTC.")
    end: str = Field(description="ISO 8601, UTC.")


class ConnectionCount(CamelModel):
    name: str = Field(description="The database, user or application_name ('' when the client set none).")
    connections: int
    active: int
    idle: int
    idle_in_transaction: int


class ConnectionPoolStatus(CamelModel):
    max_connections: int
    current_connections: int = Field(description="Client backends (the analysis' own session left out).")
    active_connections: int
    idle_connections: int
    waiting_connections: int = Field(
        description="Client backends waiting for a lock (wait_event_type 'Lock')."
    )
    utilization_percentage: float = Field(
        description="currentConnections over usableConnections, in percent."
    )
    idle_in_transaction_connections: int
    superuser_reserved_connections: int
    reserved_connections: int = Field(description="reserved_connections (PostgreSQL 16+; 0 before).")
    usable_connections: int = Field(
        description="What non-superusers may open: max_connections - superuser_reserved_connections "
        "- reserved_connections."
    )
    oldest_connection_age_seconds: float | None = Field(
        description="Since backend_start of the oldest client."
    )
    oldest_idle_in_transaction_seconds: float | None
    by_database: list[ConnectionCount]
    by_user: list[ConnectionCount]
    by_application: list[ConnectionCount]
    target_id: str | None = Field(default=None, description="Null on the sum of several servers.")


class ConnectionUtilization(CamelModel):
    target_id: str
    current_percentage: float
    peak_percentage: float | None = Field(
        description="Highest connections_total over the range, of the usable."
    )
    average_percentage: float | None
    peak_connections: int | None
    average_connections: float | None
    peak_active_connections: int | None
    idle_share_percentage: float | None = Field(
        description="Mean over the samples of idle connections over all connections, in percent."
    )
    samples: int = Field(description="Monitoring samples (history stream `metrics`) in the range.")
    covered_seconds: float = Field(description="From the first to the last sample of the range.")


class ConnectionRecommendation(CamelModel):
    type: ConnectionRecommendationType
    current_value: float
    recommended_value: float
    reasoning: str
    estimated_impact: str
    target_id: str
    evidence: dict[str, float | int | str | None] = Field(
        description="The numbers the rule was applied to (camelCase names)."
    )


class ConnectionTrend(CamelModel):
    timestamp: str = Field(description="Start of the bucket (ISO 8601, UTC).")
    target_id: str
    samples: int
    average_connections: float
    peak_connections: int
    average_active: float
    average_idle: float
    average_idle_in_transaction: float
    max_connections: int | None
    peak_utilization_percentage: float | None


class ConnectionAnalysisResponse(CamelModel):
    current_status: ConnectionPoolStatus = Field(
        description="The server's, or the sum of the servers in scope."
    )
    utilization: list[ConnectionUtilization]
    recommendations: list[ConnectionRecommendation]
    historical_trends: list[ConnectionTrend]
    servers: list[ConnectionPoolStatus] = Field(description="Each server's current status.")
    aggregation: Literal["MINUTE", "HOUR", "DAY"]
    time_range: TimeRange
    notes: list[str]


# --- cache -------------------------------------------------------------------------------------


class BufferRelation(CamelModel):
    schema_name: str | None = Field(
        description="Null when the relation could not be resolved (dropped since)."
    )
    relation_name: str | None
    relation_kind: str | None = Field(description="pg_class.relkind: r table, i index, t TOAST, m matview...")
    buffers: int
    bytes: int
    dirty_buffers: int
    percent_of_cache: float


class HitRatios(CamelModel):
    database: float | None = Field(description="pg_stat_database blks_hit / (blks_hit + blks_read).")
    tables: float | None = Field(description="pg_statio_user_tables heap_blks_hit / (hit + read).")
    indexes: float | None = Field(description="pg_statio_user_tables idx_blks_hit / (hit + read).")
    blocks_hit: int | None
    blocks_read: int | None


class SharedBuffersDetail(CamelModel):
    database_name: str = Field(description="The database of the hit ratios and the top relations.")
    buffers_total: int | None
    buffers_used: int | None
    buffers_dirty: int | None
    buffers_pinned: int | None
    usage_count_distribution: dict[str, int] = Field(description="usagecount (0-5) -> buffers; 'unused' too.")
    top_relations: list[BufferRelation]
    hit_ratios: HitRatios
    evictions_source: str | None = Field(
        description="pg_stat_io (16+), pg_stat_bgwriter writes (15), or null."
    )
    backend_writes: int | None = Field(
        default=None,
        description="PostgreSQL 15: pg_stat_bgwriter.buffers_backend (writes by backends, not evictions).",
    )
    bgwriter_clean_writes: int | None = Field(
        default=None, description="pg_stat_bgwriter.buffers_clean (15)."
    )


class PlanCacheDetail(CamelModel):
    plan_cache_mode: str | None
    track_planning: bool | None = Field(description="pg_stat_statements.track_planning.")
    plans: int | None = Field(description="pg_stat_statements: plannings of customer statements.")
    calls: int | None
    session_prepared_statements: str = Field(
        description="pg_prepared_statements (generic_plans/custom_plans) is per session: not readable for the "
        "sessions of clients."
    )


class CacheAnalysis(CamelModel):
    cache_type: CacheType
    size: int | None = Field(description="Bytes.")
    used_size: int | None = Field(description="Bytes.")
    hit_ratio: float | None
    miss_ratio: float | None
    evictions: int | None
    efficiency_score: float | None = Field(description="hitRatio x 100; null without a hit ratio.")
    recommendations: list[str]
    status: CacheStatus
    target_id: str
    notes: list[str]
    shared_buffers: SharedBuffersDetail | None = None
    plan_cache: PlanCacheDetail | None = None


class CacheRecommendation(CamelModel):
    cache_type: str
    setting: str = Field(description="The PostgreSQL setting to change.")
    current_size: int = Field(description="Bytes.")
    recommended_size: int = Field(description="Bytes.")
    reasoning: str
    estimated_improvement: float | None = Field(
        description="Percent; null: a cache size change is measured after it is made, not promised before."
    )
    target_id: str


class CacheAnalysisResponse(CamelModel):
    cache_types: list[CacheAnalysis]
    overall_efficiency: float | None = Field(
        description="Mean efficiencyScore of the SHARED_BUFFERS entries that have one (the only cache "
        "PostgreSQL keeps across sessions and measures)."
    )
    recommendations: list[CacheRecommendation]
    notes: list[str]
