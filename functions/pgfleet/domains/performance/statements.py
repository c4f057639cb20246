"""What a SQL statement is, read by PostgreSQL's own parser (pglast, libpg_query): whether a
text is exactly one statement, its kind, whether it writes, its `$n` placeholders, and the
columns its WHERE clause filters on. Shared by query analysis, EXPLAIN and index advice.

Stable API (other modules depend on it): `single_statement(sql)`, `statement_kind(sql)`,
`kind_of(node)`, `writes(node)`, `placeholders(node)`, `filter_columns(node)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.visitors import Visitor

from pgfleet.core.errors import ValidationFailed

# The statements EXPLAIN can show a plan of and the analyzer accepts.
EXPLAINABLE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})
DATA_CHANGING = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})

# Node class -> the statement's name, where splitting the class name would not give it.
_KINDS: dict[str, str] = {
    "SelectStmt": "SELECT", "InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE", "CreateStmt": "CREATE TABLE", "CreateTableAsStmt": "CREATE TABLE AS",
    "IndexStmt": "CREATE INDEX", "ViewStmt": "CREATE VIEW", "CreateSchemaStmt": "CREATE SCHEMA",
    "CreateFunctionStmt": "CREATE FUNCTION", "CreateRoleStmt": "CREATE ROLE", "CreatedbStmt": "CREATE DATABASE",
    "CreateSeqStmt": "CREATE SEQUENCE", "CreateExtensionStmt": "CREATE EXTENSION", "CreateTrigStmt": "CREATE TRIGGER",
    "AlterTableStmt": "ALTER TABLE", "AlterRoleStmt": "ALTER ROLE", "AlterSystemStmt": "ALTER SYSTEM",
    "DropStmt": "DROP", "DropRoleStmt": "DROP ROLE", "DropdbStmt": "DROP DATABASE", "TruncateStmt": "TRUNCATE",
    "GrantStmt": "GRANT", "GrantRoleStmt": "GRANT", "RenameStmt": "ALTER ... RENAME", "CommentStmt": "COMMENT",
    "VacuumStmt": "VACUUM", "CopyStmt": "COPY", "VariableSetStmt": "SET", "VariableShowStmt": "SHOW",
    "ExplainStmt": "EXPLAIN", "DoStmt": "DO", "CallStmt": "CALL", "LockStmt": "LOCK", "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE", "DeallocateStmt": "DEALLOCATE", "DeclareCursorStmt": "DECLARE", "FetchStmt": "FETCH",
    "ClosePortalStmt": "CLOSE", "ListenStmt": "LISTEN", "NotifyStmt": "NOTIFY", "UnlistenStmt": "UNLISTEN",
    "ReindexStmt": "REINDEX", "ClusterStmt": "CLUSTER", "CheckPointStmt": "CHECKPOINT", "DiscardStmt": "DISCARD",
    "LoadStmt": "LOAD", "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
}  # fmt: skip
_TRANSACTION = {
    "TRANS_STMT_BEGIN": "BEGIN", "TRANS_STMT_START": "START TRANSACTION", "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK", "TRANS_STMT_SAVEPOINT": "SAVEPOINT", "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK TO SAVEPOINT", "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED", "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}  # fmt: skip


def single_statement(sql: str, *, field: str = "query") -> ast.Node:
    """The one statement of `sql` (a trailing `;` or comment is fine). 422 naming why when
    the text does not parse, is empty, or holds more than one statement."""
    try:
        parsed = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise ValidationFailed(f"{field} does not parse: {exc}", details={"field": field}) from None
    if not parsed:
        raise ValidationFailed(f"{field} holds no statement", details={"field": field})
    if len(parsed) > 1:
        kinds = ", ".join(kind_of(raw.stmt) for raw in parsed if raw.stmt is not None)
        raise ValidationFailed(
            f"{field} holds {len(parsed)} statements ({kinds}): exactly one is analyzed",
            details={"field": field, "statements": len(parsed)},
        )
    node = parsed[0].stmt
    if node is None:
        raise ValidationFailed(f"{field} holds no statement", details={"field": field})
    return node


def kind_of(node: ast.Node) -> str:
    """The statement's name in SQL: SELECT, DELETE, CREATE TABLE, COMMIT, VACUUM, ..."""
    name = type(node).__name__
    if isinstance(node, ast.TransactionStmt):
        return _TRANSACTION.get(str(getattr(node.kind, "name", node.kind)), "transaction control")
    if name in _KINDS:
        return _KINDS[name]
    words = re.findall(r"[A-Z][a-z]*", name.removesuffix("Stmt"))
    return " ".join(words).upper() or name


def statement_kind(sql: str) -> str:
    """The kind of the one statement of `sql` (raises as `single_statement`)."""
    return kind_of(single_statement(sql))


class _Finder(Visitor):  # type: ignore[misc]
    def __init__(self, wanted: tuple[type, ...]) -> None:
        super().__init__()
        self.wanted = wanted
        self.found: list[Any] = []

    def visit(self, ancestors: Any, node: Any) -> None:
        if isinstance(node, self.wanted):
            self.found.append(node)


def _find(node: ast.Node, *types: type) -> list[Any]:
    finder = _Finder(types)
    finder(node)
    return finder.found


def writes(node: ast.Node) -> bool:
    """Whether running the statement changes data: it is, or holds (a WITH of), an INSERT,
    UPDATE, DELETE or MERGE, or it locks rows (FOR UPDATE / SHARE)."""
    if kind_of(node) in DATA_CHANGING:
        return True
    found = _find(node, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.LockingClause)
    return bool(found)


def placeholders(node: ast.Node) -> int:
    """The highest `$n` of the statement (0 without any)."""
    return max((int(p.number) for p in _find(node, ast.ParamRef)), default=0)


@dataclass(frozen=True)
class FilterColumn:
    """A column the statement compares in its WHERE (or JOIN ... ON): `relation` is the
    table it belongs to (schema-qualified when written so) when the statement says which,
    `operator` the comparison (=, <, >, LIKE, IN, IS NULL, ...)."""

    relation: str | None
    column: str
    operator: str


def _relations(node: ast.Node) -> dict[str, str]:
    """Alias or name -> relation name of every table the statement reads or writes."""
    found: dict[str, str] = {}
    for rv in _find(node, ast.RangeVar):
        name = f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname)
        found[str(rv.relname)] = name
        if rv.alias is not None:
            found[str(rv.alias.aliasname)] = name
    return found


def _column(expr: Any, relations: dict[str, str]) -> tuple[str | None, str] | None:
    if isinstance(expr, ast.TypeCast):
        expr = expr.arg
    if not isinstance(expr, ast.ColumnRef):
        return None
    fields = tuple(expr.fields or ())
    names = [str(f.sval) for f in fields if isinstance(f, ast.String)]
    if not names or len(names) != len(fields):
        return None  # `t.*`
    column = names[-1]
    if len(names) >= 2:
        return relations.get(names[-2], names[-2]), column
    only = set(relations.values())
    return (next(iter(only)) if len(only) == 1 else None), column


def _operator(node: Any) -> str:
    if isinstance(node, ast.NullTest):
        return "IS NULL" if str(getattr(node.nulltesttype, "name", "")).endswith("IS_NULL") else "IS NOT NULL"
    kind = str(getattr(node.kind, "name", node.kind))
    name = ".".join(str(n.sval) for n in node.name or () if isinstance(n, ast.String))
    return {"AEXPR_IN": "IN", "AEXPR_LIKE": "LIKE", "AEXPR_ILIKE": "ILIKE", "AEXPR_BETWEEN": "BETWEEN"}.get(
        kind, name or kind
    )


def filter_columns(node: ast.Node) -> list[FilterColumn]:
    """The columns the statement filters on (WHERE, JOIN ... ON), in the order written,
    each once per operator: what an index would serve."""
    relations = _relations(node)
    clauses: list[Any] = []
    for holder in _find(node, ast.SelectStmt, ast.UpdateStmt, ast.DeleteStmt, ast.JoinExpr):
        clause = holder.quals if isinstance(holder, ast.JoinExpr) else holder.whereClause
        if clause is not None:
            clauses.append(clause)
    found: list[FilterColumn] = []
    for clause in clauses:
        for test in _find(clause, ast.A_Expr, ast.NullTest):
            sides = [test.arg] if isinstance(test, ast.NullTest) else [test.lexpr, test.rexpr]
            for side in sides:
                column = _column(side, relations)
                if column is None:
                    continue
                item = FilterColumn(column[0], column[1], _operator(test))
                if item not in found:
                    found.append(item)
    return found
