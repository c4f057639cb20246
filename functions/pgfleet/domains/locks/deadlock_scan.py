"""Scanning a server's log for deadlocks, lock timeouts and long lock waits (what
`POST /api/v1/locks/deadlocks/detect` and the analysis run; see deadlocks for the routes).

A *scan* reads the log lines of one server (an instance, or each node of a cluster) that are
newer than its last scan, whose high-water mark (the newest line's time, and the keys of the
lines at that time) is kept in the metadata store, kind `lock_log_scan`. It appends what it
finds to the history store, snake_case, each record with its target and tenant:

- stream `deadlocks`: one DeadlockEvent per "deadlock detected" (see lock_log);
- stream `lock_timeouts`: one record per statement cancelled by lock_timeout (55P03);
- stream `lock_waits`: one record per lock wait longer than deadlock_timeout that ended with
  the lock ("process N acquired ... after X ms"), with its table and milliseconds.

Record ids are derived from the log line, so a scan retried after a crash (before its mark
was saved) appends the same records again, harmlessly.

How an event's numbers are made:
- `frequencyScore`: deadlocks of the same pattern on the target in the 7 days up to this one,
  this one included. A pattern is the set of the queries' fingerprints (the same statements
  with other constants) and lock types.
- `severity`: CRITICAL from 10 occurrences in 7 days or 4 sessions in the cycle; HIGH from 3
  occurrences or 3 sessions; MEDIUM from 2 occurrences; else LOW.
- `manualInterventionRequired`: from 3 occurrences in 7 days.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, ServiceError
from pgfleet.domains import servers
from pgfleet.domains.locks import lock_log
from pgfleet.domains.locks import sql as locks_sql
from pgfleet.ports.engine import LogLine
from pgfleet.ports.history import DEFAULT_TTL_SECONDS, HistoryRecord

if TYPE_CHECKING:
    from pgfleet.domains.locks.service import Target

STREAM = "deadlocks"
TIMEOUTS = "lock_timeouts"
WAITS = "lock_waits"
SCAN_KIND = "lock_log_scan"
MAX_LINES = 20_000  # per node and scan; a scan every minute sees far fewer
CONTEXT = timedelta(seconds=30)  # lines before the mark re-read for context (users, wait times)
PATTERN_WINDOW = timedelta(days=7)
RECURRING = 3
QUERY_LIMIT = 4096  # characters of a query kept in a record
RETENTION = timedelta(seconds=DEFAULT_TTL_SECONDS)
# Table lock modes, weakest first (each conflicts with more of the others than the one before).
LOCK_STRENGTH = (
    "AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
    "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock",
)  # fmt: skip

# Names of tables a query names without a schema, in one database (pg_class is per database).
TABLES_NAMED = """
SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = ANY (%s::pg_catalog.text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
"""
# Sessions still connected that a deadlock's log names only by pid.
SESSIONS_OF = """
SELECT a.pid, a.usename::pg_catalog.text, a.application_name, a.backend_start
FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY (%s::pg_catalog.int4[])
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_line_key = servers.log_cursor.line_key


def _record_id(target_id: str, node: str | None, line: LogLine) -> str:
    return hashlib.sha1(f"{target_id}/{node}/{_line_key(line)}".encode()).hexdigest()[:16]


def clip(query: str | None) -> str | None:
    """A query as the history keeps it: at most QUERY_LIMIT characters (a record must stay
    far below DynamoDB's 400 KB item limit, whatever statement the log holds)."""
    if query is None or len(query) <= QUERY_LIMIT:
        return query
    return f"{query[:QUERY_LIMIT]}... [{len(query) - QUERY_LIMIT} more characters]"


def display_name(schema: str | None, table: str) -> str:
    """A table as the default search_path shows it: schema public unqualified."""
    return table if schema in (None, "public") else f"{schema}.{table}"


# --- reading a server's log (servers.log_cursor: the mark per node, kind SCAN_KIND) -------------

log_nodes = servers.log_cursor.log_nodes


# --- the scan ---------------------------------------------------------------------------------


@dataclass
class _Names:
    """Relation and session names resolved inside the server, per scan of one node."""

    databases: dict[int, str] = field(default_factory=dict)
    relations: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    schemas: dict[tuple[str, str], str] = field(default_factory=dict)  # (database, table) -> schema
    sessions: dict[int, tuple[str | None, str | None, datetime | None]] = field(default_factory=dict)
    problem: str | None = None

    def relation(self, database_oid: int | None, relation_oid: int | None) -> str | None:
        if relation_oid is None or database_oid is None:
            return None
        found = self.relations.get((database_oid, relation_oid))
        return display_name(*found) if found else None

    def table(self, database: str | None, schema: str | None, table: str) -> str:
        if schema is None and database is not None:
            schema = self.schemas.get((database, table))
        return display_name(schema, table)


def _resolve(
    ports: Ports,
    target: Target,
    node: str | None,
    oids: dict[int, set[int]],
    unqualified: dict[str, set[str]],
    pids: set[int],
) -> _Names:
    names = _Names()
    try:
        with ports.sql.session(target.target_id, node=node) as session:
            names.databases = {int(o): str(d) for o, d in session.fetch_all(locks_sql.DATABASE_OIDS)}
            if pids:
                for pid, user, app, started in session.fetch_all(SESSIONS_OF, (sorted(pids),)):
                    names.sessions[int(pid)] = (user, app, started)
        by_name = {name: oid for oid, name in names.databases.items()}
        for database in sorted({names.databases[o] for o in oids if o in names.databases} | set(unqualified)):
            if database not in by_name:
                continue
            with ports.sql.session(target.target_id, database=database, node=node) as session:
                wanted = sorted(oids.get(by_name[database], ()))
                if wanted:
                    for oid, schema, table, _kind in session.fetch_all(locks_sql.RELATIONS, (wanted,)):
                        names.relations[(by_name[database], int(oid))] = (str(schema), str(table))
                tables = sorted(unqualified.get(database, ()))
                if tables:
                    found: dict[str, list[str]] = {}
                    for schema, table in session.fetch_all(TABLES_NAMED, (tables,)):
                        found.setdefault(str(table), []).append(str(schema))
                    for table, schemas in found.items():
                        # "public" first: the schema the default search_path finds first.
                        if len(schemas) == 1 or "public" in schemas:
                            names.schemas[(database, table)] = "public" if "public" in schemas else schemas[0]
    except (EngineError, ServiceError) as exc:
        names.problem = f"names could not be read inside the server: {exc}"
    return names


@dataclass
class _Batch:
    """One scan of one node's log: the new lines, and earlier ones for context."""

    target: Target
    node: str | None
    new: list[LogLine]
    context: list[LogLine]

    def lines_of(self, pid: int) -> list[LogLine]:
        return [ln for ln in self.context if ln.pid == pid]


def scan(ports: Ports, target: Target) -> dict[str, Any]:
    """Scan the target's log(s) since the last scan; append and return what was found:
    {"deadlocks": [event records' data], "lock_timeouts": n, "lock_waits": n, "lines": n,
    "unreachable": {where: why}, "notes": [...]}."""
    found: dict[str, Any] = {
        "deadlocks": [],
        "lock_timeouts": 0,
        "lock_waits": 0,
        "lines": 0,
        "unreachable": {},
        "notes": [],
    }
    for node in log_nodes(target):
        try:
            reading = servers.log_cursor.read_new(ports, SCAN_KIND, target, node, MAX_LINES, CONTEXT)
        except (EngineError, ServiceError) as exc:
            where = target.target_id if node is None else f"{target.target_id}/{node}"
            found["unreachable"][where] = str(exc)
            continue
        if reading.note:
            found["notes"].append(reading.note)
        new, lines = reading.new, reading.lines
        found["lines"] += len(new)
        if not new:
            continue
        batch = _Batch(target, node, new, lines)
        records = _records(ports, batch)
        if records:
            ports.history.append_all(records)
        for record in records:
            if record.stream == STREAM:
                found["deadlocks"].append(record.data | {"target_id": target.target_id})
            elif record.stream == TIMEOUTS:
                found["lock_timeouts"] += 1
            else:
                found["lock_waits"] += 1
        reading.save(ports)
    return found


def _records(ports: Ports, batch: _Batch) -> list[HistoryRecord]:
    deadlocks: list[tuple[LogLine, lock_log.DeadlockReport]] = []
    timeouts: list[LogLine] = []
    waits: list[tuple[LogLine, lock_log.LockWaitLog]] = []
    for line in batch.new:
        if line.sqlstate == lock_log.DEADLOCK_SQLSTATE and line.detail:
            report = lock_log.parse_deadlock_detail(line.detail)
            if report is not None and line.pid is not None:
                deadlocks.append((line, report))
        elif line.sqlstate == lock_log.LOCK_NOT_AVAILABLE_SQLSTATE and "lock timeout" in line.message:
            timeouts.append(line)
        elif line.severity == "LOG" and " acquired " in line.message:
            wait = lock_log.parse_lock_wait(line.message)
            if wait is not None and wait.event == "acquired":
                waits.append((line, wait))
    if not (deadlocks or timeouts or waits):
        return []
    # What to resolve inside the server, in one pass: relation oids of the locks, tables the
    # queries name without a schema, and sessions the log names only by their pid.
    oids: dict[int, set[int]] = {}
    unqualified: dict[str, set[str]] = {}
    pids: set[int] = set()
    statements: dict[str, lock_log.StatementTables | None] = {}

    def tables_of(query: str | None) -> lock_log.StatementTables | None:
        if not query:
            return None
        if query not in statements:
            statements[query] = lock_log.statement_tables(query)
        return statements[query]

    def want(database: str | None, query: str | None) -> None:
        parsed = tables_of(query)
        if parsed and database:
            unqualified.setdefault(database, set()).update(t for s, t in parsed.tables if s is None)

    for line, report in deadlocks:
        for edge in report.edges:
            if edge.lock.relation_oid is not None and edge.lock.database_oid is not None:
                oids.setdefault(edge.lock.database_oid, set()).add(edge.lock.relation_oid)
        for pid in report.pids:
            want(line.database, report.queries.get(pid))
            if pid != line.pid and not any(ln.user for ln in batch.lines_of(pid)):
                pids.add(pid)
        context_table = lock_log.context_relation(line.context)
        if context_table and line.database:
            unqualified.setdefault(line.database, set()).add(context_table)
    for line, wait in waits:
        if wait.lock.relation_oid is not None and wait.lock.database_oid is not None:
            oids.setdefault(wait.lock.database_oid, set()).add(wait.lock.relation_oid)
        want(line.database, line.query)
    for line in timeouts:
        want(line.database, line.query)
    names = _resolve(ports, batch.target, batch.node, oids, unqualified, pids)

    def first_table(database: str | None, query: str | None) -> str | None:
        parsed = tables_of(query)
        picked = (parsed.targets or parsed.tables) if parsed else ()
        return names.table(database, *picked[0]) if picked else None

    records: list[HistoryRecord] = []
    patterns: Counter[str] = Counter()
    for line, report in deadlocks:
        data = _event(ports, batch, line, report, names, tables_of, patterns)
        records.append(_record(batch, STREAM, line, data))
    for line in timeouts:
        records.append(
            _record(
                batch,
                TIMEOUTS,
                line,
                {
                    "pid": line.pid,
                    "user_name": line.user,
                    "database": line.database,
                    "application_name": line.application_name,
                    "query": clip(line.query),
                    "node": batch.node,
                    "table_name": first_table(line.database, line.query),
                },
            )
        )
    for line, wait in waits:
        table = names.relation(wait.lock.database_oid, wait.lock.relation_oid) or first_table(
            line.database, line.query
        )
        records.append(
            _record(
                batch,
                WAITS,
                line,
                {
                    "pid": wait.pid,
                    "user_name": line.user,
                    "database": line.database,
                    "application_name": line.application_name,
                    "lock_type": wait.lock.lock_type,
                    "lock_mode": wait.mode,
                    "wait_ms": wait.wait_ms,
                    "table_name": table,
                    "query": clip(line.query),
                    "node": batch.node,
                },
            )
        )
    return records


def _record(batch: _Batch, stream: str, line: LogLine, data: dict[str, Any]) -> HistoryRecord:
    record_id = _record_id(batch.target.target_id, batch.node, line)
    if stream == STREAM:
        data = data | {"deadlock_id": f"dl-{record_id[:12]}"}
    return HistoryRecord(
        stream=stream,
        target_id=batch.target.target_id,
        tenant_id=batch.target.tenant_id,
        at=line.timestamp,
        data=data,
        id=record_id,
    )


# --- one deadlock -----------------------------------------------------------------------------


@dataclass
class Party:
    """One session of a deadlock's cycle."""

    pid: int
    query: str
    user: str | None
    application: str | None
    verb: str | None
    waits_for: str | None  # the table of the lock it waited for
    tables: list[str]


def _event(
    ports: Ports,
    batch: _Batch,
    line: LogLine,
    report: lock_log.DeadlockReport,
    names: _Names,
    tables_of: Any,
    patterns: Counter[str],
) -> dict[str, Any]:
    victim = int(line.pid or 0)
    database = line.database
    unavailable: dict[str, str] = {}
    if names.problem:
        unavailable["affectedTables"] = names.problem
    parties: dict[int, Party] = {}
    for pid in report.pids:
        query = report.queries.get(pid) or (line.query if pid == victim else "") or ""
        parsed = tables_of(query)
        user, app = (
            (line.user, line.application_name) if pid == victim else _who(batch, names, pid, line.timestamp)
        )
        edge = next((e for e in report.edges if e.waiter == pid), None)
        waits_for = names.relation(edge.lock.database_oid, edge.lock.relation_oid) if edge else None
        targets = [names.table(database, s, t) for s, t in (parsed.targets if parsed else ())]
        if waits_for is None and targets:
            waits_for = targets[0]
        if waits_for is None and pid == victim and (ctx := lock_log.context_relation(line.context)):
            waits_for = names.table(database, None, ctx)
        parties[pid] = Party(pid, query, user, app, parsed.verb if parsed else None, waits_for, targets)
    affected: list[str] = []
    for party in parties.values():
        for table in [party.waits_for, *party.tables]:
            if table and table not in affected:
                affected.append(table)
    lock_types = sorted({f"{e.mode} on {e.lock.lock_type}" for e in report.edges})
    users = [p.user for p in parties.values() if p.user]
    missing_users = [str(p.pid) for p in parties.values() if not p.user]
    if missing_users:
        unavailable["involvedUsers"] = (
            f"process(es) {', '.join(missing_users)} wrote nothing else to the log and "
            "had disconnected when it was read"
        )

    waited = [
        w
        for ln in batch.lines_of(victim)
        if ln.timestamp <= line.timestamp
        and (w := lock_log.parse_lock_wait(ln.message))
        and w.event == "deadlock"
    ]
    duration = waited[-1].wait_ms if waited else None
    if duration is None:
        unavailable["deadlockDuration"] = (
            "the victim's log_lock_waits line is not in the log (log_lock_waits off?)"
        )
    survivors = [p for p in parties if p != victim]
    recovered = []
    for pid in survivors:
        for ln in batch.lines_of(pid):
            wait = lock_log.parse_lock_wait(ln.message) if ln.timestamp >= line.timestamp else None
            if wait and wait.event == "acquired":
                recovered.append((ln.timestamp - line.timestamp).total_seconds() * 1000)
                break
    recovery = round(max(recovered), 3) if recovered else None
    if recovery is None:
        unavailable["recoveryTime"] = (
            "no surviving session waited longer than deadlock_timeout, so the log does "
            "not time when it got its lock (at once, as the victim rolled back)"
        )

    fingerprints = [lock_log.query_fingerprint(p.query) for p in parties.values()]
    if all(fingerprints):
        basis = sorted(str(f) for f in fingerprints)
    else:
        basis = sorted(f"{p.verb} {p.waits_for}" for p in parties.values())
    pattern_id = hashlib.sha1("|".join([*basis, *lock_types]).encode()).hexdigest()[:16]
    pattern = " / ".join(sorted({_what(p, report) for p in parties.values()}))
    earlier = ports.history.query(
        STREAM,
        start=line.timestamp - PATTERN_WINDOW,
        end=line.timestamp,
        target_id=batch.target.target_id,
        filters={"pattern_id": pattern_id},
        page_size=1,
    ).total_items
    patterns[pattern_id] += 1
    frequency = earlier + patterns[pattern_id]
    size = len(parties)
    if frequency >= 10 or size >= 4:
        level = "CRITICAL"
    elif frequency >= RECURRING or size >= 3:
        level = "HIGH"
    elif frequency >= 2:
        level = "MEDIUM"
    else:
        level = "LOW"

    victim_party = parties.get(victim)
    others = ", ".join(str(p) for p in survivors) or "none"
    waited_text = f" after waiting {duration:.0f} ms" if duration is not None else ""
    who = (
        f"{victim_party.user or 'unknown user'}, application {victim_party.application or '-'}"
        if victim_party
        else ""
    )
    impact = (
        f"The transaction of process {victim} ({who}) was rolled back{waited_text}: its work is lost unless "
        f"the application retries it; {len(survivors)} other session(s) waited until then."
    )
    if frequency > 1:
        impact += f" The same deadlock occurred {frequency} times in 7 days."
    return {
        "node": batch.node,
        "database_name": database,
        "deadlock_timestamp": _iso(line.timestamp),
        "involved_sessions": list(parties),
        "involved_queries": [clip(p.query) for p in parties.values()],
        "involved_users": list(dict.fromkeys(users)),
        "deadlock_victim_pid": victim,
        "deadlock_resolution": (
            f"PostgreSQL's deadlock detector cancelled process {victim} (SQLSTATE 40P01) and "
            f"rolled back its transaction; process(es) {others} then got their locks."
        ),
        "deadlock_duration": duration,
        "affected_tables": affected,
        "lock_types_involved": lock_types,
        "frequency_score": frequency,
        "prevention_suggestion": prevention_suggestion(report, parties),
        "business_impact": impact,
        "recovery_time": recovery,
        "data_consistency_affected": False,
        "manual_intervention_required": frequency >= RECURRING,
        "severity": level,
        "pattern": pattern,
        "pattern_id": pattern_id,
        "deadlock_graph": {
            "nodes": [
                {
                    "pid": p.pid,
                    "user_name": p.user,
                    "query": clip(p.query),
                    "victim": p.pid == victim,
                    "waits_for_table": p.waits_for,
                }
                for p in parties.values()
            ],
            "edges": [
                {
                    "source": e.waiter,
                    "target": e.holder,
                    "lock_type": e.lock.lock_type,
                    "lock_mode": e.mode,
                    "lock_object": e.lock.text,
                    "table_name": parties[e.waiter].waits_for,
                }
                for e in report.edges
            ],
        },
        "unavailable": unavailable,
    }


def _what(party: Party, report: lock_log.DeadlockReport) -> str:
    """What a session of the cycle did, for the pattern: "update orders", "wait for advisory
    lock 2"."""
    if party.waits_for:
        verb = "lock" if party.verb in (None, "read") else party.verb
        return f"{verb} {party.waits_for}"
    edge = next((e for e in report.edges if e.waiter == party.pid), None)
    if edge is None:
        return "wait for a lock"
    key = edge.lock.advisory_key
    return f"wait for advisory lock {key}" if key else f"wait for a {edge.lock.lock_type} lock"


def _who(batch: _Batch, names: _Names, pid: int, at: datetime) -> tuple[str | None, str | None]:
    """The user and application of a session the deadlock names only by pid: from its own
    log lines, else from pg_stat_activity if it was connected before the deadlock (a later
    backend may have the same pid)."""
    for ln in reversed(batch.lines_of(pid)):
        if ln.user:
            return ln.user, ln.application_name
    user, app, started = names.sessions.get(pid, (None, None, None))
    if user and started is not None and started <= at:
        return user, app
    return None, None


def prevention_suggestion(report: lock_log.DeadlockReport, parties: dict[int, Party]) -> str:
    """A concrete way out of this cycle, from what each session waited for and (so) held."""
    edges = report.edges
    if all(e.lock.lock_type == "advisory" for e in edges):
        keys = [e.lock.advisory_key or "?" for e in edges]
        order = "opposite" if len(edges) == 2 else "different"
        return (
            f"the sessions take advisory locks {' and '.join(keys)} in {order} orders; take advisory locks in "
            "ascending key order, or one lock for the whole unit of work"
        )
    waits = {pid: p.waits_for for pid, p in parties.items()}
    # A session holds what the sessions waiting on it wait for.
    held = {e.holder: waits.get(e.waiter) for e in edges}
    tables = sorted({t for t in waits.values() if t})
    verbs = {p.verb for p in parties.values() if p.verb}
    verb = verbs.pop() if len(verbs) == 1 else "write to"
    if verb == "read":
        verb = "lock"
    if len(tables) >= 2 and all(waits.values()):
        detail = ", ".join(
            f"process {pid} held {held.get(pid) or '?'} and waited for {waits[pid]}" for pid in parties
        )
        if len(parties) == 2:
            return (
                f"both transactions {verb} {tables[0]} and {tables[1]} in opposite orders ({detail}); take locks "
                f"in a consistent order, e.g. always {tables[0]} before {tables[1]}, or lock the rows of both "
                "up front with SELECT ... FOR UPDATE in that order"
            )
        return (
            f"the {len(parties)} transactions {verb} {', '.join(tables)} in different orders ({detail}); take "
            f"locks in one consistent order, e.g. {' before '.join(tables)}"
        )
    if len(tables) == 1:
        table = tables[0]
        if all(e.lock.lock_type == "relation" for e in edges):
            modes = sorted(
                {e.mode for e in edges}, key=lambda m: LOCK_STRENGTH.index(m) if m in LOCK_STRENGTH else -1
            )
            return (
                f"the transactions each hold a lock on {table} and wait for a stronger one ({', '.join(modes)}); "
                f"take the strongest lock first, e.g. LOCK TABLE {table} IN {_mode_words(modes[-1])} MODE at the "
                "start of the transaction"
            )
        return (
            f"the transactions {verb} the same rows of {table} in different orders; touch the rows in one order, "
            f"e.g. lock them first with SELECT ... FOR UPDATE, ordered by their key, before changing them"
        )
    named = f" ({', '.join(tables)})" if tables else ""
    return (
        f"take locks on the same objects{named} in the same order in every transaction, and keep transactions "
        "short so that fewer overlap"
    )


def _mode_words(mode: str) -> str:
    """ "ShareRowExclusiveLock" -> "SHARE ROW EXCLUSIVE"."""
    words, word = [], ""
    for ch in mode.removesuffix("Lock"):
        if ch.isupper() and word:
            words.append(word)
            word = ""
        word += ch
    words.append(word)
    return " ".join(words).upper()


# --- detection -------------------------------------------------------------------------------


def detect(ports: Ports, found: Iterable[Target]) -> dict[str, Any]:
    """Scan every target's log since its last scan (see `scan`); the detection response, snake_case."""
    started = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    totals = {"lock_timeouts_found": 0, "lock_waits_found": 0, "lines_scanned": 0}
    scanned: list[str] = []
    unreachable: dict[str, str] = {}
    notes: list[str] = []
    for target in found:
        result = scan(ports, target)
        events += result["deadlocks"]
        totals["lock_timeouts_found"] += result["lock_timeouts"]
        totals["lock_waits_found"] += result["lock_waits"]
        totals["lines_scanned"] += result["lines"]
        unreachable.update(result["unreachable"])
        notes += result["notes"]
        if not result["unreachable"] or len(result["unreachable"]) < len(log_nodes(target)):
            scanned.append(target.target_id)
    events.sort(key=lambda e: e["deadlock_timestamp"])
    return {
        "detection_id": f"det-{secrets.token_hex(6)}",
        "deadlocks_detected": bool(events),
        "deadlock_count": len(events),
        "detection_time": _iso(started),
        "deadlocks": events,
        "targets_scanned": scanned,
        "targets_unreachable": unreachable,
        "notes": notes,
        **totals,
    }
