"""`GET /api/v1/performance/queries/analysis`: the customer statements of pg_stat_statements
(PostgreSQL 13+ columns, 15 and 18 alike) of the servers in scope, rated and with suggestions
computed from their own counters. The platform's own statements (superuser roles) are left
out. pg_stat_statements is read in the `postgres` database (where the platform creates it,
schema pgfleet_stats), else in the server's own database.

Without `timeRange` the counters are those since pg_stat_statements was last reset
(`summary.source = since_reset`, and `notes` says when that was). With `timeRange` they are
deltas between two snapshots the `pgfleet-performance-snapshot` schedule stores every 5
minutes in the history store (stream `statements`, one record per server with its top
SNAPSHOT_TOP statements' counters): the snapshot at or just before the start, and the newest
in the range. A statement whose calls went down (a reset), or that is absent from the first
snapshot, counts from zero. min/max times are kept by pg_stat_statements only since reset,
so over a timeRange they are null.

Ratings (PgHero's slow rule: a mean of at least 20 ms over at least 100 calls; "share" is
the statement's part of the server's customer statement time):

| rating | rule |
|---|---|
| CRITICAL | slow, and a mean of 100 ms (5 x the slow mean) or more or a share of 20 % or more |
| POOR | slow |
| GOOD | not slow, with a mean of 5 ms or more or a share of 10 % or more |
| EXCELLENT | anything else |

A tenant sets its own slow mean (section PERFORMANCE of the system configuration,
`slowQueryMs`); the next analysis of its servers rates with it.

Suggestions, each from the statement's numbers:

| type | when | estimatedImprovement |
|---|---|---|
| INDEX | slow or a share of 10 %+, touching 10+ blocks per row it returns (at least 100 blocks a call): a scan; the columns are those of its WHERE / JOIN, parsed with pglast | 1 - (rows + 3) / blocks per call |
| CONFIGURATION (work_mem) | it writes temp files | the temp blocks' part of the blocks it touches |
| CONFIGURATION (shared_buffers) | cache hit ratio below 90 % over 100+ blocks read | the part read from disk |
| QUERY_REWRITE | 1,000 rows or more per call | 1 - 100 / rows per call |
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core import tenant_settings, time_range
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, ValidationFailed
from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains import servers
from pgfleet.domains.performance import sql_queries, statements
from pgfleet.domains.performance.queries_models import (
    RATINGS,
    OptimizationSuggestion,
    QueryAnalysis,
    QueryAnalysisResponse,
    QueryPerformanceSummary,
    QueryStatistics,
)
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.scheduler import Schedule

log = logging.getLogger(__name__)

STREAM = "statements"
SNAPSHOT_TASK = "performance_snapshot"
SNAPSHOT_SCHEDULE = Schedule(
    name="pgfleet-performance-snapshot", expression="rate(5 minutes)", payload={"task": SNAPSHOT_TASK}
)
SNAPSHOT_TOP = 100  # statements per snapshot: one history record stays far below 400 kB
SNAPSHOT_QUERY_CHARS = 1000
SNAPSHOT_TTL = timedelta(days=14)
LIVE_LIMIT = 500
MAX_QUERY_TEXT = 2000
START_LOOKBACK = timedelta(hours=1)  # how far before the start a snapshot may be to count as "at the start"
STATEMENT_TIMEOUT_MS = 5_000
WORKERS = 8  # servers read at once
LOCK_TIMEOUT_MS = 1_000

SLOW_MS, SLOW_CALLS = 20.0, 100
CRITICAL_MS, CRITICAL_SHARE = 100.0, 0.20
GOOD_MS, GOOD_SHARE = 5.0, 0.10
SCAN_BLOCKS_PER_ROW, SCAN_MIN_BLOCKS = 10.0, 100.0
LOW_HIT_RATIO, LOW_HIT_MIN_READ = 0.90, 100
ROWS_PER_CALL = 1000
MB = 1024 * 1024


@dataclass(frozen=True)
class Counters:
    """One statement's pg_stat_statements counters (or their delta over a range)."""

    query_id: str
    query: str
    calls: int
    total_ms: float
    min_ms: float | None
    max_ms: float | None
    rows: int
    blks_hit: int
    blks_read: int
    temp_written: int
    database: str | None
    role: str | None
    dbid: int = 0
    userid: int = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.query_id, self.dbid, self.userid)

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id, "query": self.query[:SNAPSHOT_QUERY_CHARS], "calls": self.calls,
            "total_ms": round(self.total_ms, 3), "min_ms": self.min_ms, "max_ms": self.max_ms, "rows": self.rows,
            "blks_hit": self.blks_hit, "blks_read": self.blks_read, "temp_written": self.temp_written,
            "database": self.database, "role": self.role, "dbid": self.dbid, "userid": self.userid,
        }  # fmt: skip

    @classmethod
    def of_record(cls, data: dict[str, Any]) -> Counters:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass
class ServerCounters:
    target_id: str
    statements: list[Counters] = field(default_factory=list)
    total_ms: float = 0.0  # of every customer statement, not only those listed
    calls: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    stats_reset: str | None = None
    note: str | None = None


def delta(old: Counters | None, new: Counters) -> Counters | None:
    """The statement's counters between two snapshots; from zero when it was absent before
    or its counters were reset in between; None when it did not run."""
    if old is None or new.calls < old.calls or new.total_ms < old.total_ms:
        return new if new.calls > 0 else None
    calls = new.calls - old.calls
    if calls <= 0:
        return None
    return replace(
        new, calls=calls, total_ms=new.total_ms - old.total_ms, min_ms=None, max_ms=None,
        rows=max(new.rows - old.rows, 0), blks_hit=max(new.blks_hit - old.blks_hit, 0),
        blks_read=max(new.blks_read - old.blks_read, 0), temp_written=max(new.temp_written - old.temp_written, 0),
    )  # fmt: skip


def deltas(old: Iterable[Counters], new: Iterable[Counters]) -> list[Counters]:
    before = {c.key: c for c in old}
    return [d for c in new if (d := delta(before.get(c.key), c)) is not None]


def slow_ms(ports: Ports, tenant_id: str | None) -> float:
    """The tenant's slow mean in ms (SLOW_MS unless it set one)."""
    return float(tenant_settings.value(ports, tenant_id, "performance", "slow_query_ms", SLOW_MS))


def is_slow(c: Counters, slow: float = SLOW_MS) -> bool:
    return c.mean_ms >= slow and c.calls >= SLOW_CALLS


def rating(c: Counters, share: float, slow: float = SLOW_MS) -> str:
    if is_slow(c, slow):
        critical = CRITICAL_MS * slow / SLOW_MS
        return "CRITICAL" if c.mean_ms >= critical or share >= CRITICAL_SHARE else "POOR"
    if c.mean_ms >= GOOD_MS or share >= GOOD_SHARE:
        return "GOOD"
    return "EXCELLENT"


def _priority(rated: str) -> str:
    return {"CRITICAL": "CRITICAL", "POOR": "HIGH", "GOOD": "MEDIUM"}.get(rated, "LOW")


def _size_mb(text: str | None) -> float:
    """A PostgreSQL memory setting ('4MB', '64kB', '1GB') in MB."""
    value = (text or "").strip()
    units = {"kB": 1 / 1024, "MB": 1.0, "GB": 1024.0, "TB": 1024.0 * 1024}
    for unit, factor in units.items():
        if value.endswith(unit):
            try:
                return float(value[: -len(unit)]) * factor
            except ValueError:
                return 0.0
    return 0.0


def index_suggestion(query: str) -> tuple[str | None, list[str]]:
    """(CREATE INDEX statement, columns) from the columns the statement's WHERE / JOIN filter
    on (equality first), parsed with pglast; (None, []) when the text does not parse (a
    truncated text) or filters on nothing."""
    try:
        node = statements.single_statement(query)
    except ValidationFailed:
        return None, []
    columns = [c for c in statements.filter_columns(node) if c.relation]
    if not columns:
        return None, []
    relation = columns[0].relation
    mine = [c for c in columns if c.relation == relation]
    ordered = [c for c in mine if c.operator in ("=", "IN")] + [
        c for c in mine if c.operator not in ("=", "IN")
    ]
    names: list[str] = []
    for c in ordered:
        if c.column not in names:
            names.append(c.column)
    names = names[:3]
    table = ".".join(pgsql.Identifier(p).as_string() for p in str(relation).split("."))
    cols = ", ".join(pgsql.Identifier(n).as_string() for n in names)
    return f"CREATE INDEX CONCURRENTLY ON {table} ({cols});", names


def suggestions(
    c: Counters, share: float, settings: dict[str, Any], slow: float = SLOW_MS
) -> list[OptimizationSuggestion]:
    """Advice computed from the statement's own counters (see the module's table)."""
    found: list[OptimizationSuggestion] = []
    priority = _priority(rating(c, share, slow))
    block = int(settings.get("block_size") or 8192)
    calls = max(c.calls, 1)
    blocks_per_call = (c.blks_hit + c.blks_read) / calls
    rows_per_call = c.rows / calls
    if (
        (is_slow(c, slow) or share >= GOOD_SHARE)
        and blocks_per_call >= SCAN_MIN_BLOCKS
        and (blocks_per_call / max(rows_per_call, 1.0) >= SCAN_BLOCKS_PER_ROW)
    ):
        sql, names = index_suggestion(c.query)
        gain = round(100 * (1 - min(1.0, (rows_per_call + 3) / blocks_per_call)), 1)
        found.append(OptimizationSuggestion(
            type="INDEX", priority=priority,  # type: ignore[arg-type]
            description=f"{c.mean_ms:.1f} ms on average over {c.calls} calls, touching {blocks_per_call:.0f} blocks "
            f"per call for {rows_per_call:.1f} rows: a scan reads far more than it returns; an index on "
            + (", ".join(names) if names else "the columns it filters on")
            + " reads about a block per row (check with POST /api/v1/performance/queries/analyze)",
            estimated_improvement=gain, implementation_effort="LOW", sql_suggestion=sql,
        ))  # fmt: skip
    if c.temp_written > 0:
        per_call_mb = c.temp_written * block / MB / calls
        current = _size_mb(settings.get("work_mem"))
        wanted = max(math.ceil(max(current, 1.0) + 2 * per_call_mb), 4)
        touched = c.blks_hit + c.blks_read + c.temp_written
        found.append(OptimizationSuggestion(
            type="CONFIGURATION", priority="MEDIUM" if priority in ("LOW", "MEDIUM") else "HIGH",  # type: ignore[arg-type]
            description=f"writes {per_call_mb:.1f} MB of temp files per call (sorts or hashes spilling past "
            f"work_mem {settings.get('work_mem')}): give it more memory in the session that runs it",
            estimated_improvement=round(100 * c.temp_written / touched, 1) if touched else 0.0,
            implementation_effort="LOW", sql_suggestion=f"SET work_mem = '{wanted}MB';",
        ))  # fmt: skip
    touched = c.blks_hit + c.blks_read
    if touched and c.blks_read >= LOW_HIT_MIN_READ and c.blks_hit / touched < LOW_HIT_RATIO:
        found.append(OptimizationSuggestion(
            type="CONFIGURATION", priority="MEDIUM",
            description=f"reads {100 * c.blks_read / touched:.0f}% of its blocks from disk "
            f"({c.blks_read * block / MB:.1f} MB): more shared_buffers (now {settings.get('shared_buffers')}) "
            "keeps them cached, an index makes it read fewer",
            estimated_improvement=round(100 * c.blks_read / touched, 1), implementation_effort="MEDIUM",
            sql_suggestion=None,
        ))  # fmt: skip
    if rows_per_call >= ROWS_PER_CALL:
        found.append(OptimizationSuggestion(
            type="QUERY_REWRITE", priority="MEDIUM" if priority != "LOW" else "LOW",  # type: ignore[arg-type]
            description=f"returns {rows_per_call:.0f} rows per call: page it (LIMIT with keyset pagination) "
            "or aggregate in SQL",
            estimated_improvement=round(100 * (1 - 100 / rows_per_call), 1), implementation_effort="MEDIUM",
            sql_suggestion=None,
        ))  # fmt: skip
    return found


# --- reading the counters ------------------------------------------------------------------


def read_counters(ports: Ports, target: servers.Target, database: str | None, limit: int) -> ServerCounters:
    """The server's customer statements now (privileged read through the SQL seam)."""
    found = ServerCounters(target.target_id)
    databases = ["postgres"]
    own = target.server.record.get("database")
    if own and own not in databases:
        databases.append(str(own))
    for name in databases:
        with ports.sql.session(
            target.target_id, database=name, node=target.node,
            statement_timeout_ms=STATEMENT_TIMEOUT_MS, lock_timeout_ms=LOCK_TIMEOUT_MS,
        ) as session:  # fmt: skip
            row = session.fetch_one(sql_queries.STATEMENTS_SCHEMA)
            if row is None:
                continue
            schema = pgsql.Identifier(str(row[0]))
            settings = session.fetch_one(sql_queries.SETTINGS)
            if settings:
                found.settings = dict(
                    zip(("work_mem", "shared_buffers", "block_size"), settings, strict=True)
                )
            totals = session.fetch_one(pgsql.SQL(sql_queries.STATEMENT_TOTALS).format(schema=schema))
            if totals:
                found.total_ms, found.calls = float(totals[0]), int(totals[1])
            reset = session.fetch_one(pgsql.SQL(sql_queries.STATS_RESET).format(schema=schema))
            if reset and reset[0] is not None:
                found.stats_reset = reset[0].astimezone(UTC).isoformat()
            query = pgsql.SQL(sql_queries.STATEMENTS).format(schema=schema)
            for (
                qid,
                text,
                calls,
                total,
                mn,
                mx,
                rows,
                hit,
                read,
                temp,
                datname,
                role,
                dbid,
                userid,
            ) in session.fetch_all(query, {"database": database, "limit": limit}):
                found.statements.append(Counters(
                    str(qid), (text or "")[:MAX_QUERY_TEXT], int(calls), float(total), float(mn), float(mx), int(rows),
                    int(hit), int(read), int(temp), datname, role, int(dbid), int(userid),
                ))  # fmt: skip
            return found
    found.note = (
        f"{target.target_id}: pg_stat_statements is not created in {' or '.join(databases)}: "
        "CREATE EXTENSION pg_stat_statements in one of them to see its statements"
    )
    return found


def _read_each(
    ports: Ports, found: Sequence[servers.Target], database: str | None, limit: int
) -> list[ServerCounters]:
    """Every server's counters, a few servers at once; one that cannot be read is a note."""

    def one(target: servers.Target) -> ServerCounters:
        try:
            return read_counters(ports, target, database, limit)
        except Exception as exc:  # one server must not fail the others
            if not isinstance(exc, EngineError):
                log.warning("statements of %s", target.target_id, exc_info=exc)
            return ServerCounters(
                target.target_id, note=f"{target.target_id}: statements not read: {exc}"[:500]
            )

    return _each(found, one)


def _each(
    found: Sequence[servers.Target], one: Callable[[servers.Target], ServerCounters]
) -> list[ServerCounters]:
    if len(found) <= 1:
        return [one(t) for t in found]
    with ThreadPoolExecutor(
        max_workers=min(WORKERS, len(found)), thread_name_prefix="pgfleet-statements"
    ) as pool:
        return list(pool.map(one, found))


def _snapshot_at(
    ports: Ports, target_id: str, start: datetime, end: datetime, newest: bool
) -> HistoryRecord | None:
    page = ports.history.query(
        STREAM, start=start, end=end, target_id=target_id, page_size=1, newest_first=newest
    )
    return page.items[0] if page.items else None


def _of_snapshots(
    ports: Ports, target: servers.Target, database: str | None, span: time_range.TimeRange
) -> tuple[ServerCounters, str | None, str | None]:
    """Deltas between the snapshot at or just before the start and the newest in range."""
    found = ServerCounters(target.target_id)
    last = _snapshot_at(ports, target.target_id, span.start, span.end, newest=True)
    first = _snapshot_at(ports, target.target_id, span.start - START_LOOKBACK, span.start + timedelta(microseconds=1),
                         newest=True)  # fmt: skip
    if first is None:
        first = _snapshot_at(ports, target.target_id, span.start, span.end, newest=False)
        if first is not None:
            found.note = (
                f"{target.target_id}: no snapshot at or before the start; deltas from the oldest in the range "
                f"({first.at.isoformat()})"
            )
    if last is None or first is None or first.at >= last.at:
        found.note = f"{target.target_id}: fewer than two snapshots of pg_stat_statements in the range"
        return found, None, None
    old = [Counters.of_record(s) for s in first.data.get("statements", [])]
    new = [Counters.of_record(s) for s in last.data.get("statements", [])]
    if first.data.get("stats_reset") != last.data.get("stats_reset"):
        old = []  # reset in between: every statement counts from zero
    found.statements = [d for d in deltas(old, new) if database is None or d.database == database]
    found.settings = dict(last.data.get("settings") or {})
    total = float(last.data.get("total_ms") or 0) - float(first.data.get("total_ms") or 0)
    found.total_ms = total if total > 0 and old else sum(c.total_ms for c in found.statements)
    found.calls = sum(c.calls for c in found.statements)
    return found, first.at.isoformat(), last.at.isoformat()


def _parse_ratings(text: str | None) -> set[str] | None:
    if not text:
        return None
    wanted = {r.strip().upper() for r in text.split(",") if r.strip()}
    unknown = wanted - set(RATINGS)
    if unknown:
        raise ValidationFailed(
            f"performanceRating {', '.join(sorted(unknown))} is not one of {', '.join(RATINGS)}",
            details={"field": "performanceRating"},
        )
    return wanted


SORT_KEYS = {
    "execution_time": lambda item: item[0].mean_ms,
    "frequency": lambda item: item[0].calls,
    "impact": lambda item: item[0].total_ms,
}


def query_analysis(
    ports: Ports,
    principal: Principal,
    *,
    target_id: str | None,
    tenant_id: str | None,
    database: str | None,
    time_range_text: str | None,
    min_executions: int | None,
    performance_rating: str | None,
    sort_by: str,
    page: PageQuery,
) -> QueryAnalysisResponse:
    ratings = _parse_ratings(performance_rating)
    span = (
        time_range.parse(time_range_text, default=timedelta(hours=1), max_age=SNAPSHOT_TTL)
        if time_range_text
        else None
    )
    found = servers.targets(ports, principal, target_id, tenant_id, require_running=span is None,
                            what="its statements (live)")  # fmt: skip
    read: list[ServerCounters] = []
    bounds: list[tuple[str | None, str | None]] = []
    if span is None:
        read = _read_each(ports, found, database, LIVE_LIMIT)
    else:
        for target in found:
            counters, first, last = _of_snapshots(ports, target, database, span)
            read.append(counters)
            bounds.append((first, last))
    tenant_of = {t.target_id: t.tenant_id for t in found}
    slow_of = {tenant: slow_ms(ports, tenant) for tenant in set(tenant_of.values())}
    items: list[tuple[Counters, str, float, ServerCounters]] = []
    for server in read:
        slow = slow_of.get(tenant_of.get(server.target_id, ""), SLOW_MS)
        for c in server.statements:
            share = c.total_ms / server.total_ms if server.total_ms else 0.0
            rated = rating(c, share, slow)
            if min_executions is not None and c.calls < min_executions:
                continue
            if ratings is not None and rated not in ratings:
                continue
            items.append((c, rated, share, server))
    items.sort(key=SORT_KEYS[sort_by], reverse=True)
    chosen = items[page.offset : page.offset + page.page_size]
    queries = [
        QueryAnalysis(
            query_hash=c.query_id,
            query_text=c.query,
            performance_rating=rated,  # type: ignore[arg-type]
            statistics=_statistics(c, share),
            optimization_suggestions=suggestions(
                c, share, server.settings, slow_of.get(tenant_of.get(server.target_id, ""), SLOW_MS)
            ),
            target_id=server.target_id,
            database_name=c.database,
            role_name=c.role,
        )  # fmt: skip
        for c, rated, share, server in chosen
    ]
    notes = [s.note for s in read if s.note]
    if span is None:
        resets = [f"{s.target_id}: since {s.stats_reset}" for s in read if s.stats_reset]
        notes.insert(
            0,
            "counters since pg_stat_statements was last reset"
            + (f" ({'; '.join(resets)})" if resets else ""),
        )
    return QueryAnalysisResponse(
        queries=queries,
        summary=_summary(items, span, bounds, notes),
        pagination=Page.of(queries, len(items), page).pagination,
    )


def _statistics(c: Counters, share: float) -> QueryStatistics:
    touched = c.blks_hit + c.blks_read
    return QueryStatistics(
        total_executions=c.calls, avg_execution_time=round(c.mean_ms, 3),
        min_execution_time=round(c.min_ms, 3) if c.min_ms is not None else None,
        max_execution_time=round(c.max_ms, 3) if c.max_ms is not None else None,
        total_time=round(c.total_ms, 3), cache_hit_ratio=round(c.blks_hit / touched, 6) if touched else None,
        shared_blocks_touched=touched, rows_returned=c.rows, temp_blocks_written=c.temp_written,
        share_of_total_time=round(100 * share, 2),
    )  # fmt: skip


def _summary(
    items: Sequence[tuple[Counters, str, float, ServerCounters]],
    span: time_range.TimeRange | None,
    bounds: list[tuple[str | None, str | None]],
    notes: list[str],
) -> QueryPerformanceSummary:
    calls = sum(c.calls for c, *_ in items)
    total = sum(c.total_ms for c, *_ in items)
    firsts = [b[0] for b in bounds if b[0]]
    lasts = [b[1] for b in bounds if b[1]]
    return QueryPerformanceSummary(
        total_queries=len(items), total_executions=calls, total_time=round(total, 3),
        avg_execution_time=round(total / calls, 3) if calls else None,
        by_rating={r: sum(1 for _, rated, *_ in items if rated == r) for r in RATINGS},
        source="since_reset" if span is None else "snapshots",
        time_range=None if span is None else {"start": min(firsts) if firsts else None, "end": max(lasts) if lasts else None},
        notes=notes,
    )  # fmt: skip


# --- the snapshot schedule -----------------------------------------------------------------


def snapshot_record(counters: ServerCounters, tenant_id: str | None, at: datetime) -> HistoryRecord:
    return HistoryRecord(
        stream=STREAM, target_id=counters.target_id, tenant_id=tenant_id, at=at,
        data={
            "statements": [c.to_record() for c in counters.statements], "total_ms": round(counters.total_ms, 3),
            "calls": counters.calls, "stats_reset": counters.stats_reset, "settings": counters.settings,
        },
        ttl_seconds=int(SNAPSHOT_TTL.total_seconds()),
    )  # fmt: skip


def scheduled_snapshot(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The platform schedule: store the top statements' counters of every running server."""
    now = datetime.now(UTC)
    running = [t for t in (servers.Target(s) for s in servers.all_servers(ports)) if t.running]
    read = _read_each(ports, running, None, SNAPSHOT_TOP)
    tenant_of = {t.target_id: t.tenant_id for t in running}
    records = [snapshot_record(c, tenant_of[c.target_id], now) for c in read if c.note is None]
    if records:
        ports.history.append(STREAM, records)
    return [f"statements snapshot of {len(records)} servers", *(c.note for c in read if c.note)]
