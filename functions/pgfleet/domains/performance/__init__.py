"""performance: query analysis, safe EXPLAIN, index advice proven by what-if cost, connection
pooling and cache analysis, `/api/v1/performance` (seed 003, phase 3)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.performance import (
    connections_routes,
    indexes_routes,
    pooling_workflows,
    queries,
    queries_routes,
    workflows,
)
from pgfleet.domains.performance.cache import HIT_TARGET, hit_target
from pgfleet.domains.performance.indexes import (
    BLOAT_PERCENT,
    bloat_threshold,
    bloated_indexes,
    customer_sessions,
    database_of,
)
from pgfleet.domains.performance.pooling import reconcile_poolers
from pgfleet.domains.performance.queries import SLOW_MS

DOMAIN = Domain(
    name="performance",
    mounts=(
        Mount(queries_routes.router, "/api/v1/performance"),
        Mount(indexes_routes.router, "/api/v1/performance"),
        Mount(connections_routes.router, "/api/v1/performance"),
    ),
    # index optimize: the operation, its at() start; connections/configure (max_connections, the pooler)
    workflows=(*workflows.WORKFLOWS, *pooling_workflows.WORKFLOWS),
    cascades=pooling_workflows.CASCADES,  # a deleted instance or cluster takes its pooler along
    tasks={**workflows.TASKS, queries.SNAPSHOT_TASK: queries.scheduled_snapshot},
    schedules=(queries.SNAPSHOT_SCHEDULE,),  # pg_stat_statements snapshots (queries/analysis timeRange)
)

__all__ = [
    "BLOAT_PERCENT", "DOMAIN", "HIT_TARGET", "SLOW_MS", "bloat_threshold", "bloated_indexes", "customer_sessions",
    "database_of", "hit_target", "reconcile_poolers",
]  # fmt: skip
