"""Locks: who holds what, who waits on whom, and the safe way out.

A *snapshot* of one server is read in one pass of pg_locks joined with pg_stat_activity (plus
one catalog read per database holding relation locks, for the table names), and turned into:

- lock rows (the seed's LockActivity), each with `blockingPid` from pg_blocking_pids();
- the blocking graph: a waiter points at every pid pg_blocking_pids() names; a *root blocker*
  blocks others and waits on nobody; its `blocked_count` is every session below it in the
  tree, however deep (A blocks B, B blocks C: A blocks 2);
- a capture (history stream "locks") keeps the waiters and the blockers with the tree, never
  the granted locks nobody waits for.

Scores (0-100), one formula each, so a number can be traced to what it counts:
- `impact(waiters, seconds)` = 50 * min(1, waiters / 5) + 50 * min(1, seconds / 300): five
  sessions waiting, or five minutes of waiting, each take half of the scale.
- severity of a blocker, after pganalyze's blocking alert (3 or more sessions, 300 s):
  CRITICAL when it blocks >= 3 sessions for >= 300 s, or anything for >= 900 s; HIGH from
  >= 60 s or >= 3 sessions; MEDIUM from >= 10 s or 2 sessions; else LOW.

Terminations never touch what is not a client's session: walsenders, autovacuum workers
preventing wraparound, other background processes, and the platform's own (superuser)
sessions are refused with 409 whatever `force` says.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import audit, auth
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, EngineError, InvalidState, NotFound
from pgfleet.domains import servers
from pgfleet.domains.locks import sql
from pgfleet.ports.history import HistoryRecord

STREAM = "locks"
RESOLUTIONS = "lock_resolutions"
CAPTURE_TTL_SECONDS = 30 * 86400
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
EXCLUSIVE_MODES = frozenset(
    {"RowExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}
)
CANCEL_GRACE_SECONDS = 2.0
CAPTURE_WORKERS = 8


# --- scope -----------------------------------------------------------------------------------


Target = servers.Target
kind_of = servers.kind_of
tenant_scope = auth.tenant_scope


def targets(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None = None,
    *,
    require_running: bool = True,
) -> list[Target]:
    """The servers of a call (the scope rule of seed 003, servers.targets)."""
    return servers.targets(
        ports, principal, target_id, tenant_id, node, require_running=require_running, what="its locks"
    )


# --- snapshots -------------------------------------------------------------------------------


def impact(waiters: int, seconds: float) -> int:
    return round(50 * min(1.0, waiters / 5) + 50 * min(1.0, max(0.0, seconds) / 300))


def severity(blocked: int, seconds: float) -> str:
    if (blocked >= 3 and seconds >= 300) or seconds >= 900:
        return "CRITICAL"
    if seconds >= 60 or blocked >= 3:
        return "HIGH"
    if seconds >= 10 or blocked >= 2:
        return "MEDIUM"
    return "LOW"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _seconds(since: datetime | None, now: datetime) -> float:
    return round(max(0.0, (now - since).total_seconds()), 3) if since else 0.0


def protected_reason(session: dict[str, Any]) -> str | None:
    """Why a session may never be cancelled or terminated by this API, or None."""
    backend = session.get("backend_type") or ""
    query = session.get("query") or ""
    if backend == "walsender":
        return "a walsender (replication or backup stream)"
    if backend == "autovacuum worker" and "to prevent wraparound" in query:
        return "an autovacuum worker preventing transaction ID wraparound"
    if backend and backend != "client backend":
        return f"a {backend} of the server itself"
    if session.get("superuser"):
        return "a session of the platform (a superuser role no customer has)"
    return None


def _names_in(
    session: Any, database: str, oids: set[int], names: dict[tuple[str, int], tuple[str, str, str]]
) -> None:
    for oid, schema, table, relkind in session.fetch_all(sql.RELATIONS, (sorted(oids),)):
        names[(database, int(oid))] = (schema, table, relkind)


def snapshot(ports: Ports, target: Target) -> dict[str, Any]:
    """What the server's locks look like now (see the module docstring), in the capture
    format plus `locks` (every lock row) and `sessions` (pid -> session).

    One session in the server's own database reads the locks (pg_locks is the whole
    server's) and that database's table names; another database holding relation locks costs
    one more short session."""
    home = str(target.server.record.get("database") or "postgres")
    names: dict[tuple[str, int], tuple[str, str, str]] = {}
    oids_by_db: dict[str, set[int]] = {}
    with ports.sql.session(target.target_id, database=home, node=target.node) as session:
        rows = session.fetch_all(sql.LOCKS)
        databases: dict[int, str] = {}
        superusers: set[str] = set()
        for kind, oid, name in session.fetch_all(sql.CATALOG):
            if kind == "database":
                databases[int(oid)] = str(name)
            else:
                superusers.add(str(name))
        for r in rows:
            if r[5] is not None and r[4] in databases:  # relation, tuple, page locks name a relation
                oids_by_db.setdefault(databases[r[4]], set()).add(int(r[5]))
        if home in oids_by_db:
            _names_in(session, home, oids_by_db.pop(home), names)
    for database, oids in oids_by_db.items():
        try:
            with ports.sql.session(target.target_id, database=database, node=target.node) as other:
                _names_in(other, database, oids, names)
        except EngineError:
            continue  # a database dropped or not connectable meanwhile: its names stay unknown
    now = rows[0][-1] if rows else datetime.now(UTC)

    sessions: dict[int, dict[str, Any]] = {}
    locks: list[dict[str, Any]] = []
    blocked_by: dict[int, set[int]] = {}
    for (locktype, mode, granted, pid, db_oid, rel_oid, xid, vxid, user, app, client, datname, state,
         backend, query, xact_start, query_start, state_change, _wait_type, waitstart, blocking, _now) in rows:  # fmt: skip
        sessions.setdefault(pid, {
            "pid": pid, "user_name": user, "application_name": app or "", "client_addr": client,
            "database": datname, "state": state, "backend_type": backend, "query": query or "",
            "xact_start": xact_start, "query_start": query_start, "state_change": state_change,
            "superuser": user in superusers, "locks_held": 0, "exclusive_locks_held": 0,
        })  # fmt: skip
        schema = table = None
        if rel_oid is not None and db_oid in databases:
            schema, table, _kind = names.get((databases[db_oid], int(rel_oid)), (None, None, None))
        if granted:
            sessions[pid]["locks_held"] += 1
            if mode in EXCLUSIVE_MODES:
                sessions[pid]["exclusive_locks_held"] += 1
        else:
            blocked_by.setdefault(pid, set()).update(int(p) for p in blocking or [])
        since = waitstart if not granted else xact_start
        obj = table or xid or vxid or str(rel_oid or "")
        locks.append({
            "lock_id": hashlib.sha1(f"{target.target_id}:{pid}:{locktype}:{obj}:{mode}:{granted}".encode()).hexdigest()[:16],
            "lock_type": locktype, "lock_mode": mode, "granted": bool(granted), "pid": pid,
            "schema_name": schema, "table_name": table,
            "relation_name": f"{schema}.{table}" if table else None,
            "acquired_at": _iso(xact_start) if granted else None,
            "seconds": _seconds(since, now), "blocking_pids": sorted(int(p) for p in blocking or []),
        })  # fmt: skip

    children: dict[int, set[int]] = {}
    for waiter, blocking_pids in blocked_by.items():
        for blocking_pid in blocking_pids:
            children.setdefault(blocking_pid, set()).add(waiter)

    def below(pid: int) -> set[int]:
        seen: set[int] = set()
        stack = list(children.get(pid, ()))
        while stack:
            p = stack.pop()
            if p not in seen and p != pid:
                seen.add(p)
                stack.extend(children.get(p, ()))
        return seen

    wait_seconds = {pid: max((lk["seconds"] for lk in locks if lk["pid"] == pid and not lk["granted"]), default=0.0)
                    for pid in blocked_by}  # fmt: skip
    blockers: list[dict[str, Any]] = []
    for pid in sorted(children):
        tree_below = below(pid)
        seconds = max((wait_seconds.get(p, 0.0) for p in tree_below), default=0.0)
        s = sessions.get(pid) or {"pid": pid, "query": "", "backend_type": None}
        blockers.append({
            "pid": pid, "user_name": s.get("user_name"), "application_name": s.get("application_name", ""),
            "client_addr": s.get("client_addr"), "database": s.get("database"), "state": s.get("state"),
            "backend_type": s.get("backend_type"), "root": pid not in blocked_by, "blocked_count": len(tree_below),
            "blocked_pids": sorted(tree_below), "blocked_by": sorted(blocked_by.get(pid, ())),
            "blocking_seconds": seconds, "severity": severity(len(tree_below), seconds),
            "impact_score": impact(len(tree_below), seconds), "query": s.get("query", ""),
            "locks_held": s.get("locks_held", 0), "exclusive_locks_held": s.get("exclusive_locks_held", 0),
            "last_activity": _iso(s.get("state_change")), "protected": protected_reason(s),
        })  # fmt: skip

    def tree(pid: int, path: frozenset[int]) -> dict[str, Any]:
        return {
            "pid": pid,
            "children": [tree(c, path | {c}) for c in sorted(children.get(pid, ())) if c not in path],
        }

    # A row-lock wait is on a transaction id; the row's table is the one of the tuple lock the
    # waiter holds meanwhile (else the one relation it locks, if only one).
    tuple_tables: dict[int, tuple[str | None, str | None]] = {}
    relation_tables: dict[int, set[tuple[str | None, str | None]]] = {}
    for lk in locks:
        if lk["table_name"] and lk["granted"]:
            if lk["lock_type"] == "tuple":
                tuple_tables[lk["pid"]] = (lk["schema_name"], lk["table_name"])
            relation_tables.setdefault(lk["pid"], set()).add((lk["schema_name"], lk["table_name"]))
    for lk in locks:
        if not lk["granted"] and not lk["table_name"]:
            only = relation_tables.get(lk["pid"], set())
            found = tuple_tables.get(lk["pid"]) or (next(iter(only)) if len(only) == 1 else None)
            if found:
                lk["schema_name"], lk["table_name"] = found
                lk["relation_name"] = f"{found[0]}.{found[1]}"
    by_pid = {b["pid"]: b for b in blockers}
    waiting: list[dict[str, Any]] = []
    for lk in locks:
        if lk["granted"]:
            continue
        s = sessions[lk["pid"]]
        waiting.append({
            "pid": lk["pid"], "user_name": s["user_name"], "application_name": s["application_name"],
            "database": s["database"], "lock_type": lk["lock_type"], "lock_mode": lk["lock_mode"],
            "schema_name": lk["schema_name"], "table_name": lk["table_name"], "wait_seconds": lk["seconds"],
            "blocking_pids": lk["blocking_pids"], "query": s["query"],
        })  # fmt: skip
    for lk in locks:
        blocker = by_pid.get(lk["pid"])
        lk["impact_score"] = (
            blocker["impact_score"]
            if blocker and lk["granted"]
            else impact(1, lk["seconds"])
            if not lk["granted"]
            else 0
        )
    roots = [b for b in blockers if b["root"]]
    return {
        "target_id": target.target_id,
        "tenant_id": target.tenant_id,
        "node": target.node,
        "at": _iso(now),
        "total_locks": len(locks),
        "granted_locks": sum(1 for lk in locks if lk["granted"]),
        "waiting_locks": len(waiting),
        "blocking_sessions": len(roots),
        "blocked_sessions": len(blocked_by),
        "critical_sessions": sum(1 for b in roots if b["severity"] == "CRITICAL"),
        "waiting": waiting,
        "blockers": blockers,
        "tree": [tree(b["pid"], frozenset({b["pid"]})) for b in roots],
        "locks": locks,
        "sessions": sessions,
    }


def snapshots(ports: Ports, found: Iterable[Target]) -> list[dict[str, Any]]:
    """Snapshots of several servers at once (a server that cannot be read is left out and
    named under `unreachable` of the first result's caller)."""
    todo = list(found)
    if len(todo) <= 1:
        return [snapshot(ports, t) for t in todo]
    with ThreadPoolExecutor(max_workers=min(CAPTURE_WORKERS, len(todo))) as pool:
        futures = [pool.submit(snapshot, ports, t) for t in todo]
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except EngineError:
            continue
    return results


def live_snapshot(
    ports: Ports, principal: Principal, target_id: str | None, tenant_id: str | None, node: str | None = None
) -> list[dict[str, Any]]:
    return snapshots(ports, targets(ports, principal, target_id, tenant_id, node))


# --- captures --------------------------------------------------------------------------------


CAPTURED_FIELDS = (
    "node", "total_locks", "granted_locks", "waiting_locks", "blocking_sessions", "blocked_sessions",
    "critical_sessions", "waiting", "blockers", "tree",
)  # fmt: skip


def capture_record(snap: dict[str, Any], capture_id: str) -> HistoryRecord:
    blockers = [
        {k: v for k, v in b.items() if k != "protected"} | {"protected": b["protected"]}
        for b in snap["blockers"]
    ]
    data = {k: snap[k] for k in CAPTURED_FIELDS} | {"capture_id": capture_id, "blockers": blockers}
    return HistoryRecord(
        stream=STREAM,
        target_id=snap["target_id"],
        tenant_id=snap["tenant_id"],
        at=datetime.fromisoformat(snap["at"].replace("Z", "+00:00")),
        data=data,
        ttl_seconds=CAPTURE_TTL_SECONDS,
    )


def capture(
    ports: Ports, found: list[Target], detect: Callable[[Ports, list[Target]], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Snapshot every target and append one record per target to the history store; with
    `detect`, scan the captured servers' new log lines in the same pass (deadlocks, lock
    timeouts, long waits; `schedules.capture`)."""
    capture_id = f"cap-{secrets.token_hex(6)}"
    started = datetime.now(UTC)
    snaps = snapshots(ports, found)
    if snaps:
        ports.history.append_all([capture_record(s, capture_id) for s in snaps])
    # The same pass reads the servers' new log lines: deadlocks, lock timeouts, long waits.
    captured_ids = {s["target_id"] for s in snaps}
    detected = detect(ports, [t for t in found if t.target_id in captured_ids]) if detect else {}
    return {
        "deadlocks_detected": int(detected.get("deadlock_count", 0)),
        "capture_id": capture_id,
        "locks_captured": sum(s["total_locks"] for s in snaps),
        "blocking_locks": sum(s["blocking_sessions"] for s in snaps),
        "critical_locks": sum(s["critical_sessions"] for s in snaps),
        "capture_time": _iso(started),
        "targets_captured": [s["target_id"] for s in snaps],
        "targets_unreachable": sorted({t.target_id for t in found} - {s["target_id"] for s in snaps}),
        "snapshots": snaps,
    }


def captured(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    start: datetime,
    end: datetime,
) -> list[HistoryRecord]:
    """Every capture record in [start, end] the caller may see (one target, or a tenant's)."""
    tenant = tenant_scope(principal, tenant_id)
    if target_id is not None:
        servers.get_visible(ports, principal, kind_of(target_id), target_id)
    return history_of(ports, STREAM, target_id, tenant, start, end)


def resolved_blockers(
    ports: Ports, principal: Principal, target_id: str | None, tenant_id: str | None, lookback: timedelta
) -> list[dict[str, Any]]:
    """Root blockers ended in the last `lookback`: each as the last capture before its end saw
    it (capture format), with `resolution_action`, `resolution_time` and `resolution_reason`."""
    end = datetime.now(UTC)
    tenant = tenant_scope(principal, tenant_id)
    if target_id is not None:
        servers.get_visible(ports, principal, kind_of(target_id), target_id)
    ended = [
        r for r in history_of(ports, RESOLUTIONS, target_id, tenant, end - lookback, end)
        if r.data.get("result") == "SUCCESS" and not r.data.get("dry_run")
    ]  # fmt: skip
    if not ended:
        return []
    captures = history_of(ports, STREAM, target_id, tenant, end - lookback - timedelta(minutes=5), end)
    found = []
    for r in ended:
        seen = [
            (c, b) for c in captures if c.target_id == r.target_id and c.at <= r.at
            for b in c.data.get("blockers", []) if b["pid"] == r.data["pid"] and b.get("root")
        ]  # fmt: skip
        if not seen:
            continue
        capture, blocker = seen[-1]
        tree = next((t for t in capture.data.get("tree", []) if t["pid"] == blocker["pid"]), None)
        found.append({
            **blocker, "target_id": r.target_id, "node": capture.data.get("node"), "tree": tree,
            "resolution_action": r.data["action"], "resolution_time": _iso(r.at), "resolution_reason": r.data.get("reason"),
        })  # fmt: skip
    return found


def history_of(
    ports: Ports, stream: str, target_id: str | None, tenant: str | None, start: datetime, end: datetime
) -> list[HistoryRecord]:
    """Every record of `stream` in [start, end) of the scope, oldest first, read in one pass."""
    records: list[HistoryRecord] = []
    ports.history.query(
        stream, start=start, end=end, target_id=target_id, tenant_id=tenant, page_size=1,
        newest_first=False, visit=records.append,
    )  # fmt: skip
    return records


# --- termination -----------------------------------------------------------------------------


def _still_waiting_on(ports: Ports, target: Target, pid: int) -> list[int]:
    with ports.sql.session(target.target_id, node=target.node) as session:
        return sorted(int(r[0]) for r in session.fetch_all(sql.WAITING_ON, (pid,)))


def _session(ports: Ports, target: Target, pid: int) -> dict[str, Any] | None:
    with ports.sql.session(target.target_id, node=target.node) as session:
        row = session.fetch_one(sql.SESSION, (pid,))
    if row is None:
        return None
    return dict(
        zip(
            ("pid", "user_name", "application_name", "backend_type", "query", "state", "superuser"),
            row,
            strict=True,
        )
    )


def resolution_record(
    target: Target, *, pid: int, action: str, result: str, reason: str, actor: str,
    affected: list[int], dry_run: bool, method: str | None,
) -> HistoryRecord:  # fmt: skip
    return HistoryRecord(
        stream=RESOLUTIONS, target_id=target.target_id, tenant_id=target.tenant_id, at=datetime.now(UTC),
        data={"pid": pid, "action": action, "result": result, "reason": reason, "actor": actor,
              "affected_sessions": affected, "dry_run": dry_run, "node": target.node, "method": method},
        ttl_seconds=CAPTURE_TTL_SECONDS,
    )  # fmt: skip


def terminate_pid(
    ports: Ports, target: Target, pid: int, *, reason: str, dry_run: bool, force: bool, actor: str,
    affected: list[int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Cancel (then, if the waiters stay blocked or `force`, terminate) one session. 404 for a
    pid that is not a session of the server, 409 for a protected one."""
    session = _session(ports, target, pid)
    if session is None:
        raise NotFound(
            f"pid {pid} is not a session of {target.target_id}"
            + (f" node {target.node}" if target.node else "")
        )
    protected = protected_reason(session)
    if protected:
        raise InvalidState(f"pid {pid} is {protected}: it is never terminated", details={"sessionPid": pid})
    if affected is None:
        snap = snapshot(ports, target)
        affected = next((b["blocked_pids"] for b in snap["blockers"] if b["pid"] == pid), [])
    idle = (session.get("state") or "").startswith("idle in transaction")
    if dry_run:
        plan = "terminate it (an idle transaction ignores a cancel)" if idle or force else (
            "cancel its statement, and terminate it if the waiters are still blocked after "
            f"{CANCEL_GRACE_SECONDS:.0f} s")  # fmt: skip
        outcome: dict[str, Any] = {
            "session_pid": pid, "action": "DRY_RUN", "result": "SIMULATED", "method": None,
            "impact_assessment": f"would {plan}; {len(affected)} waiting session(s) would proceed: {affected}; "
            f"its open transaction would roll back ({session.get('state')}: {(session.get('query') or '')[:200]})",
            "affected_sessions": affected,
        }  # fmt: skip
    else:
        method = "TERMINATE"
        with ports.sql.session(target.target_id, node=target.node) as s:
            if not force and not idle:
                s.fetch_one(sql.CANCEL, (pid,))
                method = "CANCEL"
        if method == "CANCEL":
            deadline = time.monotonic() + CANCEL_GRACE_SECONDS
            while time.monotonic() < deadline and _still_waiting_on(ports, target, pid):
                time.sleep(0.1)
        if method == "TERMINATE" or _still_waiting_on(ports, target, pid):
            with ports.sql.session(target.target_id, node=target.node) as s:
                s.fetch_one(sql.TERMINATE, (pid,))
            method = "TERMINATE" if method == "TERMINATE" else "CANCEL_THEN_TERMINATE"
        left = _still_waiting_on(ports, target, pid)
        gone = _session(ports, target, pid) is None
        ok = not left
        outcome = {
            "session_pid": pid, "action": "TERMINATED" if ok else "TERMINATION_FAILED",
            "result": "SUCCESS" if ok else "FAILED", "method": method,
            "impact_assessment": (
                f"{'terminated' if gone else 'cancelled'} ({method.lower().replace('_', ' then ')}); "
                f"{len(affected)} waiting session(s) freed: {affected}; its open transaction rolled back"
                if ok else f"sessions {left} still wait on pid {pid}"),
            "affected_sessions": affected,
        }  # fmt: skip
    ports.history.append_all([
        resolution_record(target, pid=pid, action=outcome["action"], result=outcome["result"], reason=reason,
                          actor=actor, affected=affected, dry_run=dry_run, method=outcome["method"]),
        audit.action_event(action="locks.terminate", resource=f"{target.target_id}/pid/{pid}", target_id=target.target_id,
                           user_id=actor, tenant_id=target.tenant_id, succeeded=outcome["result"] != "FAILED",
                           details={"reason": reason, "dry_run": dry_run, "force": force, "session_pid": pid,
                                    "action": outcome["action"], "method": outcome["method"],
                                    "affected_sessions": affected},
                           retention_days=ports.settings.audit_retention_days),
    ])  # fmt: skip
    return outcome


# --- auto-resolve ----------------------------------------------------------------------------

CONFIG_KIND = "lock_resolve_config"
DEFAULT_CONFIG: dict[str, Any] = {
    "enabled": False,
    "max_blocking_duration": 300,
    "severity_threshold": "HIGH",
    "max_sessions_per_cycle": 1,
    "excluded_users": [],
    "excluded_applications": [],
    "business_hours_only": False,
    "business_hours_timezone": "UTC",
    "business_hours_start": 9,
    "business_hours_end": 17,
    "notification_channels": [],
}


def config_of(ports: Ports, tenant: str) -> dict[str, Any]:
    stored = ports.store.get(CONFIG_KIND, tenant) or {}
    return {**DEFAULT_CONFIG, **{k: v for k, v in stored.items() if k in DEFAULT_CONFIG}}


def save_config(ports: Ports, tenant: str, values: dict[str, Any]) -> None:
    values = {k: values[k] for k in DEFAULT_CONFIG}
    if ports.store.get(CONFIG_KIND, tenant) is None:
        try:
            ports.store.create(CONFIG_KIND, {"id": tenant, "tenant_id": tenant, **values})
            return
        except AlreadyExists:
            pass  # created meanwhile: update it
    ports.store.update(CONFIG_KIND, tenant, values)


def in_business_hours(config: dict[str, Any], now: datetime) -> bool:
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(config["business_hours_timezone"]))
    return local.weekday() < 5 and config["business_hours_start"] <= local.hour < config["business_hours_end"]


def plan_resolution(
    snap: dict[str, Any], config: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(root blockers to end, the others with why not), at most max_sessions_per_cycle,
    worst first."""
    threshold = SEVERITIES.index(config["severity_threshold"])
    chosen: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    roots = sorted(
        (b for b in snap["blockers"] if b["root"]), key=lambda b: (-b["impact_score"], -b["blocking_seconds"])
    )
    for b in roots:
        why = None
        if b["protected"]:
            why = f"protected: {b['protected']}"
        elif b["user_name"] in config["excluded_users"]:
            why = f"user {b['user_name']} is excluded"
        elif b["application_name"] in config["excluded_applications"]:
            why = f"application {b['application_name']!r} is excluded"
        elif b["blocking_seconds"] < config["max_blocking_duration"]:
            why = f"blocking for {b['blocking_seconds']:.0f} s, below {config['max_blocking_duration']} s"
        elif SEVERITIES.index(b["severity"]) < threshold:
            why = f"severity {b['severity']} below {config['severity_threshold']}"
        elif len(chosen) >= config["max_sessions_per_cycle"]:
            why = f"already {len(chosen)} session(s) this cycle (maxSessionsPerCycle)"
        (skipped if why else chosen).append({**b, "skipped_because": why})
    return chosen, skipped


def auto_resolve(
    ports: Ports,
    found: list[Target],
    config: dict[str, Any],
    *,
    dry_run: bool,
    actor: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    planned = executed = terminated = 0
    off_hours = config["business_hours_only"] and not in_business_hours(config, now or datetime.now(UTC))
    for snap in snapshots(ports, found):
        target = next(t for t in found if t.target_id == snap["target_id"])
        chosen, skipped = plan_resolution(snap, config)
        for b in skipped:
            results.append({"session_pid": b["pid"], "target_id": target.target_id, "action": "SKIPPED",
                            "result": "NOT_ELIGIBLE", "impact_assessment": b["skipped_because"], "blocked_sessions_freed": 0})  # fmt: skip
        for b in chosen:
            planned += 1
            if off_hours:
                results.append({"session_pid": b["pid"], "target_id": target.target_id, "action": "SKIPPED",
                                "result": "OUTSIDE_BUSINESS_HOURS", "blocked_sessions_freed": 0,
                                "impact_assessment": "businessHoursOnly: outside business hours, nothing done"})  # fmt: skip
                continue
            try:
                outcome = terminate_pid(
                    ports, target, b["pid"], dry_run=dry_run, force=False, actor=actor, affected=b["blocked_pids"],
                    reason=f"auto-resolve: {b['severity']} blocker of {b['blocked_count']} session(s) for {b['blocking_seconds']:.0f} s",
                )  # fmt: skip
            except (NotFound, InvalidState) as exc:  # ended meanwhile, or not ours to end
                results.append({"session_pid": b["pid"], "target_id": target.target_id, "action": "SKIPPED",
                                "result": "GONE", "impact_assessment": str(exc), "blocked_sessions_freed": 0})  # fmt: skip
                continue
            if not dry_run:
                executed += 1
                terminated += outcome["result"] == "SUCCESS"
            results.append({"session_pid": b["pid"], "target_id": target.target_id, "action": outcome["action"],
                            "result": outcome["result"], "impact_assessment": outcome["impact_assessment"],
                            "blocked_sessions_freed": len(b["blocked_pids"]) if outcome["result"] == "SUCCESS" else 0})  # fmt: skip
    failed = executed - terminated
    overall = "SUCCESS" if failed == 0 else "PARTIAL" if terminated else "FAILED"
    return {
        "resolution_id": f"res-{secrets.token_hex(6)}",
        "actions_planned": planned,
        "actions_executed": executed,
        "sessions_terminated": terminated,
        "resolution_results": results,
        "overall_result": overall,
    }


def recent(
    ports: Ports, stream: str, target_id: str | None, tenant: str | None, hours: float
) -> list[HistoryRecord]:
    end = datetime.now(UTC)
    return history_of(ports, stream, target_id, tenant, end - timedelta(hours=hours), end)
