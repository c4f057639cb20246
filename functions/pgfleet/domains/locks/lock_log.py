"""What the server's log says about locks, parsed from its jsonlog entries (`LogLine`s).

Managed servers run with `log_lock_waits = on` and `deadlock_timeout = 1s`, so the log holds:

- a deadlock: an ERROR with SQLSTATE 40P01, "deadlock detected", written by the backend the
  detector cancelled (the victim), whose DETAIL lists the cycle and then every query:

      Process 10031 waits for ShareLock on transaction 737; blocked by process 10032.
      Process 10032 waits for ShareLock on transaction 736; blocked by process 10031.
      Process 10031: UPDATE public.payments SET amount = amount + 2 WHERE id = 1
      Process 10032: UPDATE public.orders SET total = total + 2 WHERE id = 1

  just after the victim's own LOG "process 10031 detected deadlock while waiting for
  ShareLock on transaction 737 after 1000.098 ms";
- long lock waits: LOG "process N still waiting for <mode> on <object> after X ms" and, once
  the lock came, "process N acquired <mode> on <object> after X ms";
- lock timeouts: an ERROR with SQLSTATE 55P03, "canceling statement due to lock timeout".

Lock objects are spelled as PostgreSQL's DescribeLockTag spells them ("tuple (0,1) of
relation 16390 of database 16384"); `parse_lock_object` maps them to pg_locks' locktype.
Table names of a query come from PostgreSQL's own parser (pglast). Nothing here reads a port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError, fingerprint
from pglast.visitors import Visitor

DEADLOCK_SQLSTATE = "40P01"
LOCK_NOT_AVAILABLE_SQLSTATE = "55P03"

_WAITS = re.compile(r"^Process (\d+) waits for (\S+) on (.+?); blocked by process (\d+)\.?$")
_QUERY = re.compile(r"^Process (\d+): ?(.*)$", re.DOTALL)
_WAIT_LOG = re.compile(
    r"^process (\d+) (still waiting for|acquired|detected deadlock while waiting for|avoided deadlock for) "
    r"(\S+) on (.+?) (?:by rearranging queue order )?after ([0-9.]+) ms$"
)
_CONTEXT_RELATION = re.compile(r'\bin relation "((?:[^"]|"")+)"')
# DescribeLockTag's spellings (src/backend/storage/lmgr/lmgr.c), most specific first.
_OBJECTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("tuple", re.compile(r"^tuple \((\d+),(\d+)\) of relation (\d+) of database (\d+)$")),
    ("page", re.compile(r"^page (\d+) of relation (\d+) of database (\d+)$")),
    ("extend", re.compile(r"^extension of relation (\d+) of database (\d+)$")),
    ("relation", re.compile(r"^relation (\d+) of database (\d+)$")),
    ("frozenid", re.compile(r"^pg_database\.datfrozenxid of database (\d+)$")),
    ("spectoken", re.compile(r"^speculative token (\d+) of transaction (\d+)$")),
    ("transactionid", re.compile(r"^transaction (\d+)$")),
    ("virtualxid", re.compile(r"^virtual transaction (-?\d+)/(\d+)$")),
    ("applytransaction", re.compile(r"^remote transaction (\d+) of subscription (\d+) of database (\d+)$")),
    ("object", re.compile(r"^object (\d+) of class (\d+) of database (\d+)$")),
    ("advisory", re.compile(r"^advisory lock \[([0-9,]+)\]$")),
    ("userlock", re.compile(r"^user lock \[([0-9,]+)\]$")),
)


@dataclass(frozen=True)
class LockObject:
    """A lock's object: its pg_locks locktype, and the relation and database oids it names."""

    lock_type: str
    text: str
    relation_oid: int | None = None
    database_oid: int | None = None

    @property
    def advisory_key(self) -> str | None:
        if self.lock_type != "advisory":
            return None
        parts = self.text[self.text.index("[") + 1 : -1].split(",")
        # [database, key high, key low, kind]: kind 1 is one bigint key, 2 a pair of int keys.
        if len(parts) == 4 and parts[3] == "1":
            return str((int(parts[1]) << 32) | int(parts[2]))
        return ",".join(parts[1:3])


def parse_lock_object(text: str) -> LockObject:
    text = text.strip()
    for lock_type, pattern in _OBJECTS:
        match = pattern.match(text)
        if not match:
            continue
        groups = [int(g) for g in match.groups() if g.lstrip("-").isdigit()]
        if lock_type == "tuple":
            return LockObject(lock_type, text, groups[2], groups[3])
        if lock_type == "page":
            return LockObject(lock_type, text, groups[1], groups[2])
        if lock_type in ("extend", "relation"):
            return LockObject(lock_type, text, groups[0], groups[1])
        if lock_type in ("frozenid",):
            return LockObject(lock_type, text, None, groups[0])
        if lock_type in ("object", "applytransaction"):
            return LockObject(lock_type, text, None, groups[2])
        return LockObject(lock_type, text)
    return LockObject("other", text)


@dataclass(frozen=True)
class WaitEdge:
    """`waiter` waits for `mode` on `lock`, held (or queued before it) by `holder`."""

    waiter: int
    holder: int
    mode: str
    lock: LockObject


@dataclass(frozen=True)
class DeadlockReport:
    """The cycle and the queries of one "deadlock detected" DETAIL."""

    edges: tuple[WaitEdge, ...]
    queries: dict[int, str] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        seen: dict[int, None] = {}
        for edge in self.edges:
            seen.setdefault(edge.waiter)
            seen.setdefault(edge.holder)
        for pid in self.queries:
            seen.setdefault(pid)
        return list(seen)


def parse_deadlock_detail(detail: str) -> DeadlockReport | None:
    """The cycle and queries of a deadlock's DETAIL; None when it lists no cycle. A query that
    spans several lines keeps them (a line that starts another "Process N" entry ends it)."""
    edges: list[WaitEdge] = []
    queries: dict[int, str] = {}
    current: int | None = None
    cycle: set[int] = set()
    for line in detail.split("\n"):
        waits = _WAITS.match(line)
        if waits and current is None:
            waiter, mode, obj, holder = waits.groups()
            edges.append(WaitEdge(int(waiter), int(holder), mode, parse_lock_object(obj)))
            cycle.update((int(waiter), int(holder)))
            continue
        query = _QUERY.match(line)
        if query and int(query[1]) in cycle and int(query[1]) not in queries:
            current = int(query[1])
            queries[current] = query[2]
            continue
        if current is not None:  # a further line of the query before
            queries[current] += "\n" + line
    if not edges:
        return None
    return DeadlockReport(tuple(edges), queries)


@dataclass(frozen=True)
class LockWaitLog:
    """A LOG line of log_lock_waits (or of the deadlock detector, before its ERROR)."""

    pid: int
    event: str  # "waiting" | "acquired" | "deadlock" | "avoided"
    mode: str
    lock: LockObject
    wait_ms: float


_WAIT_EVENTS = {
    "still waiting for": "waiting",
    "acquired": "acquired",
    "detected deadlock while waiting for": "deadlock",
    "avoided deadlock for": "avoided",
}


def parse_lock_wait(message: str) -> LockWaitLog | None:
    match = _WAIT_LOG.match(message.strip())
    if not match:
        return None
    pid, verb, mode, obj, ms = match.groups()
    return LockWaitLog(int(pid), _WAIT_EVENTS[verb], mode, parse_lock_object(obj), float(ms))


def context_relation(context: str | None) -> str | None:
    """The relation a CONTEXT names ("while updating tuple (0,1) in relation "payments"")."""
    match = _CONTEXT_RELATION.search(context or "")
    return match[1].replace('""', '"') if match else None


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementTables:
    """What a statement does (`verb`: "update", "delete from", "insert into", "lock rows of",
    "lock", "merge into", "read") and the tables it locks for that (`targets`, as
    (schema or None, table)), then every table it names (`tables`)."""

    verb: str
    targets: tuple[tuple[str | None, str], ...]
    tables: tuple[tuple[str | None, str], ...]


class _RangeVars(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[tuple[str | None, str]] = []

    def visit_RangeVar(self, ancestors: object, node: ast.RangeVar) -> None:  # noqa: N802 (pglast's naming)
        name = (node.schemaname, node.relname or "")
        if node.relname and name not in self.found:
            self.found.append(name)


def _names(nodes: ast.Node | tuple[Any, ...] | None) -> tuple[tuple[str | None, str], ...]:
    if nodes is None:
        return ()
    visitor = _RangeVars()
    visitor(nodes)
    return tuple(visitor.found)


def statement_tables(query: str) -> StatementTables | None:
    """The tables of the first statement of `query`; None when PostgreSQL's parser cannot
    read it (a query cut short in the log, a statement of a newer version)."""
    try:
        statements = parse_sql(query)
    except (ParseError, ValueError):
        return None
    if not statements:
        return None
    stmt = statements[0].stmt
    tables = _names(stmt)
    if isinstance(stmt, ast.UpdateStmt):
        return StatementTables("update", _names(stmt.relation), tables)
    if isinstance(stmt, ast.DeleteStmt):
        return StatementTables("delete from", _names(stmt.relation), tables)
    if isinstance(stmt, ast.InsertStmt):
        return StatementTables("insert into", _names(stmt.relation), tables)
    if isinstance(stmt, ast.MergeStmt):
        return StatementTables("merge into", _names(stmt.relation), tables)
    if isinstance(stmt, ast.LockStmt):
        return StatementTables("lock", _names(stmt.relations), tables)
    if isinstance(stmt, ast.SelectStmt) and stmt.lockingClause:
        return StatementTables("lock rows of", _names(stmt.fromClause), tables)
    return StatementTables("read", tables, tables)


def query_fingerprint(query: str) -> str | None:
    """The query's fingerprint (the same for the same statement with other constants), or
    None when it cannot be parsed."""
    try:
        return str(fingerprint(query))
    except (ParseError, ValueError):
        return None
