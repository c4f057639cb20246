"""`POST /api/v1/performance/connections/configure`: max_connections and a PgBouncer in front
of a server (an instance, or a cluster's primary), as one Operation (pooling_workflows).

max_connections (the rule, checked before anything changes, 422 naming the limit):
- at least MIN_CLIENT_SLOTS (10) + SUPERUSER_RESERVED (3, PostgreSQL's default
  superuser_reserved_connections, which the platform's own sessions use);
- at most one connection per 10 MB of the server's memory (`memory` of the instance or
  cluster record), the engine's own sizing rule (each backend needs its work_mem and
  catalog caches);
- when a pooler is on, large enough for its pool (defaultPoolSize + reservePoolSize, and one
  connection for PgBouncer's auth_query lookups) plus the reserved slots;
- on a cluster it can only be raised (Patroni never lowers it on a running cluster, so that
  a standby can always start).
It is stored as the server's `max_connections` setting and applied with a planned restart.

The pooler: one PgBouncer per server on a port reserved like a server's (core.port_allocation),
on the engine host only, serving the server's application database. Clients authenticate with
SCRAM; PgBouncer looks their secret up through the role POOLER_ROLE, whose only privilege is
EXECUTE on a SECURITY DEFINER function (POOLER_SCHEMA.user_lookup) returning usename/passwd
from pg_shadow for non-superuser roles only (PgBouncer's documented auth_query set-up), so a
superuser cannot log in through the pooler. The role's password is in Secrets Manager. The
record keeps `pooler` (desired and observed: enabled, port, pool mode and sizes, status and
why); the instance and cluster objects show it. Reconcile (`reconcile_poolers`) starts a
pooler that should run but does not, follows a cluster's primary, stops the pooler of a
stopped server, and removes poolers whose server is gone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as token_source
from typing import Any
from urllib.parse import quote

from pgfleet.core import operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, PgfleetError, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.domains import clusters, instances, servers
from pgfleet.domains.performance.pooling_models import ConnectionConfigureRequest, ConnectionConfigureResponse
from pgfleet.domains.servers import Server
from pgfleet.ports.metadata import Update
from pgfleet.ports.pooler import PoolerSpec

CONFIGURE = "performance.connections.configure"
POOLER_ROLE = "pgfleet_pooler"
POOLER_SCHEMA = "pgfleet_pooler"
AUTH_QUERY = "SELECT uname, phash FROM pgfleet_pooler.user_lookup($1)"  # POOLER_SCHEMA
SUPERUSER_RESERVED = 3
MIN_CLIENT_SLOTS = 10
MB_PER_CONNECTION = 10
# The engine's default when no max_connections is set (adapters/engines/local/tuning.py).
DEFAULT_FLOOR, DEFAULT_CEILING = 20, 500


def secret_name(server_id: str) -> str:
    return f"poolers/{server_id}/{POOLER_ROLE}"


def port_owner(server_id: str) -> str:
    return f"{server_id}/pooler"


def current_max_connections(record: dict[str, Any]) -> int:
    """max_connections as the server runs with it: its setting, else the engine's sizing."""
    value = (record.get("settings") or {}).get("max_connections")
    if value is not None:
        return int(value)
    return min(DEFAULT_CEILING, max(DEFAULT_FLOOR, int(record["memory"]) // MB_PER_CONNECTION))


def max_connections_bounds(record: dict[str, Any], pool: int = 0) -> tuple[int, int]:
    """(lowest, highest) max_connections the server may have (see the module's rule)."""
    lowest = max(MIN_CLIENT_SLOTS, pool) + SUPERUSER_RESERVED
    return lowest, int(record["memory"]) // MB_PER_CONNECTION


def backend(server: Server) -> dict[str, Any]:
    """Where the pooler connects: the instance, or the cluster's current primary."""
    if server.kind == clusters.KIND:
        nodes = server.record.get("nodes") or []
        primary = next((n for n in nodes if n["id"] == server.record.get("primary")), None)
        if primary is None:
            raise EngineError(f"cluster {server.id} has no known primary to pool connections to")
        return dict(primary["endpoint"])
    return dict(server.record["endpoint"])


def app_secret_name(server: Server) -> str:
    if server.kind == clusters.KIND:
        return clusters.secret_name(server.record)
    return instances.secret_name(server.record)


def pooler_uri(server: Server, pooler: dict[str, Any], password: str) -> str:
    record = server.record
    return (
        f"postgresql://{quote(record['username'])}:{quote(password, safe='')}@{pooler['host']}:{pooler['port']}"
        f"/{quote(record['database'])}"
        + (f"?{instances.tls_query()}" if str(record.get("version")) in instances.tls_majors() else "")
    )


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores (RFC 5803), computed here so the password
    itself never reaches the server (nor its log)."""
    salt = token_source.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def pooler_spec(ports: Ports, server: Server) -> PoolerSpec:
    pooler = server.record["pooler"]
    password = ports.secrets.get(secret_name(server.id))
    if not password:
        raise EngineError(f"the password of {POOLER_ROLE} for {server.id} is missing from Secrets Manager")
    target = backend(server)
    return PoolerSpec(
        server_id=server.id, port=int(pooler["port"]), backend_host=target["host"], backend_port=int(target["port"]),
        database=server.record["database"], pool_mode=pooler["pool_mode"],
        default_pool_size=int(pooler["default_pool_size"]), max_client_connections=int(pooler["max_client_connections"]),
        reserve_pool_size=int(pooler.get("reserve_pool_size") or 0), auth_user=POOLER_ROLE, auth_password=password,
        auth_query=AUTH_QUERY,
    )  # fmt: skip


def set_pooler(ports: Ports, kind: str, server_id: str, **changes: Any) -> dict[str, Any] | None:
    """Merge `changes` into the record's `pooler` (None removes it). Returns the pooler."""
    record = ports.store.get(kind, server_id)
    if record is None:
        return None
    pooler = None if changes.get("remove") else {**(record.get("pooler") or {}), **changes}
    ports.store.update(kind, server_id, {"pooler": pooler, "updated_at": utcnow_iso()})
    return pooler


# --- the request -----------------------------------------------------------------------------


def configure(
    ports: Ports, principal: Principal, body: ConnectionConfigureRequest
) -> ConnectionConfigureResponse:
    """Check the request against the server and hand it to the worker (202)."""
    (target,) = servers.targets(ports, principal, body.target_id, None, require_running=False)
    server = target.server
    record = server.record
    if record.get("status") != "running" or record.get("desired_state", "running") != "running":
        raise InvalidState(
            f"{server.kind} {server.id} is {record.get('status')}: connections and its pooler can be configured "
            "only while it runs (start it first)",
            details={"status": record.get("status")},
        )
    wanted = body.pooler_configuration
    enabling = wanted is not None and wanted.enabled
    # The pool, and the connection PgBouncer's auth_query lookups use.
    pool = wanted.default_pool_size + wanted.reserve_pool_size + 1 if enabling and wanted else 0
    existing = record.get("pooler") or None
    if not enabling and wanted is None and existing:
        pool = int(existing["default_pool_size"]) + int(existing.get("reserve_pool_size") or 0) + 1
    current = current_max_connections(record)
    new_max = body.max_connections
    lowest, highest = max_connections_bounds(record, pool)
    if new_max is not None:
        if not lowest <= new_max <= highest:
            raise ValidationFailed(
                f"maxConnections {new_max} is outside what {server.kind} {server.id} can hold: between {lowest} "
                f"(10 client slots or the pool, + {SUPERUSER_RESERVED} reserved for superusers) and {highest} (one "
                f"per {MB_PER_CONNECTION} MB of its {record['memory']} MB)",
                details={"field": "maxConnections", "minimum": lowest, "maximum": highest, "memoryMb": record["memory"]},
            )  # fmt: skip
        if server.kind == clusters.KIND and new_max < current:
            raise ValidationFailed(
                f"maxConnections of a cluster can only be raised (now {current}): a standby cannot run with less "
                "than its primary, and Patroni never lowers it on a running cluster",
                details={"field": "maxConnections", "minimum": current},
            )
    effective = new_max if new_max is not None else current
    if enabling and pool + SUPERUSER_RESERVED > effective:
        raise ValidationFailed(
            f"a pool of {pool} server connections (defaultPoolSize + reservePoolSize + 1 for the auth lookups) does not fit in max_connections "
            f"{effective} less {SUPERUSER_RESERVED} reserved: at most {effective - SUPERUSER_RESERVED}",
            details={
                "field": "poolerConfiguration.defaultPoolSize",
                "maximum": effective - SUPERUSER_RESERVED,
            },
        )
    changes: dict[str, Any] = {}
    restart = new_max is not None and new_max != current
    if restart:
        changes["settings"] = {**(record.get("settings") or {}), "max_connections": str(new_max)}
    pooler: dict[str, Any] | None = existing
    reserved: int | None = None
    if wanted is not None and wanted.enabled:
        port = existing["port"] if existing else None
        if port is None:
            (reserved,) = ports_allocation.reserve(ports, port_owner(server.id))
            port = reserved
        pooler = {
            "enabled": True, "host": ports.pooler.host, "port": port, "pool_mode": wanted.pool_mode,
            "default_pool_size": wanted.default_pool_size, "max_client_connections": wanted.max_client_connections,
            "reserve_pool_size": wanted.reserve_pool_size, "database": record["database"], "status": "starting",
            "status_reason": f"configure requested by {principal.sub or 'a user'}; waiting for the worker",
        }  # fmt: skip
        changes["pooler"] = pooler
    elif wanted is not None and existing:
        pooler = None
        changes["pooler"] = {
            **existing,
            "enabled": False,
            "status": "removing",
            "status_reason": "removal requested",
        }
    params = {
        "kind": server.kind, "max_connections": new_max if restart else None, "previous_max_connections": current,
        "pooler": "on" if enabling else ("off" if wanted is not None else None),
    }  # fmt: skip
    try:
        if restart:
            resources.begin(
                ports, principal, server.rtype, record, action=f"max_connections {current} -> {new_max}",
                transitional="restarting", workflow=CONFIGURE, params=params, changes=changes,
            )  # fmt: skip
            op_id = (ports.store.get(server.kind, server.id) or {}).get("operation_id")
        else:
            op = operations.new_operation(CONFIGURE, server.id, record["tenant_id"], params)
            update = {**changes, "operation_id": op["id"], "updated_at": utcnow_iso()}
            operations.submit_with(
                ports, Update(server.kind, server.id, update, expected_revision=record["revision"]), op
            )
            op_id = op["id"]
    except Exception:
        if reserved is not None:
            ports_allocation.release(ports, reserved, port_owner(server.id))
        raise
    credentials = None
    if enabling and pooler is not None:
        password = ports.secrets.get(app_secret_name(server)) or ""
        credentials = {"username": record["username"], "pooler_uri": pooler_uri(server, pooler, password)}
    return ConnectionConfigureResponse.model_validate({
        "target_id": server.id, "operation_id": op_id, "max_connections": new_max if new_max is not None else None,
        "restart_required": restart, "pooler": pooler if enabling else None, "credentials": credentials,
    })  # fmt: skip


# --- removal and reconcile ---------------------------------------------------------------------


def remove_pooler(ports: Ports, kind: str, server_id: str) -> str:
    """Stop and remove the pooler of a server, release its port and its role's secret.
    Idempotent (the cascade of a delete, a pooler turned off, an orphan found by reconcile)."""
    record = ports.store.get(kind, server_id) if kind else None
    said = ports.pooler.stop(server_id, remove=True)
    port = ((record or {}).get("pooler") or {}).get("port")
    if port is not None:
        ports_allocation.release(ports, int(port), port_owner(server_id))
    ports.secrets.delete(secret_name(server_id))
    if record is not None and record.get("pooler") is not None:
        set_pooler(ports, kind, server_id, remove=True)
    return said


def _reconcile_one(ports: Ports, server: Server) -> str | None:
    record = server.record
    pooler = record.get("pooler")
    if not pooler or not pooler.get("enabled"):
        return None
    op = ports.store.get(operations.KIND, record.get("operation_id") or "")
    if op is not None and op["status"] not in operations.TERMINAL and op["type"] == CONFIGURE:
        return None  # the configure operation is at work on it
    state = ports.pooler.state(server.id)
    now = utcnow_iso()
    if record.get("status") in ("stopped", "paused", "failed") or record.get("desired_state") in (
        "stopped",
        "paused",
    ):
        if not state.running and pooler.get("status") == "stopped":
            return None
        said = ports.pooler.stop(server.id)
        reason = f"reconcile at {now}: the {server.kind} is {record.get('status')}; {said}"
        set_pooler(ports, server.kind, server.id, status="stopped", status_reason=reason)
        return f"{server.id}: {reason}"
    if record.get("status") != "running":
        return None  # restarting, resizing...: the pooler waits for the server
    try:
        said = ports.pooler.configure(pooler_spec(ports, server))
    except PgfleetError as exc:
        reason = f"reconcile at {now}: pgbouncer could not be started: {exc}"
        set_pooler(ports, server.kind, server.id, status="failed", status_reason=reason)
        return f"{server.id}: {reason}"
    if state.running and "already" in said and pooler.get("status") == "running":
        return None
    why = "was not running" if not state.running else "configuration changed"
    reason = f"reconcile at {now}: pgbouncer {why} ({state.reason}); {said}"
    set_pooler(ports, server.kind, server.id, status="running", status_reason=reason)
    return f"{server.id}: {reason}"


def reconcile_poolers(ports: Ports) -> list[str]:
    """Every pooler back to its desired state, saying why (the reconcile schedule calls it)."""
    actions: list[str] = []
    wanted: set[str] = set()
    for server in servers.all_servers(ports):
        if (server.record.get("pooler") or {}).get("enabled"):
            wanted.add(server.id)
        try:
            line = _reconcile_one(ports, server)
        except PgfleetError as exc:
            line = f"{server.id}: could not reconcile its pooler: {exc}"
        if line:
            actions.append(line)
    for server_id in ports.pooler.server_ids():
        if server_id not in wanted:
            record = (
                servers.get(ports, servers.kind_of(server_id), server_id)
                if server_id[:4] in ("pgi-", "pgc-")
                else None
            )
            if record is not None and (record.record.get("pooler") or {}).get("status") == "removing":
                continue  # the configure operation removes it
            actions.append(f"{server_id}: orphaned pooler: {ports.pooler.stop(server_id, remove=True)}")
    return actions
