"""What a maintenance run does: the objects that need it, chosen from the server's own
statistics, each with the statement that maintains it and why it was chosen.

- VACUUM: a table whose dead tuples pass autovacuum's own trigger,
  `autovacuum_vacuum_threshold + autovacuum_vacuum_scale_factor x reltuples` (the table's
  reloptions first, then the server's settings); a table whose XID age passes half of
  `autovacuum_freeze_max_age` first, oldest first, with FREEZE (wraparound before bloat).
- ANALYZE: rows changed since the last analyze past `autovacuum_analyze_threshold +
  autovacuum_analyze_scale_factor x reltuples`, or a table with rows never analyzed.
- REINDEX: the indexes the performance analysis finds bloated, rebuilt CONCURRENTLY.
- VACUUM FULL (ACCESS EXCLUSIVE) only when asked for (`allowVacuumFull`), on a table whose
  dead tuples are at least FULL_DEAD_RATIO of its rows.
- refresh_materialized_views: every populated view, CONCURRENTLY when it has a unique index.

A plan item is stored with the execution (JSON); its statement is composed again from the
names when it runs (psycopg.sql: identifiers quoted, nothing formatted into SQL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from psycopg import sql as pgsql

from pgfleet.domains import performance
from pgfleet.domains.maintenance import sql as q
from pgfleet.ports.sql import SqlSession

FULL_DEAD_RATIO = 0.2
FREEZE_SHARE = 0.5  # of autovacuum_freeze_max_age: vacuum with FREEZE from there
PLAN_STATEMENT_TIMEOUT_MS = 15_000
# The actions whose statement takes a lock that blocks writers (or readers).
EXCLUSIVE = frozenset({"VACUUM_FULL", "REFRESH"})
TYPE_OF = {
    "VACUUM": "VACUUM", "VACUUM_FREEZE": "VACUUM", "VACUUM_FULL": "VACUUM", "ANALYZE": "ANALYZE",
    "REINDEX": "REINDEX", "REFRESH": "OPTIMIZE", "REFRESH_CONCURRENTLY": "OPTIMIZE", "SQL": "SQL",
    "CLEANUP": "CLEANUP", "BACKUP": "BACKUP",
}  # fmt: skip


@dataclass
class Item:
    action: str
    target_id: str
    database: str | None
    schema: str | None
    name: str | None
    reason: str
    sql: str = ""
    size_bytes: int | None = None
    dead_tuples: int | None = None

    @property
    def exclusive(self) -> bool:
        return self.action in EXCLUSIVE

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["exclusive"] = self.exclusive
        record["type"] = TYPE_OF[self.action]
        if not record["sql"]:
            record["sql"] = display(self.action, self.schema, self.name)
        return record


def composed(action: str, schema: str | None, name: str | None) -> pgsql.Composed:
    """The statement of a plan item."""
    ident = pgsql.SQL("{}.{}").format(pgsql.Identifier(schema or ""), pgsql.Identifier(name or ""))
    text = {
        "VACUUM": "VACUUM {}",
        "VACUUM_FREEZE": "VACUUM (FREEZE) {}",
        "VACUUM_FULL": "VACUUM (FULL) {}",
        "ANALYZE": "ANALYZE {}",
        "REINDEX": "REINDEX INDEX CONCURRENTLY {}",
        "REFRESH": "REFRESH MATERIALIZED VIEW {}",
        "REFRESH_CONCURRENTLY": "REFRESH MATERIALIZED VIEW CONCURRENTLY {}",
    }[action]
    return pgsql.SQL(text).format(ident)  # type: ignore[arg-type]


def display(action: str, schema: str | None, name: str | None) -> str:
    if action in ("SQL", "CLEANUP", "BACKUP"):
        return ""
    return composed(action, schema, name).as_string()


@dataclass(frozen=True)
class TableStats:
    schema: str
    name: str
    dead: int
    live: int
    reltuples: float
    vacuum_trigger: float
    analyze_trigger: float
    modified: int
    last_vacuum: Any
    last_analyze: Any
    xid_age: int
    freeze_max_age: int
    table_size: int
    total_size: int


def tables(session: SqlSession) -> list[TableStats]:
    out = []
    for r in session.fetch_all(q.TABLES):
        reltuples = float(r[5])
        out.append(
            TableStats(
                schema=r[0], name=r[1], dead=int(r[3] or 0), live=int(r[4] or 0), reltuples=reltuples,
                vacuum_trigger=float(r[6]) + float(r[7]) * reltuples,
                analyze_trigger=float(r[8]) + float(r[9]) * reltuples, modified=int(r[10] or 0),
                last_vacuum=r[11], last_analyze=r[12], xid_age=int(r[13] or 0), freeze_max_age=int(r[14]),
                table_size=int(r[15] or 0), total_size=int(r[16] or 0),
            )
        )  # fmt: skip
    return out


def _vacuum(target_id: str, database: str, stats: list[TableStats], allow_full: bool) -> list[Item]:
    wraparound = sorted(
        (t for t in stats if t.xid_age >= FREEZE_SHARE * t.freeze_max_age), key=lambda t: -t.xid_age
    )
    items = [
        Item("VACUUM_FREEZE", target_id, database, t.schema, t.name,
             f"XID age {t.xid_age:,} is past {FREEZE_SHARE:.0%} of autovacuum_freeze_max_age "
             f"({t.freeze_max_age:,}): frozen first, before wraparound",
             size_bytes=t.total_size, dead_tuples=t.dead)
        for t in wraparound
    ]  # fmt: skip
    chosen = {(t.schema, t.name) for t in wraparound}
    for t in sorted(stats, key=lambda t: -t.dead):
        if (t.schema, t.name) in chosen or t.dead <= 0 or t.dead <= t.vacuum_trigger:
            continue
        ratio = t.dead / max(1, t.dead + t.live)
        full = allow_full and ratio >= FULL_DEAD_RATIO
        items.append(
            Item(
                "VACUUM_FULL" if full else "VACUUM", target_id, database, t.schema, t.name,
                f"{t.dead:,} dead tuples ({ratio:.0%} of rows) pass autovacuum's trigger of "
                f"{t.vacuum_trigger:,.0f} (threshold + scale factor x {t.reltuples:,.0f} reltuples)"
                + ("; VACUUM FULL allowed and dead tuples are at least 20% of rows" if full else ""),
                size_bytes=t.total_size, dead_tuples=t.dead,
            )
        )  # fmt: skip
    return items


def _analyze(target_id: str, database: str, stats: list[TableStats]) -> list[Item]:
    items = []
    for t in sorted(stats, key=lambda t: -t.modified):
        never = t.last_analyze is None and (t.live > 0 or t.modified > 0)
        if not never and t.modified <= t.analyze_trigger:
            continue
        reason = (
            "never analyzed, and it holds rows"
            if never
            else f"{t.modified:,} rows changed since the last analyze pass the trigger of {t.analyze_trigger:,.0f}"
        )
        items.append(Item("ANALYZE", target_id, database, t.schema, t.name, reason, size_bytes=t.total_size))
    return items


def _reindex(target_id: str, database: str, session: SqlSession, bloated_from: float) -> list[Item]:
    return [
        Item(
            "REINDEX", target_id, database, i.schema, i.name,
            f"estimated bloat {i.bloat:.0f}% (at least {bloated_from:.0f}%) of {i.size / 1048576:.1f} MB "
            f"on {i.table}",
            size_bytes=i.size,
        )
        for i in performance.bloated_indexes(session, bloated_from)
    ]  # fmt: skip


def _refresh(target_id: str, database: str, session: SqlSession) -> list[Item]:
    items = []
    for schema, name, populated, unique, size in session.fetch_all(q.MATERIALIZED_VIEWS):
        concurrent = bool(populated and unique)
        items.append(
            Item(
                "REFRESH_CONCURRENTLY" if concurrent else "REFRESH", target_id, database, schema, name,
                "a materialized view: refreshed "
                + ("concurrently (it has a unique index)" if concurrent else "with an exclusive lock (no unique index)"),
                size_bytes=int(size or 0),
            )
        )  # fmt: skip
    return items


def choose(
    session: SqlSession, target_id: str, database: str, functions: list[str], *, allow_full: bool = False,
    bloated_from: float = performance.BLOAT_PERCENT,
) -> list[Item]:  # fmt: skip
    """The plan of the built-in `functions` on one database, in their order, each object once
    per action (`bloated_from`: the tenant's index bloat threshold, for reindex_bloated_indexes)."""
    stats = (
        tables(session)
        if {"vacuum_bloated_tables", "analyze_stale_tables", "freeze_old_tables"} & set(functions)
        else []
    )
    items: list[Item] = []
    for function in functions:
        if function == "vacuum_bloated_tables":
            items += _vacuum(target_id, database, stats, allow_full)
        elif function == "freeze_old_tables":
            items += [i for i in _vacuum(target_id, database, stats, False) if i.action == "VACUUM_FREEZE"]
        elif function == "analyze_stale_tables":
            items += _analyze(target_id, database, stats)
        elif function == "reindex_bloated_indexes":
            items += _reindex(target_id, database, session, bloated_from)
        elif function == "refresh_materialized_views":
            items += _refresh(target_id, database, session)
    seen: set[tuple[str, str | None, str | None]] = set()
    unique = []
    for item in items:
        key = (item.action, item.schema, item.name)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique
