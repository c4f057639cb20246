"""Snapshots and captures rendered as the seed's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgfleet.core.paging import Page, PageQuery
from pgfleet.domains.locks import service
from pgfleet.domains.locks.models import (
    BlockingSession,
    BlockingSessionsResponse,
    BlockingSessionSummary,
    LockActivity,
    LockActivityResponse,
    LockActivitySummary,
)
from pgfleet.ports.history import HistoryRecord

ESCALATION = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}


def recommended_action(b: dict[str, Any]) -> str:
    waiters = f"{b['blocked_count']} session(s) wait on it"
    if b.get("protected"):
        return f"{waiters}, but it is {b['protected']}: it is never terminated; find what it waits for itself"
    if (b.get("state") or "").startswith("idle in transaction"):
        return (
            f"{waiters} while it sits idle in a transaction for {b['blocking_seconds']:.0f} s: terminate it "
            "(a cancel cannot end an idle transaction) and set idle_in_transaction_session_timeout for its role"
        )
    if b["severity"] in ("HIGH", "CRITICAL"):
        return (
            f"{waiters} for {b['blocking_seconds']:.0f} s: cancel its statement "
            f"(POST .../blocking-sessions/{b['pid']}/terminate), which terminates it if the waiters stay blocked"
        )
    return f"{waiters} for {b['blocking_seconds']:.0f} s: watch it; it is below the HIGH severity threshold"


def _subtree(tree: list[dict[str, Any]], pid: int) -> dict[str, Any] | None:
    for node in tree:
        if node["pid"] == pid:
            return node
        found = _subtree(node["children"], pid)
        if found is not None:
            return found
    return None


def blocking_sessions(
    snaps: list[dict[str, Any]],
    severity: str | None,
    min_duration: float | None,
    roots_only: bool = True,
    resolved: list[dict[str, Any]] | None = None,
) -> BlockingSessionsResponse:
    items: list[BlockingSession] = []
    # Ended blockers as their last capture saw them, as one more "snapshot" each.
    ended = [
        {"target_id": b["target_id"], "node": b.get("node"), "blockers": [b], "blocked_sessions": 0,
         "tree": [b["tree"]] if b.get("tree") else []}
        for b in resolved or []
    ]  # fmt: skip
    for snap in [*snaps, *ended]:
        for b in snap["blockers"]:
            if roots_only and not b["root"]:
                continue
            if severity is not None and b["severity"] != severity:
                continue
            if min_duration is not None and b["blocking_seconds"] < min_duration:
                continue
            tree = _subtree(snap["tree"], b["pid"]) or {"pid": b["pid"], "children": []}
            items.append(
                BlockingSession.model_validate(
                    {
                        "session_id": f"{snap['target_id']}:{snap.get('node') or 'primary'}:{b['pid']}",
                        "target_id": snap["target_id"],
                        "node": snap.get("node"),
                        "session_pid": b["pid"],
                        "user_name": b["user_name"],
                        "database_name": b["database"],
                        "application_name": b["application_name"] or "",
                        "client_addr": b.get("client_addr"),
                        "session_state": b["state"],
                        "blocked_sessions_count": b["blocked_count"],
                        "total_locks_held": b["locks_held"],
                        "exclusive_locks_held": b["exclusive_locks_held"],
                        "blocking_duration": b["blocking_seconds"],
                        "blocking_severity": b["severity"],
                        "impact_score": b["impact_score"],
                        "auto_kill_eligible": not b.get("protected")
                        and b["root"]
                        and ESCALATION[b["severity"]] >= 2
                        and not b.get("resolution_action"),
                        "escalation_level": ESCALATION[b["severity"]],
                        "current_query": b["query"] or "",
                        "last_activity": b.get("last_activity"),
                        "recommended_action": recommended_action(b),
                        "blocked_pids": b["blocked_pids"],
                        "tree": tree,
                        "resolution_action": b.get("resolution_action"),
                        "resolution_time": b.get("resolution_time"),
                        "resolution_reason": b.get("resolution_reason"),
                    }
                )  # fmt: skip
            )
    items.sort(key=lambda i: (-i.impact_score, -i.blocking_duration))
    durations = [i.blocking_duration for i in items]
    summary = BlockingSessionSummary(
        total_blocking_sessions=len(items),
        critical_sessions=sum(1 for i in items if i.blocking_severity == "CRITICAL"),
        high_severity_sessions=sum(1 for i in items if i.blocking_severity == "HIGH"),
        total_blocked_sessions=sum(s["blocked_sessions"] for s in snaps),
        average_blocking_duration=round(sum(durations) / len(durations), 3) if durations else 0.0,
        auto_resolution_candidates=sum(1 for i in items if i.auto_kill_eligible),
    )
    return BlockingSessionsResponse(blocking_sessions=items, summary=summary)


def live_rows(snap: dict[str, Any]) -> list[dict[str, Any]]:
    by_pid = snap["sessions"]
    rows = []
    for lk in snap["locks"]:
        s = by_pid[lk["pid"]]
        rows.append({
            "lock_id": lk["lock_id"], "target_id": snap["target_id"], "node": snap.get("node"),
            "lock_type": lk["lock_type"], "lock_mode": lk["lock_mode"], "relation_name": lk["relation_name"],
            "schema_name": lk["schema_name"], "table_name": lk["table_name"], "session_pid": lk["pid"],
            "user_name": s["user_name"], "application_name": s["application_name"], "client_addr": s["client_addr"],
            "query_text": s["query"], "lock_acquired_time": lk["acquired_at"], "lock_duration": lk["seconds"],
            "lock_granted": lk["granted"], "blocking_pid": (lk["blocking_pids"] or [None])[0],
            "impact_score": lk["impact_score"],
        })  # fmt: skip
    return rows


def captured_rows(
    record: HistoryRecord, resolutions: dict[tuple[str, int], HistoryRecord]
) -> list[dict[str, Any]]:
    """A capture's waiters and blockers as lock rows (a capture keeps no uncontended lock)."""
    data, at = record.data, record.at.isoformat().replace("+00:00", "Z")
    rows = []
    for w in data.get("waiting", []):
        rows.append({
            "lock_id": f"{data['capture_id']}:{w['pid']}:{w['lock_type']}:{w['lock_mode']}", "target_id": record.target_id,
            "node": data.get("node"), "lock_type": w["lock_type"], "lock_mode": w["lock_mode"],
            "relation_name": f"{w['schema_name']}.{w['table_name']}" if w.get("table_name") else None,
            "schema_name": w.get("schema_name"), "table_name": w.get("table_name"), "session_pid": w["pid"],
            "user_name": w.get("user_name"), "application_name": w.get("application_name") or "",
            "query_text": w.get("query") or "", "lock_duration": w["wait_seconds"], "lock_granted": False,
            "blocking_pid": (w.get("blocking_pids") or [None])[0], "impact_score": service.impact(1, w["wait_seconds"]),
            "captured_at": at,
        })  # fmt: skip
    for b in data.get("blockers", []):
        resolution = resolutions.get((str(record.target_id), int(b["pid"])))
        rows.append({
            "lock_id": f"{data['capture_id']}:{b['pid']}:held", "target_id": record.target_id, "node": data.get("node"),
            "lock_type": "transaction-held", "lock_mode": f"{b['locks_held']} held ({b['exclusive_locks_held']} exclusive)",
            "session_pid": b["pid"], "user_name": b.get("user_name"), "application_name": b.get("application_name") or "",
            "query_text": b.get("query") or "", "lock_duration": b["blocking_seconds"], "lock_granted": True,
            "blocking_pid": (b.get("blocked_by") or [None])[0], "impact_score": b["impact_score"], "captured_at": at,
            "resolution_action": resolution.data["action"] if resolution else None,
            "resolution_time": resolution.at.isoformat().replace("+00:00", "Z") if resolution else None,
        })  # fmt: skip
    return rows


def activity(
    snaps: list[dict[str, Any]],
    history: list[HistoryRecord],
    resolutions: list[HistoryRecord],
    *,
    lock_type: str | None,
    lock_mode: str | None,
    include_resolved: bool,
    query: PageQuery,
    since: datetime | None = None,
) -> LockActivityResponse:
    resolved = {
        (str(r.target_id), int(r.data["pid"])): r for r in resolutions if r.data.get("result") == "SUCCESS"
    }
    rows = [row for snap in snaps for row in live_rows(snap)]
    for record in history:
        rows.extend(captured_rows(record, resolved))
    if lock_type:
        rows = [r for r in rows if r["lock_type"] == lock_type]
    if lock_mode:
        rows = [r for r in rows if r["lock_mode"] == lock_mode]
    if not include_resolved:
        rows = [r for r in rows if not r.get("resolution_action")]
    rows.sort(key=lambda r: (-r["impact_score"], r["lock_granted"], -r["lock_duration"]))
    durations = [r["lock_duration"] for r in rows]
    blocking_pids = {(s["target_id"], b["pid"]) for s in snaps for b in s["blockers"]}
    summary = LockActivitySummary(
        total_locks=len(rows),
        waiting_locks=sum(1 for r in rows if not r["lock_granted"]),
        blocking_locks=sum(
            1
            for r in rows
            if r["lock_granted"]
            and ((r["target_id"], r["session_pid"]) in blocking_pids or r.get("captured_at"))
        ),
        average_duration=round(sum(durations) / len(durations), 3) if durations else 0.0,
        max_duration=max(durations, default=0.0),
        critical_locks=sum(1 for r in rows if r["impact_score"] >= 75),
    )
    page = Page.of(
        [LockActivity.model_validate(r) for r in rows[query.offset : query.offset + query.page_size]],
        len(rows),
        query,
    )
    return LockActivityResponse(locks=page.items, summary=summary, pagination=page.pagination)
