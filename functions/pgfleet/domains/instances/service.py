"""Single PostgreSQL instances: create, lifecycle, stats, logs.

The record keeps the desired state (`desired_state`: running, stopped, deleted) apart from
the observed `status`; workflows move the status, reconcile repairs drift.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pgfleet.core import admission, operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, ValidationFailed
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.resources import ResourceType
from pgfleet.domains import archive
from pgfleet.domains.instances.models import InstanceCreate
from pgfleet.ports.engine import LogLine, ServerSpec, ServerStats
from pgfleet.ports.metadata import Create

INSTANCE = ResourceType(
    kind="instance",
    public_fields=(
        "id",
        "name",
        "tenant_id",
        "status",
        "status_reason",
        "version",
        "cpu",
        "memory",
        "storage",
        "endpoint",
        "database",
        "username",
        "created_at",
        "updated_at",
        "operation_id",
        "pooler",  # performance: connections/configure
    ),  # fmt: skip
    transitions=resources.standard_transitions("instance"),
)
KIND = INSTANCE.kind


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    return {**resources.public_view(INSTANCE, record), "engine": engine_of(record)}


def engine_of(record: dict[str, Any]) -> str:
    """The engine that serves an instance or a cluster: the deployment's when it was made (a
    record from before the field was made by the local engine, the only one there was)."""
    return str(record.get("engine") or "local")


def view(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of an instance: the record's public fields and the state of its
    backups, read from its first backup (see archive.lifecycle.backup_state)."""
    return {**public_view(record), **archive.lifecycle.backup_state(ports, record)}


def secret_name(record: dict[str, Any]) -> str:
    return f"instances/{record['id']}/{record['username']}"


def connection_uri(
    username: str,
    password: str,
    hosts: list[dict[str, Any]],
    database: str,
    query: str = "",
    version: str | None = None,
    verify: bool | None = None,
) -> str:
    """A libpq URI; several hosts make a multi-host URI (clients try them in order). The server
    verified against the platform's CA (`tls_query`) for the majors of `tls_majors()`, or
    always (`verify=True`: the `verified_uri` of a server that runs TLS now)."""
    netloc = ",".join(f"{h['host']}:{h['port']}" for h in hosts)
    uri = f"postgresql://{quote(username)}:{quote(password, safe='')}@{netloc}/{quote(database)}"
    demands = verify if verify is not None else version is not None and str(version) in tls_majors()
    query = "&".join(filter(None, [query, tls_query() if demands else ""]))
    return f"{uri}?{query}" if query else uri


def _engine_tls() -> frozenset[str]:
    from pgfleet.core.context import current

    try:
        return current().engine.tls_versions()
    except RuntimeError:  # no ports in this process (a tool building URIs): claim no TLS
        return frozenset()


def tls_majors() -> frozenset[str]:
    """The majors whose `uri` demands verify-full: settings.tls_majors (none by default), or
    with "auto" those the engine runs with TLS."""
    from pgfleet.core.settings import get_settings

    chosen = get_settings().tls_majors
    return frozenset(chosen) if chosen is not None else _engine_tls()


def runs_tls(version: str | None) -> bool:
    """Whether the engine runs servers of this major with TLS (clients admitted over TLS only),
    with a CA to verify them against."""
    from pgfleet.core.settings import get_settings

    return bool(get_settings().tls_root_cert) and version is not None and str(version) in _engine_tls()


def ca_certificate(version: str | None) -> str | None:
    """The CA (PEM) a server of this major is verified against; None when it runs without TLS."""
    from pgfleet.core.context import current

    if not runs_tls(version):
        return None
    try:
        return current().engine.tls_ca_certificate()
    except (RuntimeError, OSError):
        return None


def tls_query() -> str:
    """`sslmode=verify-full&sslrootcert=<the CA>`: the server's certificate must chain to the
    platform's CA and name the host connected to. Empty where no CA is configured."""
    from pgfleet.core.settings import get_settings

    root = get_settings().tls_root_cert
    return f"sslmode=verify-full&sslrootcert={quote(root, safe='/')}" if root else ""


def tls_credentials(
    username: str,
    password: str,
    hosts: list[dict[str, Any]],
    database: str,
    version: str | None,
    query: str = "",
) -> dict[str, Any]:
    """`verified_uri` (verify-full against the CA) and `ca_certificate` of a server that runs
    TLS now; both null for one that does not."""
    if not runs_tls(version):
        return {"verified_uri": None, "ca_certificate": None}
    return {
        "verified_uri": connection_uri(username, password, hosts, database, query=query, verify=True),
        "ca_certificate": ca_certificate(version),
    }


def server_spec(record: dict[str, Any]) -> ServerSpec:
    return ServerSpec(
        server_id=record["id"],
        version=record["version"],
        port=record["endpoint"]["port"],
        cpu=record["cpu"],
        memory_mb=record["memory"],
        storage_gb=record["storage"],
        # backups: the archive settings (pgfleet.domains.archive.service) ride along with the user's.
        settings={**record.get("settings", {}), **record.get("archive_settings", {})},
    )


def get_visible(ports: Ports, principal: Principal, instance_id: str) -> dict[str, Any]:
    return resources.get_visible(ports, principal, INSTANCE, instance_id)


def list_visible(
    ports: Ports, principal: Principal, limit: int, next_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    return resources.list_visible(ports, principal, INSTANCE, limit, next_token)


def transition(
    ports: Ports, principal: Principal, instance_id: str, action: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    _refuse_while_migrated(get_visible(ports, principal, instance_id), action, params)
    return resources.transition(ports, principal, INSTANCE, instance_id, action, params)


def _refuse_while_migrated(record: dict[str, Any], action: str, params: dict[str, Any] | None) -> None:
    """A migration (pgfleet.domains.migrations) marks its source: while it builds, the source
    must keep running; once cut over, the source's port forwards to the cluster, so the
    source must not start on it (a final backup would start it too)."""
    if record.get("migrated_to") and (action != "delete" or (params or {}).get("final_backup")):
        raise InvalidState(
            f"instance {record['id']} was migrated to cluster {record['migrated_to']}, which its endpoint now "
            f"forwards to: it cannot {'take a final backup' if action == 'delete' else action}; delete it (without "
            "final_backup) when you no longer need its data, or delete the cluster to free its endpoint"
        )
    if record.get("migration_id") and not record.get("migrated_to") and action != "delete":
        raise InvalidState(
            f"instance {record['id']} is being migrated (migration {record['migration_id']}): it cannot {action} "
            "until the cutover, or until the migration fails"
        )


def require_supported_version(ports: Ports, version: str, supported: list[str] | None = None) -> None:
    """422 unless `version` is one of `supported` (default: what the engine runs), listed."""
    supported = ports.engine.supported_versions() if supported is None else supported
    if version not in supported:
        raise ValidationFailed(
            f"PostgreSQL {version} is not available",
            details={"field": "version", "supported": supported},
        )


def create(
    ports: Ports,
    principal: Principal,
    body: InstanceCreate,
    idempotency_key: str | None = None,
    *,
    workflow: str = "instance.create",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Accept a create request; the worker does the rest. Returns the instance with its
    credentials (shown once) and operation id. A restore into a new instance runs its own
    `workflow` (with `params`) instead of the plain create."""
    tenant = principal.tenant_id
    body_fingerprint = resources.fingerprint(body)
    earlier = resources.replayed_create(ports, INSTANCE, tenant, idempotency_key, body_fingerprint)
    if earlier is not None:
        return with_credentials(earlier, ports.secrets.get(secret_name(earlier)) or "")
    require_supported_version(ports, body.version)
    admission.admit(
        ports,
        tenant,
        admission.Demand.servers(
            1, cpu=body.cpu, memory_mb=body.memory, storage_gb=body.storage, instance=True
        ),
        f"instance {body.name}",
    )
    instance_id = new_id("pgi")
    (port,) = ports_allocation.reserve(ports, instance_id)
    now = utcnow_iso()
    op = operations.new_operation(workflow, instance_id, tenant, params)
    record: dict[str, Any] = {
        "id": instance_id,
        "tenant_id": tenant,
        "name": body.name,
        "status": "creating",
        "status_reason": "accepted; waiting for the worker",
        "desired_state": "running",
        "engine": ports.settings.engine,
        "version": body.version,
        "cpu": body.cpu,
        "memory": body.memory,
        "storage": body.storage,
        "endpoint": {"host": ports.engine.host, "port": port},
        "database": body.database,
        "username": body.username,
        "created_at": now,
        "updated_at": now,
        "operation_id": op["id"],
        "created_by": principal.sub,
    }
    # The password first (the operation's steps read it), then the record, its name and its
    # operation in one transaction: no failure leaves an instance nobody will ever create.
    password = secrets.token_urlsafe(24)
    try:
        ports.secrets.put(secret_name(record), password)
        record = operations.submit_with(
            ports, Create(KIND, record, unique_keys=(resources.name_key(INSTANCE, tenant, body.name),)), op
        )
    except Exception:
        if ports.store.get(KIND, instance_id) is None:
            ports_allocation.release(ports, port, instance_id)
            ports.secrets.delete(secret_name(record))
        raise
    resources.remember_create(ports, INSTANCE, tenant, idempotency_key, instance_id, body_fingerprint)
    return with_credentials(record, password)


def with_credentials(record: dict[str, Any], password: str) -> dict[str, Any]:
    view = public_view(record)
    view["credentials"] = {
        "username": record["username"],
        "password": password,
        "uri": connection_uri(
            record["username"],
            password,
            [record["endpoint"]],
            record["database"],
            version=record.get("version"),
        ),
        **tls_credentials(
            record["username"], password, [record["endpoint"]], record["database"], record.get("version")
        ),
    }
    return view


def stats_view(s: ServerStats) -> dict[str, Any]:
    return {
        "connections": {
            "active": s.connections_active,
            "idle": s.connections_idle,
            "total": s.connections_total,
            "max": s.connections_max,
        },
        "database_size_bytes": s.database_size_bytes,
        "uptime_seconds": round(s.uptime_seconds, 3),
        "commits": s.commits,
        "rollbacks": s.rollbacks,
        "cache_hit_ratio": round(s.cache_hit_ratio, 6),
        "deadlocks": s.deadlocks,
        "collected_at": s.collected_at.isoformat().replace("+00:00", "Z"),
    }


def log_view(line: LogLine, **extra: Any) -> dict[str, Any]:
    return {
        "timestamp": line.timestamp.isoformat().replace("+00:00", "Z"),
        "severity": line.severity,
        "message": line.message,
        **extra,
    }


def stats(ports: Ports, principal: Principal, instance_id: str) -> dict[str, Any]:
    record = get_visible(ports, principal, instance_id)
    resources.require_status(record, INSTANCE, "read stats of", ("running",))
    return stats_view(ports.engine.stats(instance_id, record["database"]))


def logs(
    ports: Ports, principal: Principal, instance_id: str, limit: int, since: datetime | None
) -> dict[str, Any]:
    get_visible(ports, principal, instance_id)
    return {"lines": [log_view(ln) for ln in ports.engine.logs(instance_id, limit, since)]}
