"""Mitigations of a threat: real, audited, and lifted after a set time.

- BLOCK_SOURCE_DATABASE: the server refuses TCP logins from the address (a pg_hba `reject`
  line before the password line, `Engine.set_blocked_sources`; every node of a cluster);
- BLOCK_SOURCE_API: the API refuses the address before reading its token (403; the deny list
  of pgfleet.core.rate_limits, one cached lookup per request);
- DISABLE_ROLE: `ALTER ROLE ... NOLOGIN` on the server (through the SQL seam), and the role's
  open sessions ended (pg_terminate_backend; on a cluster, the primary's, where writes are);
  lifting gives LOGIN back only if the role had it. A block of a source refuses new logins
  and leaves the open sessions (other roles of the same address may be the platform's). The platform's own roles (the superuser, replication,
  monitoring and every `pgfleet_`/`pg_` role) are refused (422).

A source must be one the threat observed (`indicators.source_ips`), a role one it names
(`indicators.roles`): anything else is a 422. Records are kind `security_mitigation`
(`parent_id` the threat); what is enforced is always recomputed from every ACTIVE record
(the addresses of a server, the API's list), so applying or lifting twice changes nothing.

Each mitigation is lifted at `expires_at` by a one-time EventBridge Scheduler schedule
(`at(...)`, task `security.mitigation_lift`); the minute detection lifts any past due as well
(a schedule that did not fire). Applying and lifting go to the audit trail
(`security.mitigation.apply`, `security.mitigation.lift`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core import rate_limits
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, EngineError, InvalidState, NotFound, ServiceError, ValidationFailed
from pgfleet.core.models import new_id, reserved_role
from pgfleet.domains import clusters, servers
from pgfleet.domains.security import threat_sql, threats
from pgfleet.domains.security.threat_models import MitigationRequest
from pgfleet.ports.metadata import Range
from pgfleet.ports.scheduler import Schedule

KIND = "security_mitigation"
ID_PREFIX = "mit"
LIFT_TASK = "security.mitigation_lift"
SCHEDULE_PREFIX = "pgfleet-security-lift-"
SYSTEM = "system"


def _iso(moment: datetime) -> str:
    return threats.iso(moment)


def view(record: dict[str, Any]) -> dict[str, Any]:
    """A mitigation as the threat lists it (the Mitigation model's fields)."""
    fields = ("threat_id", "action", "target_id", "source_ip", "role", "status", "applied_at", "applied_by",
              "expires_at", "lifted_at", "lifted_by", "description", "sessions_ended")  # fmt: skip
    return {"mitigation_id": record["id"], **{k: record.get(k) for k in fields}}


def _describe(action: str, target_id: str | None, source_ip: str | None, role: str | None, until: str) -> str:
    if action == "BLOCK_SOURCE_DATABASE":
        return f"IP {source_ip} blocked temporarily on {target_id} (pg_hba reject) until {until}"
    if action == "BLOCK_SOURCE_API":
        return f"IP {source_ip} blocked temporarily at the API until {until}"
    return f"Role {role} locked (NOLOGIN) on {target_id} until {until}"


def _active(ports: Ports, filters: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        rows, total = ports.store.page(
            KIND, filters={"status": "ACTIVE", **filters}, page=page, page_size=100
        )
        found += rows
        if page * 100 >= total or not rows:
            return found
        page += 1


def _server(ports: Ports, target_id: str) -> servers.Server:
    server = servers.get(ports, servers.kind_of(target_id), target_id)
    if server is None:
        raise NotFound(f"server {target_id} not found")
    return server


# --- enforcing what the ACTIVE records say ---------------------------------------------------------


def _enforce_database_sources(ports: Ports, target_id: str) -> str:
    addresses = sorted(
        {m["source_ip"] for m in _active(ports, {"action": "BLOCK_SOURCE_DATABASE", "target_id": target_id})}
    )
    server = _server(ports, target_id)
    try:
        if server.kind == clusters.KIND:
            return ports.cluster_engine.set_blocked_sources(target_id, addresses)
        return ports.engine.set_blocked_sources(target_id, addresses)
    except EngineError as exc:
        raise InvalidState(f"client addresses of {target_id} could not be changed: {exc}") from exc


def _enforce_api_sources(ports: Ports, now: datetime) -> str:
    denied: dict[str, float] = {}
    for m in _active(ports, {"action": "BLOCK_SOURCE_API"}):
        until = threats.moment(m["expires_at"]).timestamp()
        denied[m["source_ip"]] = max(denied.get(m["source_ip"], 0.0), until)
    rate_limits.set_denied_sources(ports, denied, _iso(now))
    return f"API refuses: {', '.join(sorted(denied)) or 'none'}"


def _set_login(ports: Ports, target_id: str, role: str, login: bool) -> tuple[bool, int] | None:
    """Set the role's LOGIN; a lock (NOLOGIN) also ends the role's open sessions (on the
    primary of a cluster). Returns whether it could log in before and how many sessions
    were ended (None: no such role)."""
    try:
        with ports.sql.session(target_id) as session:
            row = session.fetch_one(threat_sql.ROLE_LOGIN, (role,))
            if row is None:
                return None
            session.execute(threat_sql.set_login(role, login))
            ended = 0
            if not login:
                found = session.fetch_one(threat_sql.END_ROLE_SESSIONS, (role,))
                ended = int(found[0]) if found else 0
            return bool(row[0]), ended
    except EngineError as exc:
        raise InvalidState(f"role {role} on {target_id} could not be changed: {exc}") from exc


# --- apply ---------------------------------------------------------------------------------------


def check(threat: dict[str, Any], request: MitigationRequest) -> None:
    """422 unless the request names what the threat observed, on a server where it can act."""
    indicators = threat.get("indicators") or {}
    target_id = threat.get("target_id")
    if request.action in ("BLOCK_SOURCE_DATABASE", "BLOCK_SOURCE_API"):
        observed = set(indicators.get("source_ips") or []) | (
            {threat["source_ip"]} if threat.get("source_ip") else set()
        )
        if request.source_ip not in observed:
            raise ValidationFailed(
                f"{request.source_ip} is not a source threat {threat['id']} observed "
                f"({', '.join(sorted(observed)) or 'none'})",
                details={"field": "apply_mitigations.source_ip", "observed": sorted(observed)},
            )
    if request.action in ("BLOCK_SOURCE_DATABASE", "DISABLE_ROLE") and not target_id:
        raise ValidationFailed(
            f"threat {threat['id']} is against the API, not a server: {request.action} has nothing to act on",
            details={"field": "apply_mitigations.action"},
        )
    if request.action == "DISABLE_ROLE":
        role = str(request.role)
        if reserved_role(role):
            raise ValidationFailed(
                f"role {role} is one of the platform's own roles: it is never locked",
                details={"field": "apply_mitigations.role"},
            )
        named = set(indicators.get("roles") or [])
        if role not in named:
            raise ValidationFailed(
                f"role {role} is not one threat {threat['id']} names ({', '.join(sorted(named)) or 'none'})",
                details={"field": "apply_mitigations.role", "roles": sorted(named)},
            )


def apply(
    ports: Ports, by: str, threat: dict[str, Any], request: MitigationRequest, now: datetime | None = None
) -> dict[str, Any]:
    """Apply one mitigation (checked with `check` first) and schedule its lifting."""
    check(threat, request)
    now = now or datetime.now(UTC)
    expires = now + timedelta(seconds=request.duration_seconds)
    target_id = None if request.action == "BLOCK_SOURCE_API" else threat["target_id"]
    record: dict[str, Any] = {
        "id": new_id(ID_PREFIX), "parent_id": threat["id"], "threat_id": threat["id"], "tenant_id": threat["tenant_id"],
        "action": request.action, "target_id": target_id, "source_ip": request.source_ip, "role": request.role,
        "status": "ACTIVE", "created_at": _iso(now), "applied_at": _iso(now), "applied_by": by,
        "expires_at": _iso(expires), "lifted_at": None, "lifted_by": None, "could_login": None,
        "description": _describe(request.action, target_id, request.source_ip, request.role, _iso(expires)),
    }  # fmt: skip
    record = ports.store.create(KIND, record)
    try:
        if request.action == "BLOCK_SOURCE_DATABASE":
            said = _enforce_database_sources(ports, str(target_id))
        elif request.action == "BLOCK_SOURCE_API":
            said = _enforce_api_sources(ports, now)
        else:
            changed = _set_login(ports, str(target_id), str(request.role), False)
            if changed is None:
                raise ValidationFailed(f"role {request.role} does not exist on {target_id}",
                                       details={"field": "apply_mitigations.role"})  # fmt: skip
            could, ended = changed
            record = ports.store.update(KIND, record["id"], {"could_login": could, "sessions_ended": ended},
                                        record["revision"])  # fmt: skip
            said = f"ALTER ROLE {request.role} NOLOGIN on {target_id}, {ended} open sessions ended"
    except ServiceError:
        ports.store.delete(KIND, record["id"])
        if request.action == "BLOCK_SOURCE_DATABASE":
            _enforce_database_sources(ports, str(target_id))
        raise
    name = f"{SCHEDULE_PREFIX}{record['id']}"
    ports.scheduler.put(
        Schedule(name, f"at({expires.strftime('%Y-%m-%dT%H:%M:%S')})",
                 {"task": LIFT_TASK, "mitigation_id": record["id"], "schedule_name": name})
    )  # fmt: skip
    threats.with_mitigation(ports, threat["id"], view(record))
    threats.audit_event(ports, by, threat, "security.mitigation.apply",
                        {"mitigation_id": record["id"], "action": request.action, "source_ip": request.source_ip,
                         "role": request.role, "target_id": target_id, "expires_at": record["expires_at"],
                         "enforced": said})  # fmt: skip
    return record


# --- lift ----------------------------------------------------------------------------------------


def lift(
    ports: Ports, by: str, mitigation: dict[str, Any], reason: str, now: datetime | None = None
) -> dict[str, Any]:
    """Lift an ACTIVE mitigation (a LIFTED one is returned as it is): the record first (so the
    recomputed sets leave it out), then what it enforced."""
    now = now or datetime.now(UTC)
    if mitigation["status"] != "ACTIVE":
        return mitigation
    try:
        lifted = ports.store.update(
            KIND,
            mitigation["id"],
            {"status": "LIFTED", "lifted_at": _iso(now), "lifted_by": by},
            mitigation["revision"],
        )
    except Conflict:
        fresh = ports.store.get(KIND, mitigation["id"])
        if fresh is None or fresh["status"] != "ACTIVE":
            return fresh or mitigation
        return lift(ports, by, fresh, reason, now)
    action, target_id = mitigation["action"], mitigation.get("target_id")
    if action == "BLOCK_SOURCE_DATABASE":
        said = _enforce_database_sources(ports, str(target_id))
    elif action == "BLOCK_SOURCE_API":
        said = _enforce_api_sources(ports, now)
    else:
        others = _active(
            ports, {"action": "DISABLE_ROLE", "target_id": target_id, "role": mitigation["role"]}
        )
        if others:
            said = f"role {mitigation['role']} stays locked by {others[0]['id']}"
        elif mitigation.get("could_login"):
            _set_login(ports, str(target_id), str(mitigation["role"]), True)
            said = f"ALTER ROLE {mitigation['role']} LOGIN on {target_id}"
        else:
            said = f"role {mitigation['role']} could not log in before: left NOLOGIN"
    ports.scheduler.delete(f"{SCHEDULE_PREFIX}{mitigation['id']}")
    threat = ports.store.get(threats.KIND, mitigation["threat_id"])
    if threat is not None:
        threats.with_mitigation(ports, threat["id"], view(lifted))
        threats.audit_event(ports, by, threat, "security.mitigation.lift",
                            {"mitigation_id": mitigation["id"], "action": action, "reason": reason,
                             "enforced": said})  # fmt: skip
    return lifted


def lift_due(ports: Ports, now: datetime | None = None) -> list[str]:
    """Lift every ACTIVE mitigation past its expiry (the safety net of the at() schedules)."""
    now = now or datetime.now(UTC)
    lifted = []
    for mitigation in _active(ports, {"expires_at": Range(high=_iso(now))}):
        try:
            lift(ports, SYSTEM, mitigation, "expired", now)
            lifted.append(mitigation["id"])
        except ServiceError as exc:
            lifted.append(f"{mitigation['id']} not lifted: {exc}")
    return lifted


def scheduled_lift(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """The at() schedule of one mitigation: lift it (it may be lifted already)."""
    mitigation = ports.store.get(KIND, str(detail.get("mitigation_id") or ""))
    name = str(detail.get("schedule_name") or "")
    if mitigation is None:
        if name:
            ports.scheduler.delete(name)
        return [f"{detail.get('mitigation_id')}: no such mitigation"]
    lifted = lift(ports, SYSTEM, mitigation, "expired")
    return [f"{mitigation['id']}: {lifted['status']}"]


def of_threat(ports: Ports, threat_id: str) -> list[dict[str, Any]]:
    return ports.store.every(KIND, parent_id=threat_id)
