"""Tenants of an instance or a cluster: a database (or a schema of the instance's database) per
tenant, its own login role, and quotas it cannot escape (see `pgfleet.ports.database_admin`).

Creating a tenant is quick (roles and a database) and answers 201 at once; deleting one takes a
logical backup first (unless told not to) and runs as an Operation. Usage is measured live when
listing; the quotas task (`services/quotas.py`) measures every minute and suspends or restores
writes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from pgfleet.core import resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import AlreadyExists, InvalidState, NotFound, PgfleetError
from pgfleet.core.models import utcnow_iso
from pgfleet.core.resources import ResourceType
from pgfleet.domains import servers
from pgfleet.domains.servers import MB, Server
from pgfleet.domains.tenants.models import TenantCreate, tenant_stem
from pgfleet.ports.database_admin import DATABASE_PER_TENANT, TenantSpec, TenantUsage

TENANT = ResourceType(
    kind="tenant",
    public_fields=("status", "status_reason", "writes_suspended", "operation_id", "created_at"),
    transitions={},
)
KIND = TENANT.kind
ACTIVE = "active"


def record_id(resource_id: str, tenant_id: str) -> str:
    return f"{resource_id}:{tenant_id}"


def secret_name(record: dict[str, Any]) -> str:
    return f"tenants/{record['parent_id']}/{record['name']}"


def _unique_keys(record: dict[str, Any]) -> tuple[str, ...]:
    # "tenant-a" and "tenant_a" share a database name; a login role is server-wide.
    parent = record["parent_id"]
    return (f"tenant-stem#{parent}#{tenant_stem(record['name'])}", f"tenant-user#{parent}#{record['user']}")


def spec(record: dict[str, Any]) -> TenantSpec:
    """The tenant's names on the server, as stored when it was created."""
    roles = record["roles"]
    return TenantSpec(
        name=record["name"],
        mode=record["mode"],
        database=record["database_name"],
        schema=record.get("schema_name"),
        login=record["user"],
        owner=roles["owner"],
        writer=roles["writer"],
        reader=roles["reader"],
        max_connections=record["quota"].get("max_connections"),
    )


def of_server(ports: Ports, resource_id: str) -> Iterator[dict[str, Any]]:
    """Every tenant record of an instance or a cluster."""
    token = None
    while True:
        page, token = ports.store.list(KIND, parent_id=resource_id, limit=100, next_token=token)
        yield from page
        if not token:
            return


def usage_view(usage: TenantUsage) -> dict[str, Any]:
    return {"storage_mb": round(usage.storage_bytes / MB, 2), "connections": usage.connections}


def public_view(record: dict[str, Any], usage: TenantUsage | None = None) -> dict[str, Any]:
    return {
        **resources.public_view(TENANT, record),
        "tenant_id": record["name"],
        "database_name": record["database_name"],
        "schema_name": record.get("schema_name"),
        "user": record["user"],
        "mode": record["mode"],
        "quota": record["quota"],
        "quota_used": usage_view(usage) if usage is not None else record.get("quota_used"),
    }


# --- create, list, delete -------------------------------------------------------------------


def create(
    ports: Ports,
    principal: Principal,
    kind: str,
    resource_id: str,
    body: TenantCreate,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Create the tenant on the running server and return it with its credentials (shown once)."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    owner = server.record["tenant_id"]
    # The password is a SecretStr: it dumps masked, so the fingerprint never holds it.
    body_fingerprint = resources.fingerprint(body)
    # An Idempotency-Key names one create on one server.
    key = f"{resource_id}#{idempotency_key}" if idempotency_key else None
    earlier = resources.replayed_create(ports, TENANT, owner, key, body_fingerprint)
    if earlier is not None:
        return _with_credentials(server, earlier, ports.secrets.get(secret_name(earlier)) or "")
    resources.require_status(server.record, server.rtype, "add a tenant to", ("running",))
    record = _new_record(server, body)
    if body.mode == DATABASE_PER_TENANT and record["database_name"] == server.record["database"]:
        raise AlreadyExists(f"database {record['database_name']} is the {kind}'s own database")
    if record["user"] == server.record["username"]:
        raise AlreadyExists(f"user {record['user']} is the {kind}'s application user")
    record = ports.store.create(KIND, record, unique_keys=_unique_keys(record))
    password = (
        body.initial_password.get_secret_value() if body.initial_password else secrets.token_urlsafe(24)
    )
    ports.secrets.put(secret_name(record), password)
    try:
        reason = servers.admin(ports, server).create_tenant(spec(record), password)
    except Exception:
        # Nothing half-made stays registered: the same request can simply be sent again.
        ports.store.delete(KIND, record["id"], unique_keys=_unique_keys(record))
        ports.secrets.delete(secret_name(record))
        raise
    record = ports.store.update(
        KIND,
        record["id"],
        {"status": ACTIVE, "status_reason": reason, "updated_at": utcnow_iso()},
        record["revision"],
    )
    resources.remember_create(ports, TENANT, owner, key, record["id"], body_fingerprint)
    return _with_credentials(server, record, password)


def _new_record(server: Server, body: TenantCreate) -> dict[str, Any]:
    stem = tenant_stem(body.tenant_id)
    in_schema = body.mode != DATABASE_PER_TENANT
    now = utcnow_iso()
    return {
        "id": record_id(server.id, body.tenant_id),
        "tenant_id": server.record["tenant_id"],  # the owner tenant, like every record
        "parent_id": server.id,
        "parent_kind": server.kind,
        "name": body.tenant_id,
        "mode": body.mode,
        "database_name": server.record["database"] if in_schema else stem,
        "schema_name": stem if in_schema else None,
        "user": body.initial_user or f"{stem}_user",
        "roles": {r: f"pgfleet_t_{stem}_{r}" for r in ("owner", "writer", "reader")},
        "quota": body.quota.model_dump(),
        "quota_used": None,
        "writes_suspended": False,
        "status": "creating",
        "status_reason": "creating",
        "operation_id": None,
        "created_at": now,
        "updated_at": now,
    }


def _with_credentials(server: Server, record: dict[str, Any], password: str) -> dict[str, Any]:
    view = public_view(record)
    view["credentials"] = {
        "username": record["user"],
        "password": password,
        "uri": servers.connection_uri(server, record["user"], password, record["database_name"]),
        **servers.tls_credentials(server, record["user"], password, record["database_name"]),
    }
    return view


def list_tenants(ports: Ports, principal: Principal, kind: str, resource_id: str) -> dict[str, Any]:
    """The server's tenants, with usage measured now when the server runs (else the last
    measurement of the quotas task)."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    records = list(of_server(ports, resource_id))
    usage: dict[str, TenantUsage] = {}
    live = [r for r in records if r["status"] == ACTIVE]
    if server.record["status"] == "running" and live:
        usage = servers.admin(ports, server).tenant_usage([spec(r) for r in live])
    return {"tenants": [public_view(r, usage.get(r["name"])) for r in records]}


def get_visible(
    ports: Ports, principal: Principal, kind: str, resource_id: str, tenant_id: str
) -> dict[str, Any]:
    servers.get_visible(ports, principal, kind, resource_id)
    record = ports.store.get(KIND, record_id(resource_id, tenant_id))
    if record is None:
        raise NotFound(f"tenant {tenant_id} not found on {kind} {resource_id}")
    return record


def delete(
    ports: Ports,
    principal: Principal,
    kind: str,
    resource_id: str,
    tenant_id: str,
    backup_before_delete: bool,
) -> dict[str, Any]:
    """Hand the deletion to the worker: block the tenant's logins, take its final logical
    backup (by default), drop its database or schema and roles."""
    server = servers.get_visible(ports, principal, kind, resource_id)
    record = get_visible(ports, principal, kind, resource_id, tenant_id)
    # A tenant stranded in "creating" (its create died half-way) can always be deleted.
    if resources.stranded_since(ports, record) is None:
        resources.require_status(record, TENANT, "delete", (ACTIVE, "failed"))
    # Its data has to be read (backup) and dropped on the server itself.
    resources.require_status(server.record, server.rtype, "delete a tenant of", ("running",))
    # An unfinished create never handed out credentials: there is no data of the tenant's to keep.
    unfinished = record["status"] == "creating" or (
        record["status"] == "failed" and record.get("stranded_in") == "creating"
    )
    record = resources.begin(
        ports, principal, TENANT, record, action=f"delete tenant {tenant_id}", transitional="deleting",
        workflow="tenant.delete",
        params={"backup_before_delete": backup_before_delete and not unfinished, "create_unfinished": unfinished},
    )  # fmt: skip
    return public_view(record)


def reconcile(ports: Ports) -> list[str]:
    """Mark failed every tenant stranded in a transitional status: a create whose process
    died between storing the record and finishing (it has no operation), or a delete whose
    operation ended without finishing. Failed, it can be deleted, which drops whatever the
    create made and releases its names. Returns one line per action."""
    actions = []
    for record in resources.all_records(ports, KIND):
        try:
            line = resources.fail_if_stranded(ports, KIND, record)
        except PgfleetError as exc:
            line = f"{record['id']}: could not reconcile: {exc}"
        if line:
            actions.append(line)
    return actions


def forget(ports: Ports, record: dict[str, Any]) -> None:
    """Remove a tenant's record, its unique names and its password secret (its data is gone)."""
    ports.secrets.delete(secret_name(record))
    ports.store.delete(KIND, record["id"], unique_keys=_unique_keys(record))


def move(ports: Ports, record: dict[str, Any], kind: str, resource_id: str) -> dict[str, Any]:
    """Re-home a tenant record onto another server that already holds its database and roles
    (a physical copy: a migration into a cluster), with its password secret and unique names.
    Idempotent: a tenant already on that server is returned as it is there."""
    moved = {**record, "id": record_id(resource_id, record["name"]), "parent_id": resource_id,
             "parent_kind": kind, "updated_at": utcnow_iso(),
             "status_reason": f"moved from {record['parent_kind']} {record['parent_id']}: {record['status_reason']}"}  # fmt: skip
    moved.pop("revision", None)
    existing = ports.store.get(KIND, moved["id"])
    if existing is None:
        password = ports.secrets.get(secret_name(record))
        if password is not None:  # first, so a retry after a crash still finds it
            ports.secrets.put(secret_name(moved), password)
        existing = ports.store.create(KIND, moved, unique_keys=_unique_keys(moved))
    forget(ports, record)
    return existing


def require_no_tenant_operation(ports: Ports, resource_id: str) -> None:
    """409 while a tenant of the resource is being deleted (its drop needs the server up)."""
    busy = [r["name"] for r in of_server(ports, resource_id) if r["status"] == "deleting"]
    if busy:
        raise InvalidState(f"tenant(s) {', '.join(busy)} are being deleted; try again when done")
