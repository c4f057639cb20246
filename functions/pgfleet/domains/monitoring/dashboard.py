"""`GET /api/v1/monitoring/performance/dashboard`: the seed's PerformanceDashboardResponse for
the servers in scope (running ones: the statements are read live).

- `summary`: avgResponseTime, the mean execution time of pg_stat_statements weighted by calls
  over every customer statement (ms); throughput, the transactions (commits + rollbacks) per second of the newest samples,
  summed; errorRate, their rollbacks over their transactions; activeConnections summed;
  cacheHitRatio, the mean of the newest samples'. Null where nothing measured it.
- `topQueries`: pg_stat_statements (PostgreSQL 13+ columns) of every server, the largest total
  execution time first, without the platform's own statements (superuser roles), rated by RATINGS and with the suggestions of `suggestions`.
  pg_stat_statements is preloaded on every server, but its view exists only in a database
  where the extension was created: the `postgres` database is read, else the server's own
  database; a server with it in neither is named in `notes` (the platform never creates it).
- `systemResources`: cpu, memory, connections and storage of each server over the range
  (current = newest sample, average, peak); `trends`: the least-squares change of each
  metric of TREND_METRICS over the range, against its good direction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core.auth import Principal, tenant_scope
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.domains.monitoring import metrics, sql
from pgfleet.domains.monitoring.metrics_models import (
    PerformanceDashboardResponse,
    PerformanceSummary,
    PerformanceTrend,
    QueryPerformance,
    ResourceUtilization,
    TimeRange,
)
from pgfleet.ports.history import HistoryRecord

log = logging.getLogger(__name__)

WORKERS = 8
MAX_QUERY_TEXT = 2000
MB = 1024 * 1024

# Ratings of a statement, the first row it reaches: (rating, mean ms at least, calls at least).
# PgHero calls a query slow from a mean of 20 ms over at least 100 calls (slow_query_ms,
# slow_query_calls); fewer calls weigh too little to rate it below GOOD.
RATINGS: tuple[tuple[str, float, int], ...] = (
    ("CRITICAL", 100.0, 100),  # five times PgHero's slow mark
    ("POOR", 20.0, 100),  # PgHero's slow query
    ("GOOD", 5.0, 0),  # noticeable, or slow but rare
    ("EXCELLENT", 0.0, 0),
)
SLOW_MS, SLOW_CALLS = 20.0, 100
DISK_READ_SHARE = 0.10  # of its blocks read from disk rather than shared buffers
DISK_READ_MIN_BLOCKS = 100
ROWS_PER_CALL = 1000
TREND_METRICS = (
    "commits_per_second", "cache_hit_ratio", "rollback_ratio", "cpu_percent", "memory_bytes",
    "connections_used_percent", "database_size_bytes", "replication_lag_seconds_max",
)  # fmt: skip
RESOURCES = (
    ("cpu", "cpu_percent"), ("memory", "memory_bytes"), ("connections", "connections_used_percent"),
    ("storage", "database_size_bytes"),
)  # fmt: skip


def rating(mean_ms: float, calls: int) -> str:
    return next(name for name, ms, least in RATINGS if mean_ms >= ms and calls >= least)


@dataclass(frozen=True)
class Statement:
    target_id: str
    query_id: str
    query: str
    calls: int
    mean_ms: float
    total_ms: float
    rows: int
    blks_hit: int
    blks_read: int
    temp_written: int
    database: str | None


@dataclass
class ServerStatements:
    statements: list[Statement] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    total_ms: float = 0.0  # of every customer statement, not only those listed
    calls: int = 0


def suggestions(s: Statement, settings: dict[str, Any]) -> list[str]:
    """Concrete advice computed from the statement's own counters."""
    found = []
    block = int(settings.get("block_size") or 8192)
    if s.mean_ms >= SLOW_MS and s.calls >= SLOW_CALLS:
        found.append(
            f"slow: {s.mean_ms:.1f} ms on average over {s.calls} calls (PgHero's slow-query mark is "
            f"{SLOW_MS:.0f} ms over {SLOW_CALLS} calls): run EXPLAIN (ANALYZE, BUFFERS) on it to see where the time goes"
        )
    touched = s.blks_hit + s.blks_read
    if touched and s.blks_read >= DISK_READ_MIN_BLOCKS and s.blks_read / touched >= DISK_READ_SHARE:
        found.append(
            f"reads {100 * s.blks_read / touched:.0f}% of its blocks from disk ({s.blks_read * block / MB:.1f} MB): "
            f"an index on the columns it filters on, or more shared_buffers (now {settings.get('shared_buffers')})"
        )
    if s.temp_written > 0:
        found.append(
            f"spills {s.temp_written * block / MB:.1f} MB to temp files over {s.calls} calls: raise work_mem for it "
            f"(now {settings.get('work_mem')}), e.g. SET work_mem in the session that runs it"
        )
    if s.calls and s.rows / s.calls >= ROWS_PER_CALL:
        found.append(
            f"returns {s.rows / s.calls:.0f} rows per call: page it (LIMIT, keyset pagination) or aggregate in SQL"
        )
    return found


def _read_statements(ports: Ports, target: metrics.Target, limit: int) -> ServerStatements:
    found = ServerStatements()
    databases = ["postgres"]
    own = target.server.record.get("database")
    if own and own not in databases:
        databases.append(str(own))
    for database in databases:
        with ports.sql.session(target.target_id, database=database, node=target.node) as session:
            row = session.fetch_one(sql.STATEMENTS_SCHEMA)
            if row is None:
                continue
            settings = session.fetch_one(sql.SETTINGS)
            if settings:
                found.settings = dict(
                    zip(("shared_buffers", "work_mem", "block_size"), settings, strict=True)
                )
            schema = pgsql.Identifier(str(row[0]))
            totals = session.fetch_one(pgsql.SQL(sql.STATEMENT_TOTALS).format(schema=schema))
            if totals:
                found.total_ms, found.calls = float(totals[0]), int(totals[1])
            query = pgsql.SQL(sql.STATEMENTS).format(schema=schema)
            for qid, text, calls, mean, total, rows, hit, read, temp, datname in session.fetch_all(
                query, (limit,)
            ):
                found.statements.append(Statement(
                    target.target_id, str(qid), (text or "")[:MAX_QUERY_TEXT], int(calls), float(mean), float(total),
                    int(rows), int(hit), int(read), int(temp), datname,
                ))  # fmt: skip
            return found
    found.note = (
        f"{target.target_id}: pg_stat_statements is preloaded but not created in {' or '.join(databases)}: "
        "CREATE EXTENSION pg_stat_statements in one of them to see its queries"
    )
    return found


def statements_of(ports: Ports, found: Sequence[metrics.Target], limit: int) -> list[ServerStatements]:
    def one(target: metrics.Target) -> ServerStatements:
        try:
            return _read_statements(ports, target, limit)
        except Exception as exc:  # one server that cannot be read is a note, not a failed dashboard
            if not isinstance(exc, EngineError):
                log.warning("statements of %s", target.target_id, exc_info=exc)
            return ServerStatements(note=f"{target.target_id}: statements not read: {exc}"[:500])

    if len(found) <= 1:
        return [one(t) for t in found]
    with ThreadPoolExecutor(
        max_workers=min(WORKERS, len(found)), thread_name_prefix="pgfleet-statements"
    ) as pool:
        return list(pool.map(one, found))


def _summary(newest: list[dict[str, Any]], read: list[ServerStatements]) -> PerformanceSummary:
    calls = sum(r.calls for r in read)
    avg = round(sum(r.total_ms for r in read) / calls, 3) if calls else None
    commits = [d["commits_per_second"] for d in newest if d.get("commits_per_second") is not None]
    rollbacks = [d["rollbacks_per_second"] for d in newest if d.get("rollbacks_per_second") is not None]
    throughput = round(sum(commits) + sum(rollbacks), 3) if commits or rollbacks else None
    error_rate = round(sum(rollbacks) / throughput, 6) if throughput else None
    active = [int(d["connections_active"]) for d in newest if d.get("connections_active") is not None]
    ratios = [float(d["cache_hit_ratio"]) for d in newest if d.get("cache_hit_ratio") is not None]
    return PerformanceSummary(
        avg_response_time=avg, throughput=throughput, error_rate=error_rate,
        active_connections=sum(active) if active else None,
        cache_hit_ratio=round(sum(ratios) / len(ratios), 6) if ratios else None,
    )  # fmt: skip


def _resources(target_id: str, samples: list[HistoryRecord]) -> list[ResourceUtilization]:
    found = []
    for resource, name in RESOURCES:
        metric = metrics.BY_NAME[name]
        values = [v for s in samples if (v := metric.value(s.data)) is not None]
        current = metric.value(samples[-1].data) if samples else None
        found.append(ResourceUtilization(
            resource=resource, current=current, unit=metric.unit, target_id=target_id,  # type: ignore[arg-type]
            average=round(sum(values) / len(values), 3) if values else None, peak=max(values) if values else None,
        ))  # fmt: skip
    return found


def _trends(target_id: str, samples: list[HistoryRecord], span_seconds: float) -> list[PerformanceTrend]:
    found = []
    for name in TREND_METRICS:
        metric = metrics.BY_NAME[name]
        points = [(s.at.timestamp(), v) for s in samples if (v := metric.value(s.data)) is not None]
        if len(points) < 2:
            continue
        direction, percent = metrics.trend(metric, points, span_seconds)
        found.append(
            PerformanceTrend(metric=name, direction=direction, change_percent=percent, target_id=target_id)
        )
    return found


def performance_dashboard(
    ports: Ports,
    principal: Principal,
    *,
    target_id: str | None,
    tenant_id: str | None,
    time_range_text: str | None,
    limit: int,
) -> PerformanceDashboardResponse:
    span = metrics.parse_range(time_range_text)
    found = metrics.targets(ports, principal, target_id, tenant_id)
    tenant = tenant_scope(principal, tenant_id)
    wanted = {t.target_id for t in found}
    by_target: dict[str, list[HistoryRecord]] = {}

    def keep(record: HistoryRecord) -> None:
        if record.target_id in wanted:
            by_target.setdefault(record.target_id, []).append(record)

    if found:
        metrics.read(ports, target_id, tenant, span.start, span.end, keep)
    read = statements_of(ports, found, limit)
    statements = [s for r in read for s in r.statements]
    settings_of = {s.target_id: r.settings for r in read for s in r.statements}
    newest = [samples[-1].data for samples in by_target.values() if samples]
    top = sorted(statements, key=lambda s: s.total_ms, reverse=True)[:limit]
    span_seconds = (span.end - span.start).total_seconds()
    return PerformanceDashboardResponse(
        summary=_summary(newest, read),
        top_queries=[
            QueryPerformance(
                query_hash=s.query_id,
                query_text=s.query,
                avg_execution_time=round(s.mean_ms, 3),
                execution_count=s.calls,
                performance_rating=rating(s.mean_ms, s.calls),  # type: ignore[arg-type]
                optimization_suggestions=suggestions(s, settings_of.get(s.target_id, {})),
                target_id=s.target_id,
                database_name=s.database,
                total_execution_time=round(s.total_ms, 3),
            )  # fmt: skip
            for s in top
        ],
        system_resources=[r for t in found for r in _resources(t.target_id, by_target.get(t.target_id, []))],
        trends=[x for t in found for x in _trends(t.target_id, by_target.get(t.target_id, []), span_seconds)],
        time_range=TimeRange(start=metrics.iso(span.start), end=metrics.iso(span.end)),
        notes=[r.note for r in read if r.note],
    )
