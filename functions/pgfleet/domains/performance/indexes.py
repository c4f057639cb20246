"""`GET /api/v1/performance/indexes/analysis`: every index of a database with its usage, size,
efficiency and estimated bloat, what is wrong with it, and the indexes it lacks.

Per server in scope (the seed's scope rule), in the target's app database unless `database`
names one of its tenant databases, with a fixed number of catalog statements (settings,
indexes, tables, column statistics; for the statements, their tables' columns and their
roles' search_path), however many indexes there are.

Findings:
- UNUSED: never scanned since the statistics were reset, and not unique, not the primary
  key, not backing a constraint (pg_constraint.conindid), not the replica identity.
- DUPLICATE: its key columns (with their operator classes and orderings) are a leading prefix
  of another index of the same table with the same method, expressions and predicate; of two
  identical ones the second by name; never a unique or constraint index.
- INVALID: indisvalid is false (a failed concurrent build).
- BLOATED: estimated bloat of BLOAT_PERCENT or more in an index of BLOAT_MIN_BYTES or more
  (the tenant's `indexBloatPercent` instead, when it set one: section PERFORMANCE of the system
  configuration; maintenance's reindex_bloated_indexes uses the same).

Bloat (btree only), PgHero's index-bloat method written anew: the pages an index needs are
its table's rows x (8-byte index tuple header + the sum over its columns of
(1 - null_frac) x avg_width from pg_stats, MAXALIGNed, + a 4-byte line pointer), over the page
space its fillfactor leaves (block size - 24-byte page header - 16-byte btree special
space), plus the metapage; the bloat is the share of its pages beyond that. Indexes under
BLOAT_MIN_PAGES pages are too small to tell and count 0.

efficiencyScore (0-100) = 100 x (1 - bloat fraction) x min(1, log10(1 + idx_scan) / 3): an
index never scanned scores 0; one scanned 999 times or more, unbloated, 100.

Missing indexes come from `index_advice` (pglast candidates proven with hypopg), each with
its evidence: the statement's cost before and after, weighted by its calls; the index size
(hypopg_relation_size); the table's row writes per hour (`WriteRates`: the delta since the
previous analysis, else since the statistics reset) and a priority lowered by the write
share (`index_advice.priority`).

Every recommendation has a stable id (a hash of server, database, type and what it names)
and is kept in one metadata record per server and database, where `optimize` finds it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core import tenant_settings
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, NotFound, ServiceError, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import servers, tenants
from pgfleet.domains.performance import index_advice
from pgfleet.domains.performance import sql_indexes as q
from pgfleet.domains.performance.explain import login_for
from pgfleet.domains.performance.indexes_models import (
    IndexAnalysis,
    IndexAnalysisResponse,
    IndexOptimizationSummary,
    IndexRecommendation,
)
from pgfleet.ports.sql import SqlSession

log = logging.getLogger(__name__)

# Opens a session of the database's own login (SqlTarget.customer_session).
CustomerSession = Callable[[], AbstractContextManager[SqlSession]]

KIND = "index_advice"
STATEMENTS_DATABASE = "postgres"
TOP_STATEMENTS = 20
BLOAT_PERCENT = 30.0
BLOAT_MIN_BYTES = 10 * 1024 * 1024
BLOAT_MIN_PAGES = 10
LARGE_UNUSED_BYTES = 100 * 1024 * 1024
MIN_ELAPSED_S = 60.0  # rates over less than a minute since a reset would be noise
MAX_STORED = 2000  # recommendations kept per database (a metadata record stays under 400 KB)
WORKERS = 8
MAXALIGN = 8


@dataclass
class Index:
    schema: str
    table: str
    name: str
    method: str
    size: int
    pages: int
    table_rows: float
    unique: bool
    primary: bool
    valid: bool
    replica_identity: bool
    backs_constraint: bool
    columns: list[str | None]
    expressions: str | None
    predicate: str | None
    opclasses: str
    options: str
    scans: int
    tuples_read: int
    tuples_fetched: int
    last_used: datetime | None
    definition: str
    table_oid: int
    fillfactor: int
    findings: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    bloat: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.table)

    @property
    def protected(self) -> bool:
        """Whether dropping it would change what the table enforces or publishes."""
        return self.unique or self.primary or self.backs_constraint or self.replica_identity


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str
    reltuples: float
    live_rows: int
    seq_scan: int
    idx_scan: int
    writes: int

    @property
    def rows(self) -> float:
        return max(self.reltuples, float(self.live_rows))


@dataclass(frozen=True)
class Statement:
    query_id: str
    text: str
    calls: int
    total_ms: float
    mean_ms: float
    role: str


@dataclass
class TargetAnalysis:
    target_id: str
    database: str
    indexes: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statements: int = 0
    what_if: bool = False
    table_writes: dict[str, int] = field(default_factory=dict)  # of the tables big enough to index
    observed_at: datetime | None = None  # the server's clock when they were read


def recommendation_id(target_id: str, database: str, kind: str, *names: str) -> str:
    digest = hashlib.sha256("\x1f".join((target_id, database, kind, *names)).encode()).hexdigest()
    return f"ixr-{digest[:16]}"


def index_name_for(table: str, columns: list[str]) -> str:
    """The name optimize gives a new index: `<table>_<columns>_idx`, shortened with a hash
    to PostgreSQL's 63 bytes; the same for the same columns, so a resumed build finds it."""
    name = f"{table}_{'_'.join(columns)}_idx"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name.encode()[:50].decode(errors='ignore')}_{digest}_idx"


def qualified(*names: str) -> str:
    return ".".join(pgsql.Identifier(n).as_string(None) for n in names)


# --- reading the catalog ------------------------------------------------------------------------


def read_indexes(session: SqlSession, version: int) -> list[Index]:
    last = pgsql.SQL("s.last_idx_scan" if version >= 160000 else "NULL::pg_catalog.timestamptz")
    rows = session.fetch_all(pgsql.SQL(q.INDEXES).format(last_used=last))
    return [
        Index(
            schema=r[0], table=r[1], name=r[2], method=r[3], size=int(r[4]), pages=int(r[5]), table_rows=float(r[6]),
            unique=bool(r[7]), primary=bool(r[8]), valid=bool(r[9]), replica_identity=bool(r[10]),
            backs_constraint=bool(r[11]), columns=list(r[12] or []), expressions=r[13], predicate=r[14],
            opclasses=str(r[15]), options=str(r[16]), scans=int(r[17]), tuples_read=int(r[18]),
            tuples_fetched=int(r[19]), last_used=r[20], definition=str(r[21]), table_oid=int(r[22]),
            fillfactor=int(r[23] or 90),
        )
        for r in rows
    ]  # fmt: skip


def read_tables(session: SqlSession) -> dict[tuple[str, str], Table]:
    return {
        (r[1], r[2]): Table(int(r[0]), r[1], r[2], float(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]))
        for r in session.fetch_all(q.TABLES)
    }


def read_column_stats(session: SqlSession) -> dict[tuple[str, str, str], tuple[int, float]]:
    return {(r[0], r[1], r[2]): (int(r[3]), float(r[4])) for r in session.fetch_all(q.COLUMN_STATS)}


# --- findings -----------------------------------------------------------------------------------


def bloat_percent(
    index: Index, stats: dict[tuple[str, str, str], tuple[int, float]], block_size: int
) -> float | None:
    """The estimated bloat of a btree index (module docstring); None when it cannot be told."""
    if index.method != "btree" or not index.columns or None in index.columns:
        return None
    if index.pages < BLOAT_MIN_PAGES:
        return 0.0
    width = 0.0
    for column in index.columns:
        found = stats.get((index.schema, index.table, str(column)))
        if found is None:
            return None  # not analysed yet
        avg_width, null_frac = found
        width += (1.0 - null_frac) * avg_width
    tuple_size = MAXALIGN * math.ceil((8 + width) / MAXALIGN) + 4
    per_page = (block_size - 24 - 16) * index.fillfactor / 100.0
    expected = math.ceil(index.table_rows * tuple_size / per_page) + 1
    return round(max(0.0, 100.0 * (index.pages - expected) / index.pages), 1)


def _is_prefix(short: Index, long: Index) -> bool:
    """`short` is served entirely by `long`: same table, method, expressions and predicate,
    and its columns with their operator classes and orderings lead `long`'s."""
    if short is long or short.key != long.key or short.method != long.method:
        return False
    if short.expressions != long.expressions or short.predicate != long.predicate or not long.valid:
        return False
    n = len(short.columns)
    if n == 0 or n > len(long.columns) or short.columns != long.columns[:n]:
        return False
    if long.method != "btree" and n != len(long.columns):
        return False  # only a btree serves a search on its leading columns
    return _items(short.opclasses)[:n] == _items(long.opclasses)[:n] and (
        _items(short.options)[:n] == _items(long.options)[:n]
    )


def _items(array_text: str) -> list[str]:
    """The items of an array's text form (`[0:1]={3126,1978}`: vectors count from 0)."""
    return array_text.split("=", 1)[-1].strip("{}").split(",")


def find_duplicates(indexes: list[Index]) -> None:
    by_table: dict[tuple[str, str], list[Index]] = {}
    for index in indexes:
        by_table.setdefault(index.key, []).append(index)
    for group in by_table.values():
        if len(group) < 2:
            continue
        for short in group:
            if short.protected:
                continue
            for long in group:
                if not _is_prefix(short, long):
                    continue
                same = len(short.columns) == len(long.columns)
                # Of two identical plain indexes, the second by name goes.
                if same and not long.protected and short.name < long.name:
                    continue
                short.findings.append("DUPLICATE")
                short.duplicate_of = long.name
                break


def bloat_threshold(ports: Ports, tenant_id: str | None) -> float:
    """The estimated bloat from which the tenant's indexes are BLOATED (BLOAT_PERCENT unless set)."""
    return float(tenant_settings.value(ports, tenant_id, "performance", "index_bloat_percent", BLOAT_PERCENT))


def classify(
    indexes: list[Index], stats: dict[tuple[str, str, str], tuple[int, float]], block_size: int,
    bloated_from: float = BLOAT_PERCENT,
) -> None:  # fmt: skip
    find_duplicates(indexes)
    for index in indexes:
        index.bloat = bloat_percent(index, stats, block_size)
        if not index.valid:
            index.findings.append("INVALID")
        elif index.scans == 0 and not index.protected:
            index.findings.append("UNUSED")
        if index.bloat is not None and index.bloat >= bloated_from and index.size >= BLOAT_MIN_BYTES:
            index.findings.append("BLOATED")


def efficiency_score(index: Index) -> float:
    used = min(1.0, math.log10(1 + index.scans) / 3)
    return round(100.0 * (1.0 - (index.bloat or 0.0) / 100.0) * used, 1)


def _action(index: Index) -> tuple[str, str, str | None]:
    """(recommendation, maintenancePriority, recommendation type) of one index."""
    if "INVALID" in index.findings:
        return "REINDEX", "HIGH", "REBUILD"
    if "DUPLICATE" in index.findings:
        return "DROP", "MEDIUM", "DROP"
    if "UNUSED" in index.findings:
        return "DROP", "MEDIUM" if index.size >= LARGE_UNUSED_BYTES else "LOW", "DROP"
    if "BLOATED" in index.findings:
        return "REINDEX", "MEDIUM", "REBUILD"
    return "NONE", "NONE", None


def _index_recommendation(
    target_id: str, database: str, index: Index, kind: str, level: str
) -> dict[str, Any]:
    name = qualified(index.schema, index.name)
    size_mb = index.size / 1024 / 1024
    if kind == "DROP":
        statement = f"DROP INDEX CONCURRENTLY {name}"
        if "DUPLICATE" in index.findings:
            why = f"its columns {index.columns} lead {index.duplicate_of}, which serves the same searches"
        else:
            why = "it was never scanned since the statistics were reset, and enforces nothing"
        reasoning = f"{index.name} on {index.table}: {why}; dropping it frees {size_mb:.1f} MB and a write per row change"
        cost = "DROP INDEX CONCURRENTLY: no write lock; the space comes back at once"
    else:
        statement = f"REINDEX INDEX CONCURRENTLY {name}"
        if "INVALID" in index.findings:
            reasoning = f"{index.name} on {index.table} is invalid (a failed concurrent build): no query uses it, every write still maintains it"
        else:
            reasoning = f"{index.name} on {index.table} is an estimated {index.bloat:.0f}% bloat of {size_mb:.1f} MB (from pg_stats)"
        cost = f"rebuild of {size_mb:.1f} MB: CPU and I/O, and the space of a second copy while it runs"
    return {
        "id": recommendation_id(target_id, database, kind, index.schema, index.name),
        "type": kind, "priority": level, "table_name": index.table, "schema_name": index.schema,
        "index_definition": statement, "sql": statement, "estimated_benefit": 0.0, "estimated_cost": cost,
        "reasoning": reasoning, "target_id": target_id, "database": database, "columns": [c or "" for c in index.columns],
        "index_type": index.method, "index_name": index.name, "status": "RECOMMENDED",
    }  # fmt: skip


def index_view(
    target_id: str, database: str, index: Index, table: Table | None, rec_id: str | None
) -> dict[str, Any]:
    recommendation, maintenance, _ = _action(index)
    table_scans = (table.seq_scan + table.idx_scan) if table else 0
    return {
        "target_id": target_id, "database": database, "schema_name": index.schema, "table_name": index.table,
        "index_name": index.name, "index_type": index.method, "index_size": index.size, "columns": index.columns,
        "definition": index.definition,
        "usage_statistics": {
            "scans": index.scans, "tuples_read": index.tuples_read, "tuples_fetched": index.tuples_fetched,
            "last_used": index.last_used.isoformat() if index.last_used else None,
            "usage_ratio": round(index.scans / table_scans, 4) if table_scans else 0.0,
        },
        "efficiency_score": efficiency_score(index), "bloat_percentage": index.bloat, "findings": index.findings,
        "recommendation": recommendation, "maintenance_priority": maintenance, "recommendation_id": rec_id,
    }  # fmt: skip


# --- missing indexes ----------------------------------------------------------------------------


def _hours(since: datetime | None, now: datetime) -> float:
    seconds = (now - since).total_seconds() if since else MIN_ELAPSED_S
    return max(seconds, MIN_ELAPSED_S) / 3600.0


def read_statements(
    ports: Ports, target: servers.Target, database: str, dbid: int
) -> tuple[list[Statement], datetime | None, str | None]:
    """The heaviest customer statements of the database, and since when they are counted;
    or a note saying why none could be read."""
    for where in dict.fromkeys((STATEMENTS_DATABASE, database)):
        with ports.sql.session(target.target_id, database=where, node=target.node) as session:
            row = session.fetch_one(q.STATEMENTS_SCHEMA)
            if row is None:
                continue
            schema = pgsql.Identifier(str(row[0]))
            rows = session.fetch_all(pgsql.SQL(q.STATEMENTS).format(schema=schema), (dbid, TOP_STATEMENTS))
            since = session.fetch_one(pgsql.SQL(q.STATEMENTS_SINCE).format(schema=schema))
            found = [
                Statement(str(r[0]), str(r[1] or ""), int(r[2]), float(r[3]), float(r[4]), str(r[5]))
                for r in rows
            ]
            return found, since[0] if since else None, None
    return (
        [],
        None,
        f"{target.target_id}: pg_stat_statements is not created: no statement to derive missing indexes from",
    )


def _search_path_schemas(path: str, role: str) -> list[str]:
    found = []
    for part in path.split(","):
        name = part.strip().strip('"')
        found.append(role if name == "$user" else name)
    return found


@dataclass
class Proposal:
    table: Table
    columns: tuple[str, ...]
    size: int
    statements: list[tuple[Statement, index_advice.WhatIf]] = field(default_factory=list)


def missing_indexes(
    session: SqlSession,
    statements: list[Statement],
    tables: dict[tuple[str, str], Table],
    indexes: list[Index],
    hypopg: str | None,
    notes: list[str],
    customer: CustomerSession | None = None,
) -> list[Proposal]:
    """Candidates from the statements, kept when hypopg shows the cost falling at least 50 %:
    `session` (the platform's) reads the catalog, `customer()` opens a session of the
    database's own login for each statement's plans."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for key in tables:
        by_name.setdefault(key[1], []).append(key)
    leading: dict[tuple[str, str], list[list[str | None]]] = {}
    for index in indexes:
        if index.valid and index.method == "btree" and index.predicate is None:
            leading.setdefault(index.key, []).append(index.columns)
    parsed: list[tuple[Statement, list[index_advice.Scope], int, str]] = []
    paths: dict[str, str] = {}
    wanted: set[int] = set()
    for statement in statements:
        try:
            scopes, params = index_advice.parse_statement(statement.text)
        except ValueError:
            continue
        path = paths.get(statement.role) or index_advice.search_path_of(session, statement.role)
        paths[statement.role] = path
        parsed.append((statement, scopes, params, path))
    # One query for the columns of every table the statements could name.
    names = {t.name for _, scopes, _, _ in parsed for s in scopes for t in s.tables.values()}
    for name in names:
        wanted.update(tables[key].oid for key in by_name.get(name, []))
    columns: dict[int, set[str]] = {}
    if wanted:
        for oid, column in session.fetch_all(q.COLUMNS, (sorted(wanted),)):
            columns.setdefault(int(oid), set()).add(str(column))

    proposals: dict[tuple[tuple[str, str], tuple[str, ...]], Proposal] = {}
    for statement, scopes, params, path in parsed:
        schemas = _search_path_schemas(path, statement.role)

        def resolve(name: index_advice.TableName, schemas: list[str] = schemas) -> tuple[str, str] | None:
            if name.schema:
                return (name.schema, name.name) if (name.schema, name.name) in tables else None
            keys = by_name.get(name.name, [])
            return next((k for s in schemas for k in keys if k[0] == s), None)

        used = index_advice.usages(scopes, resolve, lambda key: columns.get(tables[key].oid, set()))
        todo = []
        for key, usage in used.items():
            if tables[key].rows < index_advice.MIN_ROWS:
                continue
            variants = [
                v for v in index_advice.candidate_columns(usage)
                if not any(set(c[: len(v)]) == set(v) for c in leading.get(key, []))
            ]  # fmt: skip
            if variants:
                todo.append((key, variants))
        if not todo or hypopg is None or customer is None:
            continue
        try:
            with customer() as planning:
                planner = index_advice.Planner(planning, statement.text, params)
                before = planner.explain()
                tried = [(key, planner.what_if(hypopg, key, variants, before)) for key, variants in todo]
            for key, found in tried:
                if found is None or found.improvement_percent < index_advice.KEEP_IMPROVEMENT:
                    continue
                proposal = proposals.setdefault(
                    (key, found.columns), Proposal(tables[key], found.columns, found.size_bytes)
                )
                proposal.statements.append((statement, found))
        except EngineError as exc:
            notes.append(f"statement {statement.query_id} could not be planned: {exc}"[:300])
    return list(proposals.values())


@dataclass(frozen=True)
class WriteRates:
    """How a table's row writes per hour are computed: from the counters of the previous
    analysis when one is at least MIN_ELAPSED_S old (a delta: a bulk load long ago does not
    count), else over the time since the statistics were reset."""

    previous: dict[str, int]
    previous_at: datetime | None
    stats_reset: datetime | None
    now: datetime

    def of(self, table: Table) -> tuple[float, str]:
        before = self.previous.get(f"{table.schema}.{table.name}")
        if self.previous_at is not None and before is not None and table.writes >= before:
            seconds = (self.now - self.previous_at).total_seconds()
            if seconds >= MIN_ELAPSED_S:
                return (table.writes - before) / (seconds / 3600), (
                    f"row writes since the previous analysis {seconds / 60:.0f} min ago"
                )
        since = self.stats_reset.isoformat() if self.stats_reset else "the server start"
        return table.writes / _hours(
            self.stats_reset, self.now
        ), f"row writes since the statistics reset ({since})"


def create_recommendation(
    target_id: str, database: str, proposal: Proposal, reads_hours: float, rates: WriteRates
) -> dict[str, Any]:
    table = proposal.table
    # The statement it saves the most for (cost x calls) is its evidence.
    statement, found = max(
        proposal.statements, key=lambda p: (p[1].cost_before - p[1].cost_after) * p[0].calls
    )
    reads_per_hour = sum(s.calls for s, _ in proposal.statements) / reads_hours
    writes_per_hour, basis = rates.of(table)
    level, share = index_advice.priority(found.improvement_percent, reads_per_hour, writes_per_hour)
    columns = list(proposal.columns)
    name = index_name_for(table.name, columns)
    statement_sql = (
        f"CREATE INDEX CONCURRENTLY {qualified(name)} ON {qualified(table.schema, table.name)} USING btree "
        f"({', '.join(qualified(c) for c in columns)})"
    )
    size_mb = proposal.size / 1024 / 1024
    reasoning = (
        f"statement {statement.query_id} ({statement.calls} calls, {statement.mean_ms:.2f} ms mean) plans at cost "
        f"{found.cost_before:.1f} on {table.name} ({table.rows:.0f} rows); with a btree index on ({', '.join(columns)}) "
        f"hypopg plans it at {found.cost_after:.1f}: {found.improvement_percent:.1f}% less (kept from 50%). "
        f"The table takes {writes_per_hour:.0f} row writes per hour against {reads_per_hour:.0f} calls per hour "
        f"(write share {share:.2f}), each write maintaining the index too: priority {level}."
    )
    return {
        "id": recommendation_id(target_id, database, "CREATE", table.schema, table.name, *columns),
        "type": "CREATE", "priority": level, "table_name": table.name, "schema_name": table.schema,
        "index_definition": statement_sql, "sql": statement_sql,
        "estimated_benefit": found.improvement_percent,
        "estimated_cost": f"~{size_mb:.1f} MB of index; {writes_per_hour:.0f} row writes per hour maintain it",
        "reasoning": reasoning, "target_id": target_id, "database": database, "columns": columns,
        "index_type": "btree", "index_name": name, "status": "RECOMMENDED",
        "benefit": {
            "query_id": statement.query_id, "query_text": statement.text[:2000], "calls": statement.calls,
            "mean_time_ms": round(statement.mean_ms, 4), "cost_before": found.cost_before,
            "cost_after": found.cost_after, "improvement_percent": found.improvement_percent,
            "weighted_cost_before": round(found.cost_before * statement.calls, 2),
            "weighted_cost_after": round(found.cost_after * statement.calls, 2),
            "method": "hypopg_create_index, then EXPLAIN of the generic plan (PREPARE with plan_cache_mode = "
            "force_generic_plan, EXECUTE with NULL arguments), as the statement's own role, rolled back",
        },
        "write_cost": {
            "index_size_bytes": proposal.size, "writes_per_hour": round(writes_per_hour, 2),
            "reads_per_hour": round(reads_per_hour, 2), "write_share": share, "writes_basis": basis,
        },
        # What optimize needs to re-check the plan afterwards (not on the wire).
        "statement_role": statement.role,
    }  # fmt: skip


# --- one server ----------------------------------------------------------------------------------


def customer_sessions(ports: Ports, target: servers.Target, database: str, **options: Any) -> CustomerSession:
    """Sessions of the database's own login (its app role, or its tenant's login), where
    customer statements are planned (and a maintenance task's own SQL runs: `options` are
    customer_session's timeouts and `commit`). Raises InvalidState when no password is stored
    for it."""
    login = login_for(ports, target.server, database)
    uri = servers.connection_uri(target.server, login.username, login.password, login.database)
    return lambda: ports.sql.customer_session(target.target_id, uri, **options)


def database_of(ports: Ports, target: servers.Target, database: str | None) -> str:
    own = str(target.server.record.get("database") or STATEMENTS_DATABASE)
    if database is None or database == own:
        return own
    names = {str(t.get("database_name")) for t in tenants.of_server(ports, target.target_id)}
    if database not in names:
        raise NotFound(
            f"database {database} is neither the app database nor a tenant database of {target.target_id}",
            details={"field": "database"},
        )
    return database


def analyze_target(ports: Ports, target: servers.Target, database: str | None) -> TargetAnalysis:
    db = database_of(ports, target, database)
    found = TargetAnalysis(target.target_id, db)
    with ports.sql.session(target.target_id, database=db, node=target.node) as session:
        server = session.fetch_one(q.SERVER)
        assert server is not None
        version, block_size, dbid, stats_reset, now = server
        indexes = read_indexes(session, int(version))
        tables = read_tables(session)
        classify(
            indexes, read_column_stats(session), int(block_size), bloat_threshold(ports, target.tenant_id)
        )
        statements, since, note = read_statements(ports, target, db, int(dbid))
        if note:
            found.notes.append(note)
        found.statements = len(statements)
        hypopg, why = (None, None)
        if statements:
            hypopg, why = index_advice.ensure_hypopg(session)
            if why:
                found.notes.append(f"{target.target_id}: {why}")
        customer = None
        if hypopg is not None:
            try:
                customer = customer_sessions(ports, target, db)
            except ServiceError as exc:
                found.notes.append(f"{target.target_id}: no what-if: {exc.message}")
        found.what_if = customer is not None
        proposals = missing_indexes(session, statements, tables, indexes, hypopg, found.notes, customer)
    found.observed_at = now
    found.table_writes = {
        f"{t.schema}.{t.name}": t.writes for t in tables.values() if t.rows >= index_advice.MIN_ROWS
    }
    previous = ports.store.get(KIND, f"{target.target_id}:{db}") or {}
    previous_at = previous.get("observed_at")
    rates = WriteRates(
        previous.get("table_writes") or {}, datetime.fromisoformat(previous_at) if previous_at else None,
        stats_reset, now,
    )  # fmt: skip
    reads_hours = _hours(since, now)
    for proposal in proposals:
        found.recommendations.append(
            create_recommendation(target.target_id, db, proposal, reads_hours, rates)
        )
    found.recommendations.sort(
        key=lambda r: -r["benefit"]["weighted_cost_before"] + r["benefit"]["weighted_cost_after"]
    )
    for index in indexes:
        _, _, kind = _action(index)
        rec = None
        if kind is not None:
            level = _action(index)[1]
            rec = _index_recommendation(target.target_id, db, index, kind, level)
            found.recommendations.append(rec)
        found.indexes.append(
            index_view(target.target_id, db, index, tables.get(index.key), rec["id"] if rec else None)
        )
    return found


# --- the stored recommendations -------------------------------------------------------------------

STORED_FIELDS = (
    "type", "priority", "table_name", "schema_name", "columns", "index_name", "index_type", "sql", "target_id",
    "database", "status", "benefit", "write_cost", "statement_role", "measured", "estimated_benefit",
    "estimated_cost", "reasoning", "index_definition",
)  # fmt: skip
KEPT_STATUSES = ("APPLYING", "APPLIED", "FAILED")


def _compact(rec: dict[str, Any]) -> dict[str, Any]:
    if rec["type"] == "CREATE":
        return {k: rec.get(k) for k in STORED_FIELDS}
    # DROP and REBUILD: only what optimize needs (thousands of unused indexes must fit one
    # record); the rest follows from the record (`expanded`).
    return {k: rec.get(k) for k in ("type", "schema_name", "table_name", "index_name", "status")}


def expanded(record: dict[str, Any], rec_id: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A stored recommendation with what its record implies: its server, database and SQL."""
    full = {"id": rec_id, "target_id": record["parent_id"], "database": record["id"].split(":", 1)[1], **rec}
    if not full.get("sql") and full.get("index_name"):
        verb = "DROP INDEX CONCURRENTLY" if full["type"] == "DROP" else "REINDEX INDEX CONCURRENTLY"
        full["sql"] = full["index_definition"] = (
            f"{verb} {qualified(full['schema_name'], full['index_name'])}"
        )
    return full


def store(ports: Ports, tenant_id: str, found: TargetAnalysis) -> None:
    """Keep the recommendations of one server's database; those being or already applied stay
    (with what optimize measured) even when no longer recommended."""
    record_id = f"{found.target_id}:{found.database}"
    fresh = {r["id"]: _compact(r) for r in found.recommendations[:MAX_STORED]}
    for _ in range(3):
        current = ports.store.get(KIND, record_id)
        previous = (current or {}).get("recommendations") or {}
        for rec_id, old in previous.items():
            if old.get("status") in KEPT_STATUSES:
                fresh[rec_id] = {
                    **fresh.get(rec_id, old),
                    "status": old["status"],
                    "measured": old.get("measured"),
                }
        changes = {
            "recommendations": fresh, "analyzed_at": utcnow_iso(), "table_writes": found.table_writes,
            "observed_at": found.observed_at.isoformat() if found.observed_at else None,
        }  # fmt: skip
        try:
            if current is None:
                ports.store.create(KIND, {
                    "id": record_id, "tenant_id": tenant_id, "parent_id": found.target_id,
                    "created_at": utcnow_iso(), **changes,
                })  # fmt: skip
            else:
                ports.store.update(KIND, record_id, changes, current["revision"])
            return
        except Conflict:
            continue
    log.warning("index recommendations of %s not stored: concurrent analyses", record_id)


def find_recommendation(
    ports: Ports, principal: Principal, rec_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the record holding it, the recommendation) among those the caller may see; 404 else."""
    tenant = None if principal.is_platform_admin else principal.tenant_id
    token = None
    while True:
        page, token = ports.store.list(KIND, tenant_id=tenant, limit=100, next_token=token)
        for record in page:
            rec = (record.get("recommendations") or {}).get(rec_id)
            if rec is not None:
                return record, expanded(record, rec_id, rec)
        if not token:
            raise NotFound(
                f"index recommendation {rec_id} not found (run GET /api/v1/performance/indexes/analysis first)"
            )


def update_recommendation(ports: Ports, record_id: str, rec_id: str, **changes: Any) -> None:
    for _ in range(5):
        record = ports.store.get(KIND, record_id)
        if record is None or rec_id not in (record.get("recommendations") or {}):
            return
        recs = dict(record["recommendations"])
        recs[rec_id] = {**recs[rec_id], **changes}
        try:
            ports.store.update(KIND, record_id, {"recommendations": recs}, record["revision"])
            return
        except Conflict:
            continue


# --- the endpoint ---------------------------------------------------------------------------------


def _keep(item: dict[str, Any], schema: str | None, table: str | None) -> bool:
    return (schema is None or item["schema_name"] == schema) and (
        table is None or item["table_name"] == table
    )


Measure = Callable[[Ports, dict[str, Any], dict[str, Any]], dict[str, Any]]
RECOMMENDATION_DEFAULTS = {"priority": "LOW", "estimated_benefit": 0.0, "estimated_cost": "", "reasoning": ""}


def applied(ports: Ports, found: TargetAnalysis, measure: Measure) -> list[dict[str, Any]]:
    """The stored recommendations of the database that optimize has taken up and that the
    analysis no longer recommends (an index built is no longer missing)."""
    record = ports.store.get(KIND, f"{found.target_id}:{found.database}")
    listed = {r["id"] for r in found.recommendations}
    out = []
    for rec_id, rec in ((record or {}).get("recommendations") or {}).items():
        if rec.get("status") not in KEPT_STATUSES or rec_id in listed or record is None:
            continue
        full = {**RECOMMENDATION_DEFAULTS, **expanded(record, rec_id, rec)}
        measured = full.get("measured") or {}
        if full["type"] == "CREATE" and measured.get("after_counters"):
            measured = measure(ports, record, full)
        full["measured"] = measured if "measured_at" in measured else None
        out.append(full)
    return out


def analyze(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    *,
    database: str | None = None,
    schema_name: str | None = None,
    table_name: str | None = None,
    recommendation: str | None = None,
    efficiency_threshold: float | None = None,
    measure: Measure | None = None,
) -> IndexAnalysisResponse:
    """The analysis of every server in scope. With `measure`, the recommendations already
    applied (or being applied, or failed) are listed too, with what `measure` makes of the
    measurements optimize recorded (see workflows.measured_after)."""
    started = time.perf_counter()
    if database is not None and target_id is None:
        raise ValidationFailed(
            "database names a database of one server: give its targetId", details={"field": "database"}
        )
    found = servers.targets(ports, principal, target_id, tenant_id, what="its indexes")

    def one(target: servers.Target) -> TargetAnalysis:
        try:
            result = analyze_target(ports, target, database)
        except NotFound:
            raise
        except EngineError as exc:
            if target_id is not None:
                raise
            return TargetAnalysis(
                target.target_id, "", notes=[f"{target.target_id}: not analysed: {exc}"[:300]]
            )
        store(ports, target.tenant_id, result)
        if measure is not None:
            result.recommendations += applied(ports, result, measure)
        return result

    if len(found) <= 1:
        results = [one(t) for t in found]
    else:
        with ThreadPoolExecutor(
            max_workers=min(WORKERS, len(found)), thread_name_prefix="pgfleet-indexes"
        ) as pool:
            results = list(pool.map(one, found))
    return response(results, started, schema_name, table_name, recommendation, efficiency_threshold)


def response(
    results: Iterable[TargetAnalysis],
    started: float,
    schema_name: str | None,
    table_name: str | None,
    recommendation: str | None,
    efficiency_threshold: float | None,
) -> IndexAnalysisResponse:
    results = list(results)
    wanted_type = "REBUILD" if recommendation == "REINDEX" else recommendation
    wanted_index = {"DROP": "DROP", "REBUILD": "REINDEX", "CREATE": None}.get(wanted_type or "", "")
    indexes = [i for r in results for i in r.indexes if _keep(i, schema_name, table_name)]
    every = list(indexes)
    if efficiency_threshold is not None:
        indexes = [i for i in indexes if i["efficiency_score"] < efficiency_threshold]
    if wanted_type is not None:
        indexes = [i for i in indexes if i["recommendation"] == wanted_index]
    recs = [r for t in results for r in t.recommendations if _keep(r, schema_name, table_name)]
    if wanted_type is not None:
        recs = [r for r in recs if r["type"] == wanted_type]

    def count(finding: str) -> int:
        return sum(1 for i in every if finding in i["findings"])

    tried = [r.what_if for r in results if r.statements]
    summary = IndexOptimizationSummary(
        total_indexes=len(every), total_index_size=sum(i["index_size"] for i in every),
        unused_indexes=count("UNUSED"), duplicate_indexes=count("DUPLICATE"), invalid_indexes=count("INVALID"),
        bloated_indexes=count("BLOATED"),
        missing_indexes=sum(1 for r in recs if r["type"] == "CREATE" and r.get("status") == "RECOMMENDED"),
        reclaimable_bytes=sum(i["index_size"] for i in every if {"UNUSED", "DUPLICATE"} & set(i["findings"])),
        statements_analyzed=sum(r.statements for r in results),
        what_if=bool(tried) and all(tried),
        duration_ms=round(1000 * (time.perf_counter() - started), 1),
        notes=[n for r in results for n in r.notes],
    )  # fmt: skip
    return IndexAnalysisResponse(
        indexes=[IndexAnalysis.model_validate(i) for i in indexes],
        recommendations=[IndexRecommendation.model_validate(r) for r in recs],
        summary=summary,
    )


def bloated_indexes(session: SqlSession, bloated_from: float = BLOAT_PERCENT) -> list[Index]:
    """The indexes of the session's database that the analysis finds BLOATED (estimated bloat
    of `bloated_from` percent or more in an index of BLOAT_MIN_BYTES or more), most bloated
    first (maintenance's reindex_bloated_indexes rebuilds them)."""
    server = session.fetch_one(q.SERVER)
    assert server is not None
    version, block_size = int(server[0]), int(server[1])
    found = read_indexes(session, version)
    classify(found, read_column_stats(session), block_size, bloated_from)
    bloated = [i for i in found if "BLOATED" in i.findings and i.valid]
    return sorted(bloated, key=lambda i: -(i.bloat or 0.0))
