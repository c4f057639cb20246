"""The `fact` controls: what the platform knows about itself, read from the metadata store,
the backup engine and the settings, with the facts observed as the evidence.

- backup_encryption: the server's backup repository is encrypted and holds a completed backup;
- backup_verification: a backup of the server was verified (every check passed) within
  `max_age_days`;
- pitr_window: point-in-time recovery reaches `min_days` back from now;
- audit_trail: the API audit trail is on, holds events of the scope from the last day, and
  is kept at least the framework's retention (when the framework names one);
- token_lifetime: the tokens this deployment issues expire within `max_seconds` (tokens of an
  external issuer are the issuer's: NOT_APPLICABLE, say so);
- rbac_roles: only the roles of `unrestricted_roles` hold every permission, and the roles are
  in use: of the callers the audit trail of the scope saw in the last RBAC_USE_DAYS days
  (each event names the caller's roles), at least one worked with a narrower role; a
  trail where every caller held an unrestricted role is a FAIL (no call at all: NOT judged
  on use, the definitions alone decide).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import audit, auth
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.domains import archive, backups, servers
from pgfleet.domains.compliance.catalog import PLATFORM, Control, Framework
from pgfleet.domains.compliance.checks import ERROR, FAIL, NOT_APPLICABLE, PASS, Outcome, iso


def _outcome(control: Control, scope: str, tenant: str, status: str, findings: list[str],
             observed: dict[str, Any], now: datetime) -> Outcome:  # fmt: skip
    evidence = {"source": "fact", "fact": control.fact, "target_id": None if scope == PLATFORM else scope,
                "at": iso(now), "observed": observed}  # fmt: skip
    return Outcome(control.id, scope, tenant, status, findings, evidence)


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 2)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def server_fact(ports: Ports, control: Control, target: servers.Target) -> Outcome:
    now = datetime.now(UTC)
    record = target.server.record
    tenant, scope = target.tenant_id, target.target_id
    stanza = archive.service.stanza_of(record)
    rule = control.rule
    if control.fact == "backup_encryption":
        repository = ports.backup_engine.repository(stanza)
        latest = archive.records.latest_completed(ports, scope)
        observed = {"stanza": stanza, "repository": repository, "latest_backup_id": latest and latest["id"],
                    "latest_backup_finished_at": latest and latest.get("finished_at"),
                    "latest_backup_encrypted": latest and bool(latest.get("encrypted"))}  # fmt: skip
        words = repository.lower()
        findings = []
        if "not encrypted" in words or "encrypted" not in words:
            findings.append(f"the backup repository of {scope} is not encrypted ({repository})")
        if latest is None:
            findings.append(f"{scope} has no completed backup")
        elif not latest.get("encrypted"):
            findings.append(f"backup {latest['id']} is not encrypted")
        return _outcome(control, scope, tenant, FAIL if findings else PASS, findings, observed, now)
    if control.fact == "backup_verification":
        days = int(rule["max_age_days"])
        verified = backups.latest_verified(ports, scope)
        observed = {"max_age_days": days, "verification_id": verified and verified["id"],
                    "backup_id": verified and verified["backup_id"], "finished_at": verified and verified["finished_at"]}  # fmt: skip
        if verified is None:
            return _outcome(
                control, scope, tenant, FAIL, [f"no backup of {scope} was ever verified"], observed, now
            )
        age = now - _parse(verified["finished_at"])
        observed["age_days"] = _days(age)
        if age > timedelta(days=days):
            finding = (
                f"the last verified backup of {scope} was verified {_days(age)} days ago (more than {days})"
            )
            return _outcome(control, scope, tenant, FAIL, [finding], observed, now)
        return _outcome(control, scope, tenant, PASS, [], observed, now)
    if control.fact == "pitr_window":
        days = int(rule["min_days"])
        try:
            window = ports.backup_engine.restorable_window(stanza)
        except EngineError as exc:
            observed = {"stanza": stanza, "min_days": days, "error": str(exc)}
            return _outcome(
                control, scope, tenant, ERROR, [f"the restorable window cannot be read: {exc}"], observed, now
            )
        observed = {"stanza": stanza, "min_days": days, "earliest": window and iso(window.earliest),
                    "latest": window and iso(window.latest)}  # fmt: skip
        if window is None:
            return _outcome(
                control, scope, tenant, FAIL, [f"{scope} has no restorable window (no backup)"], observed, now
            )
        reach = now - window.earliest
        observed["reaches_back_days"] = _days(reach)
        if reach < timedelta(days=days):
            finding = f"point-in-time recovery of {scope} reaches {_days(reach)} days back (less than {days})"
            return _outcome(control, scope, tenant, FAIL, [finding], observed, now)
        return _outcome(control, scope, tenant, PASS, [], observed, now)
    raise ValueError(f"control {control.id}: fact {control.fact!r} is not a server fact")


RBAC_USE_DAYS = 7


def _callers_by_role(ports: Ports, tenant: str | None, now: datetime) -> dict[str, int]:
    """Per role, how many distinct callers (token subjects) the audit trail of the scope saw
    with it in the last RBAC_USE_DAYS days."""
    users: dict[str, set[str]] = {}

    def visit(record: Any) -> None:
        data = record.data
        for role in (data.get("details") or {}).get("roles") or ():
            users.setdefault(role, set()).add(data.get("user_id") or audit.ANONYMOUS)

    ports.history.query(audit.STREAM, start=now - timedelta(days=RBAC_USE_DAYS), end=now, tenant_id=tenant,
                        page_size=1, visit=visit)  # fmt: skip
    return {role: len(names) for role, names in sorted(users.items())}


def platform_fact(ports: Ports, control: Control, framework: Framework, tenant: str) -> Outcome:
    now = datetime.now(UTC)
    settings = ports.settings
    if control.fact == "audit_trail":
        scope_tenant = None if tenant == auth.PLATFORM else tenant
        recent = ports.history.query(audit.STREAM, start=now - timedelta(days=1), end=now, tenant_id=scope_tenant,
                                     page_size=1)  # fmt: skip
        newest = recent.items[0].data if recent.items else None
        wanted = framework.audit_retention_days
        observed = {"api_middleware": settings.api_middleware, "audit_retention_days": settings.audit_retention_days,
                    "framework_retention_days": wanted, "framework_retention_basis": framework.audit_retention_basis,
                    "events_last_24h": recent.total_items,
                    "newest_event": newest and {k: newest.get(k) for k in ("event_id", "timestamp", "action")}}  # fmt: skip
        findings = []
        if not settings.api_middleware:
            findings.append("the API middleware is off (PGFLEET_API_MIDDLEWARE): API calls are not audited")
        if not recent.total_items:
            findings.append("the audit trail holds no event of the last 24 hours for this scope")
        if wanted is not None and settings.audit_retention_days < wanted:
            findings.append(f"audit events are kept {settings.audit_retention_days} days; {framework.key} asks "
                            f"{wanted} ({framework.audit_retention_basis})")  # fmt: skip
        return _outcome(control, PLATFORM, tenant, FAIL if findings else PASS, findings, observed, now)
    if control.fact == "token_lifetime":
        limit = int(control.rule["max_seconds"])
        if settings.auth_mode != "local":
            observed = {"auth_mode": settings.auth_mode, "issuer": settings.jwt_issuer}
            finding = (
                f"tokens are issued by {settings.jwt_issuer}: their lifetime is the issuer's, not pgfleet's"
            )
            return _outcome(control, PLATFORM, tenant, NOT_APPLICABLE, [finding], observed, now)
        observed = {"auth_mode": "local", "token_ttl_seconds": auth.TOKEN_TTL_SECONDS, "max_seconds": limit}
        if auth.TOKEN_TTL_SECONDS > limit:
            finding = f"tokens live {auth.TOKEN_TTL_SECONDS} s; the rule asks at most {limit} s"
            return _outcome(control, PLATFORM, tenant, FAIL, [finding], observed, now)
        return _outcome(control, PLATFORM, tenant, PASS, [], observed, now)
    if control.fact == "rbac_roles":
        allowed = set(control.rule["unrestricted_roles"])
        roles = {role: sorted(perms) for role, perms in auth.ROLE_PERMISSIONS.items()}
        everything = sorted(r for r, perms in auth.ROLE_PERMISSIONS.items() if auth.ALL in perms)
        findings = [f"role {r} holds every permission" for r in everything if r not in allowed]
        callers = _callers_by_role(ports, None if tenant == auth.PLATFORM else tenant, now)
        narrower = {r: n for r, n in callers.items() if r not in allowed}
        if callers and not narrower:
            findings.append(f"every caller of the last {RBAC_USE_DAYS} days held an unrestricted role "
                            f"({', '.join(sorted(callers))}): no narrower role is in use")  # fmt: skip
        seen: dict[str, Any] = {
            "roles": roles,
            "unrestricted_roles": everything,
            "platform_roles": sorted(auth.PLATFORM_ROLES),
            "callers_by_role": callers,
            "use_window_days": RBAC_USE_DAYS,
        }
        return _outcome(control, PLATFORM, tenant, FAIL if findings else PASS, findings, seen, now)
    raise ValueError(f"control {control.id}: fact {control.fact!r} is not a platform fact")
