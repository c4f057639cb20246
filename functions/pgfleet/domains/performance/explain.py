"""`POST /api/v1/performance/queries/analyze`: EXPLAIN of one customer statement, safely, as
PgHero does it, with plan-node findings by pev2's rules.

Safety:
- the text is parsed by PostgreSQL's parser (pglast): exactly one statement, and only SELECT,
  INSERT, UPDATE, DELETE or MERGE (transaction control, DDL, utility statements and EXPLAIN
  itself are 422s naming the kind);
- it runs as the database's app role (the instance's or cluster's user, or the tenant's login
  for a tenant database), with its password from Secrets Manager, never as a superuser,
  through `SqlTarget.customer_session`: one transaction, `statement_timeout` set LOCAL
  (default 5 s, at most 30 s), ALWAYS rolled back;
- `parameters` are bound to `$1..$n` by the server, never formatted into the text; a
  statement with placeholders and no parameters gets a generic plan (PostgreSQL 16+), without
  ANALYZE;
- ANALYZE (which runs the statement) only when `explainOptions.analyze` is true; what it
  writes is rolled back with the transaction.

The plan is always computed in FORMAT JSON (the findings need it). TEXT or XML is a second
EXPLAIN in that format, only without ANALYZE (the statement is not run twice): with ANALYZE
the JSON plan is returned and a note says so.

Findings (pev2's rules), each with a suggestion:

| finding | rule |
|---|---|
| ROW_ESTIMATE | actual rows off the planner's estimate by 10x or more (ANALYZE) |
| SLOW_NODE | a node's own time (without its children) over 40 % of the execution time (ANALYZE, TIMING) |
| ROWS_REMOVED_BY_FILTER | a filter removes over 90 % of the rows it reads, at least 1,000 (ANALYZE) |
| DISK_SPILL | a Sort whose Sort Space Type is Disk, a Hash with more than one batch (ANALYZE) |
| SEQ_SCAN_LARGE_TABLE | a Seq Scan of a table of more than 10,000 rows (pg_class.reltuples) or reading that many |
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from psycopg import sql as pgsql

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound, ServiceError, ValidationFailed
from pgfleet.domains import clusters, instances, servers, tenants
from pgfleet.domains.performance import sql_queries, statements
from pgfleet.domains.performance.queries_models import (
    ExecutionPlan,
    OptimizationSuggestion,
    PlanFinding,
    QueryAnalyzeRequest,
    QueryAnalyzeResponse,
    QueryPerformanceMetrics,
)
from pgfleet.ports.sql import SqlSession, StatementCancelled

ROW_ESTIMATE_FACTOR = 10.0
SLOW_NODE_SHARE = 0.40
FILTER_REMOVED_SHARE = 0.90
FILTER_REMOVED_MIN_ROWS = 1_000
LARGE_TABLE_ROWS = 10_000
GENERIC_PLAN_VERSION_NUM = 160000
KB = 1024


class StatementTimedOut(ServiceError):
    """The statement ran past the statement_timeout of the EXPLAIN (408)."""

    status = 408
    code = "statement_timeout"


class ServerUnreachable(ServiceError):
    status = 503
    code = "server_unavailable"


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    database: str


def _secret_of(server: servers.Server) -> str:
    # The names the instances and clusters domains store the app role's password under.
    if server.kind == instances.KIND:
        return instances.secret_name(server.record)
    return clusters.secret_name(server.record)


def login_for(ports: Ports, server: servers.Server, database: str | None) -> Login:
    """The role customer SQL of `database` runs as: the server's app role in its own database,
    or the login of the tenant whose database it is; 404 for any other database."""
    record = server.record
    if database is None or database == record.get("database"):
        name, secret, db = str(record["username"]), _secret_of(server), str(record["database"])
    else:
        tenant = next(
            (t for t in tenants.of_server(ports, server.id) if t.get("database_name") == database), None
        )
        if tenant is None:
            raise NotFound(
                f"{server.kind} {server.id} has no database {database} (its own is {record.get('database')}, "
                "else a tenant database)"
            )
        if tenant.get("status") != tenants.ACTIVE:
            raise InvalidState(f"tenant {tenant['name']} of {server.id} is {tenant.get('status')}")
        name, db = str(tenant["user"]), database
        secret = tenants.secret_name(tenant)
    password = ports.secrets.get(secret)
    if not password:
        raise InvalidState(f"no password is stored for role {name} of {server.id}: it cannot be used")
    return Login(name, password, db)


def check_statement(body: QueryAnalyzeRequest) -> tuple[str, str, bool]:
    """(statement text, kind, generic plan) of an acceptable request; 422 naming why not."""
    node = statements.single_statement(body.query_text, field="queryText")
    kind = statements.kind_of(node)
    if kind not in statements.EXPLAINABLE:
        raise ValidationFailed(
            f"queryText is a {kind} statement: only SELECT, INSERT, UPDATE, DELETE and MERGE are explained "
            "(never transaction control, DDL, utility statements or EXPLAIN itself)",
            details={"field": "queryText", "statement_kind": kind},
        )
    wanted, given = statements.placeholders(node), len(body.parameters or [])
    generic = wanted > 0 and body.parameters is None
    if generic and body.explain_options.analyze:
        raise ValidationFailed(
            f"queryText has placeholders up to ${wanted}: ANALYZE runs it, so give {wanted} parameters",
            details={"field": "parameters", "placeholders": wanted},
        )
    if not generic and given != wanted:
        raise ValidationFailed(
            f"queryText has {wanted} placeholders ($1..${wanted}) but {given} parameters were given",
            details={"field": "parameters", "placeholders": wanted, "given": given},
        )
    return body.query_text.strip(), kind, generic


def _explain_sql(text: str, fmt: str, *, analyze: bool, buffers: bool, timing: bool, generic: bool) -> str:
    options = [f"FORMAT {fmt}"]
    if analyze:
        options += ["ANALYZE true", f"TIMING {'true' if timing else 'false'}"]
    if buffers:
        options.append("BUFFERS true")
    if generic:
        options.append("GENERIC_PLAN true")
    query = f"EXPLAIN ({', '.join(options)})\n{text}"
    # The parser again: what is sent is one EXPLAIN of the statement that was checked.
    node = statements.single_statement(query, field="queryText")
    if statements.kind_of(node) != "EXPLAIN":
        raise ValidationFailed(
            "queryText cannot be explained as one statement", details={"field": "queryText"}
        )
    return query


def _run(session: SqlSession, query: str, params: list[Any] | None) -> Any:
    """The plan: one JSON document, or the lines of TEXT (XML: one document) joined."""
    # Customer text by design: it runs as the customer's role in a rolled-back transaction.
    rows = session.fetch_all(pgsql.SQL(cast("Any", query)), params)
    if len(rows) == 1:
        return rows[0][0]
    return "\n".join(str(r[0]) for r in rows)


# --- the plan's findings ------------------------------------------------------------------


def _nodes(plan: dict[str, Any], parent: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans") or ():
        yield from _nodes(child, plan)


def _loops(node: dict[str, Any]) -> float:
    return float(node.get("Actual Loops") or 1)


def _own_time(node: dict[str, Any]) -> float:
    """ms spent in the node itself: its total over every loop, without its children's."""
    total = float(node.get("Actual Total Time") or 0) * _loops(node)
    children = sum(float(c.get("Actual Total Time") or 0) * _loops(c) for c in node.get("Plans") or ())
    return max(total - children, 0.0)


def _own_cost(node: dict[str, Any]) -> float:
    children = sum(float(c.get("Total Cost") or 0) for c in node.get("Plans") or ())
    return max(float(node.get("Total Cost") or 0) - children, 0.0)


def _index_for(relation: str | None, columns: list[statements.FilterColumn]) -> str | None:
    if relation is None:
        return None
    mine = [c for c in columns if c.relation and c.relation.split(".")[-1] == relation.split(".")[-1]]
    # Equality first, ranges after: an index serves a range only on its last column used.
    ordered = [c for c in mine if c.operator in ("=", "IN", "IS NULL")] + [
        c for c in mine if c.operator not in ("=", "IN", "IS NULL")
    ]
    names: list[str] = []
    for c in ordered:
        if c.column not in names:
            names.append(c.column)
    if not names:
        return None
    cols = ", ".join(pgsql.Identifier(n).as_string() for n in names[:3])
    written = str(mine[0].relation)  # as the statement names it (schema-qualified when it is)
    table = ".".join(pgsql.Identifier(p).as_string() for p in written.split("."))
    return f"CREATE INDEX CONCURRENTLY ON {table} ({cols});"


@dataclass
class Findings:
    findings: list[PlanFinding]
    suggestions: list[OptimizationSuggestion]


def plan_findings(
    root: dict[str, Any],
    *,
    analyzed: bool,
    execution_ms: float | None,
    table_rows: dict[str, float],
    columns: list[statements.FilterColumn],
    work_mem: str | None = None,
) -> Findings:
    """pev2's rules over a JSON plan (the `Plan` object). `table_rows`: reltuples by relation
    name; `columns`: the statement's filter columns (an index suggestion names them)."""
    found = Findings([], [])
    total_cost = float(root.get("Total Cost") or 0) or 1.0
    timed = analyzed and execution_ms and any("Actual Total Time" in n for n in _nodes(root))
    for node in _nodes(root):
        kind = str(node.get("Node Type"))
        relation = node.get("Relation Name")
        share = (_own_time(node) / execution_ms) if timed and execution_ms else _own_cost(node) / total_cost
        improvement = round(min(100.0, 100 * share), 1)

        def add(finding: str, detail: str, suggestion: str, stype: str, priority: str, sql: str | None = None,
                effort: str = "LOW", kind: str = kind, relation: Any = relation, improvement: float = improvement,
                ) -> None:  # fmt: skip
            found.findings.append(PlanFinding(
                node_type=kind, relation=relation, finding_type=finding, detail=detail, suggestion=suggestion,  # type: ignore[arg-type]
            ))  # fmt: skip
            found.suggestions.append(OptimizationSuggestion(
                type=stype, priority=priority, description=f"{detail}: {suggestion}",  # type: ignore[arg-type]
                estimated_improvement=improvement, implementation_effort=effort, sql_suggestion=sql,  # type: ignore[arg-type]
            ))  # fmt: skip

        if analyzed and "Actual Rows" in node:
            actual, planned = float(node["Actual Rows"]), float(node.get("Plan Rows") or 0)
            factor = max(actual, 1.0) / max(planned, 1.0)
            if factor >= ROW_ESTIMATE_FACTOR or 1 / factor >= ROW_ESTIMATE_FACTOR:
                way = "under" if factor > 1 else "over"
                target = f"ANALYZE {relation};" if relation else None
                add("ROW_ESTIMATE",
                    f"{kind}{' on ' + relation if relation else ''}: the planner {way}estimated its rows "
                    f"{max(factor, 1 / factor):.0f}x ({planned:.0f} planned, {actual:.0f} actual per loop)",
                    "refresh the statistics (ANALYZE), raise the column's statistics target, or add extended "
                    "statistics (CREATE STATISTICS) for correlated columns",
                    "SCHEMA", "MEDIUM", target)  # fmt: skip
        if timed and execution_ms and share > SLOW_NODE_SHARE:
            add("SLOW_NODE",
                f"{kind}{' on ' + relation if relation else ''} takes {100 * share:.0f}% of the execution time "
                f"({_own_time(node):.1f} of {execution_ms:.1f} ms)",
                "this node is where the time goes: see the other findings on it, or rewrite the part of the "
                "statement it runs", "QUERY_REWRITE", "HIGH" if share > 0.7 else "MEDIUM", None, "MEDIUM")  # fmt: skip
        removed = float(node.get("Rows Removed by Filter") or 0) * _loops(node)
        kept = float(node.get("Actual Rows") or 0) * _loops(node)
        if (
            analyzed
            and removed >= FILTER_REMOVED_MIN_ROWS
            and removed / (removed + kept) > FILTER_REMOVED_SHARE
        ):
            index = _index_for(relation, columns)
            add("ROWS_REMOVED_BY_FILTER",
                f"{kind}{' on ' + relation if relation else ''}: its filter ({node.get('Filter', '')}) removes "
                f"{100 * removed / (removed + kept):.1f}% of the {removed + kept:.0f} rows it reads",
                "an index on the filtered columns reads only the rows kept", "INDEX", "HIGH", index)  # fmt: skip
        if node.get("Sort Space Type") == "Disk":
            used = float(node.get("Sort Space Used") or 0)
            wanted = max(4, math.ceil(2 * used / KB))
            add("DISK_SPILL",
                f"Sort spilled {used:.0f} kB to disk ({node.get('Sort Method')}) with work_mem {work_mem}",
                f"give the sort more memory: SET work_mem = '{wanted}MB' in the session that runs it, or sort "
                "fewer rows (an index in the ORDER BY's order)", "CONFIGURATION", "MEDIUM",
                f"SET work_mem = '{wanted}MB';")  # fmt: skip
        batches = int(node.get("Hash Batches") or 1)
        if kind == "Hash" and batches > 1:
            peak = float(node.get("Peak Memory Usage") or 0)
            wanted = max(4, math.ceil(batches * peak / KB))
            add("DISK_SPILL",
                f"Hash split into {batches} batches (written to disk; {peak:.0f} kB each in memory) with "
                f"work_mem {work_mem}",
                f"SET work_mem = '{wanted}MB' (or hash_mem_multiplier) so it fits in one batch",
                "CONFIGURATION", "MEDIUM", f"SET work_mem = '{wanted}MB';")  # fmt: skip
        if kind == "Seq Scan" and relation:
            rows = table_rows.get(relation, 0.0)
            read = removed + kept
            if rows > LARGE_TABLE_ROWS or read > LARGE_TABLE_ROWS:
                index = _index_for(relation, columns)
                add("SEQ_SCAN_LARGE_TABLE",
                    f"Seq Scan of {relation} ({max(rows, read):.0f} rows)"
                    + (f" filtering on {node['Filter']}" if node.get("Filter") else ""),
                    "an index on the columns it filters on" + ("" if index else " (none found in the statement)")
                    + " lets it read only the rows it needs", "INDEX", "HIGH" if index else "MEDIUM", index)  # fmt: skip
    return found


# --- the endpoint ---------------------------------------------------------------------------


def _relation_rows(session: SqlSession, names: list[str]) -> dict[str, float]:
    """Rows of each table named (reltuples; from its size where it was never analyzed)."""
    if not names:
        return {}
    return {str(name): float(rows) for name, rows in session.fetch_all(sql_queries.RELATION_ROWS, (names,))}


def analyze(ports: Ports, principal: Principal, body: QueryAnalyzeRequest) -> QueryAnalyzeResponse:
    text, kind, generic = check_statement(body)
    options = body.explain_options
    target = servers.targets(ports, principal, body.target_id, None, what="a plan")[0]
    login = login_for(ports, target.server, body.database)
    uri = servers.connection_uri(target.server, login.username, login.password, login.database)
    params = list(body.parameters) if body.parameters is not None else None
    notes: list[str] = []
    other: Any = None
    try:
        with ports.sql.customer_session(
            target.target_id, uri, statement_timeout_ms=body.statement_timeout_ms
        ) as s:
            setting = s.fetch_one(sql_queries.SESSION)
            version, work_mem, role = (
                (int(setting[0]), str(setting[1]), str(setting[2])) if setting else (0, "", "")
            )
            if generic and version < GENERIC_PLAN_VERSION_NUM:
                raise ValidationFailed(
                    "queryText has $n placeholders and no parameters: a generic plan needs PostgreSQL 16 or "
                    "later; give the parameters",
                    details={"field": "parameters"},
                )
            flags = {"analyze": options.analyze, "buffers": options.buffers, "timing": options.timing,
                     "generic": generic}  # fmt: skip
            try:
                raw = _run(s, _explain_sql(text, "JSON", **flags), params)
                document = raw if isinstance(raw, list) else json.loads(raw)
                top = document[0]
                rows = _relation_rows(s, sorted({str(n["Relation Name"]) for n in _nodes(top["Plan"])
                                                  if n.get("Relation Name")}))  # fmt: skip
                if options.format != "JSON":
                    if options.analyze:
                        notes.append(
                            f"ANALYZE runs the statement: it ran once, for the JSON plan returned here; the "
                            f"{options.format} form is given only without ANALYZE"
                        )
                    else:
                        other = _run(
                            s, _explain_sql(text, options.format, **{**flags, "analyze": False}), params
                        )
            except StatementCancelled as exc:
                raise StatementTimedOut(
                    f"the statement ran past the statement_timeout of {body.statement_timeout_ms} ms and was "
                    "cancelled (rolled back)",
                    details={"statement_timeout_ms": body.statement_timeout_ms, "reason": str(exc)},
                ) from exc
            except EngineError as exc:
                raise ValidationFailed(
                    f"the statement failed as role {role}: {exc}", details={"field": "queryText"}
                ) from exc
    except (StatementTimedOut, ValidationFailed, InvalidState):
        raise
    except EngineError as exc:
        raise ServerUnreachable(
            f"{target.target_id} cannot be reached as role {login.username}: {exc}"
        ) from exc
    plan = top["Plan"]
    execution = top.get("Execution Time")
    node = statements.single_statement(text, field="queryText")
    found = plan_findings(
        plan, analyzed=options.analyze, execution_ms=execution, table_rows=rows,
        columns=statements.filter_columns(node), work_mem=work_mem,
    )  # fmt: skip
    if generic:
        notes.append("a generic plan (GENERIC_PLAN): the statement's $n placeholders were not bound")
    if options.analyze and statements.writes(node):
        notes.append(
            f"{kind} ran with ANALYZE inside a transaction that was rolled back: nothing it wrote remains"
        )
    buffers = {
        k: int(plan[k])
        for k in ("Shared Hit Blocks", "Shared Read Blocks", "Temp Written Blocks")
        if k in plan
    }
    fmt = options.format if other is not None or options.format == "JSON" else "JSON"
    return QueryAnalyzeResponse(
        execution_plan=ExecutionPlan(
            format=fmt,
            plan=other if other is not None else document,
            analyzed=options.analyze,  # type: ignore[arg-type]
            total_cost=float(plan.get("Total Cost") or 0),
            plan_rows=float(plan.get("Plan Rows") or 0),
            findings=found.findings,
            notes=notes,
        ),  # fmt: skip
        performance=QueryPerformanceMetrics(
            planning_time=top.get("Planning Time"),
            execution_time=execution,
            total_cost=float(plan.get("Total Cost") or 0),
            actual_rows=plan.get("Actual Rows"),
            shared_blocks_hit=buffers.get("Shared Hit Blocks"),
            shared_blocks_read=buffers.get("Shared Read Blocks"),
            temp_blocks_written=buffers.get("Temp Written Blocks"),
            statement_kind=kind,
        ),  # fmt: skip
        optimization_suggestions=found.suggestions,
        target_id=target.target_id,
        database_name=login.database,
        role_name=role or login.username,
    )
