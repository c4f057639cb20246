"""Single PostgreSQL instances: create, lifecycle, stats, logs, reconcile.

The record keeps the desired state (`desired_state`: running, stopped, deleted) apart from
the observed `status`; workflows move the status, reconcile repairs drift.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pgfleet.errors import InvalidState, NotFound, ValidationFailed
from pgfleet.models.common import new_id, utcnow_iso
from pgfleet.models.instance import InstanceCreate
from pgfleet.ports.engine import ServerSpec
from pgfleet.services import operations, ports_allocation
from pgfleet.services.auth import Principal
from pgfleet.services.context import Ports
from pgfleet.services.operations import StepContext, Workflow, register

KIND = "instance"

# action -> (statuses it may start from, transitional status, desired state, workflow)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "start": (("stopped", "failed"), "starting", "running", "instance.start"),
    "stop": (("running", "failed"), "stopping", "stopped", "instance.stop"),
    "restart": (("running",), "restarting", "running", "instance.restart"),
    "delete": (("running", "stopped", "failed"), "deleting", "deleted", "instance.delete"),
}

PUBLIC_FIELDS = (
    "id", "name", "tenant_id", "status", "status_reason", "version", "cpu", "memory", "storage",
    "endpoint", "database", "username", "created_at", "updated_at", "operation_id",
)  # fmt: skip


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in PUBLIC_FIELDS}


def secret_name(record: dict[str, Any]) -> str:
    return f"instances/{record['id']}/{record['username']}"


def connection_uri(record: dict[str, Any], password: str) -> str:
    ep = record["endpoint"]
    return (
        f"postgresql://{quote(record['username'])}:{quote(password, safe='')}@{ep['host']}:{ep['port']}"
        f"/{quote(record['database'])}"
    )


def server_spec(record: dict[str, Any]) -> ServerSpec:
    return ServerSpec(
        server_id=record["id"],
        version=record["version"],
        port=record["endpoint"]["port"],
        cpu=record["cpu"],
        memory_mb=record["memory"],
        storage_gb=record["storage"],
        settings=record.get("settings", {}),
    )


def get_visible(ports: Ports, principal: Principal, instance_id: str) -> dict[str, Any]:
    record = ports.store.get(KIND, instance_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"instance {instance_id} not found")
    return record


def list_visible(
    ports: Ports, principal: Principal, limit: int, next_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    tenant = None if principal.is_platform_admin else principal.tenant_id
    return ports.store.list(KIND, tenant_id=tenant, limit=limit, next_token=next_token)


def create(
    ports: Ports, principal: Principal, body: InstanceCreate, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Accept a create request; the worker does the rest. Returns the instance with its
    credentials (shown once) and operation id."""
    tenant = principal.tenant_id
    fingerprint = hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()
    if idempotency_key:
        replay = _replay(ports, tenant, idempotency_key, fingerprint)
        if replay is not None:
            return replay
    if body.version not in ports.engine.supported_versions():
        raise ValidationFailed(
            f"PostgreSQL {body.version} is not available",
            details={"field": "version", "supported": ports.engine.supported_versions()},
        )
    instance_id = new_id("pgi")
    (port,) = ports_allocation.reserve(ports, instance_id)
    now = utcnow_iso()
    record = {
        "id": instance_id,
        "tenant_id": tenant,
        "name": body.name,
        "status": "creating",
        "status_reason": "accepted; waiting for the worker",
        "desired_state": "running",
        "version": body.version,
        "cpu": body.cpu,
        "memory": body.memory,
        "storage": body.storage,
        "endpoint": {"host": ports.engine.host, "port": port},
        "database": body.database,
        "username": body.username,
        "created_at": now,
        "updated_at": now,
        "operation_id": None,
        "created_by": principal.sub,
    }
    try:
        record = ports.store.create(KIND, record, unique_keys=(_name_key(tenant, body.name),))
    except Exception:
        ports_allocation.release(ports, port, instance_id)
        raise
    password = secrets.token_urlsafe(24)
    ports.secrets.put(secret_name(record), password)
    op = operations.new_operation("instance.create", instance_id, tenant)
    record = ports.store.update(KIND, instance_id, {"operation_id": op["id"]}, record["revision"])
    operations.submit(ports, op)
    if idempotency_key:
        ports.store.claim(
            _idempotency_key(tenant, idempotency_key), instance_id, {"fingerprint": fingerprint}
        )
    return _with_credentials(record, password)


def _with_credentials(record: dict[str, Any], password: str) -> dict[str, Any]:
    view = public_view(record)
    view["credentials"] = {
        "username": record["username"],
        "password": password,
        "uri": connection_uri(record, password),
    }
    return view


def _replay(ports: Ports, tenant: str, key: str, fingerprint: str) -> dict[str, Any] | None:
    claim = ports.store.claimed(_idempotency_key(tenant, key))
    if claim is None:
        return None
    if (claim.get("value") or {}).get("fingerprint") != fingerprint:
        raise ValidationFailed(
            "Idempotency-Key was already used with a different request body",
            details={"header": "Idempotency-Key"},
        )
    record = ports.store.get(KIND, claim["owner"])
    if record is None:
        return None
    return _with_credentials(record, ports.secrets.get(secret_name(record)) or "")


def _name_key(tenant: str, name: str) -> str:
    return f"instance-name#{tenant}#{name}"


def _idempotency_key(tenant: str, key: str) -> str:
    return f"idempotency#instance#{tenant}#{key}"


def transition(ports: Ports, principal: Principal, instance_id: str, action: str) -> dict[str, Any]:
    """Start, stop, restart or delete: check the status allows it, then hand it to the worker."""
    allowed, transitional, desired, op_type = TRANSITIONS[action]
    record = get_visible(ports, principal, instance_id)
    if record["status"] not in allowed:
        raise InvalidState(
            f"cannot {action} an instance that is {record['status']}",
            details={"status": record["status"], "allowed_from": list(allowed)},
        )
    op = operations.new_operation(op_type, instance_id, record["tenant_id"])
    record = ports.store.update(
        KIND,
        instance_id,
        {
            "status": transitional,
            "status_reason": f"{action} requested by {principal.sub or 'a user'}",
            "desired_state": desired,
            "operation_id": op["id"],
            "updated_at": utcnow_iso(),
        },
        expected_revision=record["revision"],
    )
    operations.submit(ports, op)
    return record


def stats(ports: Ports, principal: Principal, instance_id: str) -> dict[str, Any]:
    record = get_visible(ports, principal, instance_id)
    if record["status"] not in ("running",):
        raise InvalidState(f"instance is {record['status']}; stats need a running server")
    s = ports.engine.stats(instance_id, record["database"])
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


def logs(
    ports: Ports, principal: Principal, instance_id: str, limit: int, since: datetime | None
) -> dict[str, Any]:
    get_visible(ports, principal, instance_id)
    lines = ports.engine.logs(instance_id, limit, since)
    return {
        "lines": [
            {
                "timestamp": ln.timestamp.isoformat().replace("+00:00", "Z"),
                "severity": ln.severity,
                "message": ln.message,
            }
            for ln in lines
        ]
    }


# --- workflow steps (run by the worker; each idempotent) ---------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        raise NotFound(f"instance {ctx.resource_id} no longer exists")
    return record


def _set_status(ctx: StepContext, status: str, reason: str) -> None:
    record = _record(ctx)
    ctx.ports.store.update(
        KIND,
        record["id"],
        {"status": status, "status_reason": reason, "updated_at": utcnow_iso()},
        record["revision"],
    )


def _provision(ctx: StepContext) -> str:
    return ctx.ports.engine.provision(server_spec(_record(ctx)))


def _start(ctx: StepContext) -> str:
    return ctx.ports.engine.start(server_spec(_record(ctx)))


def _stop(ctx: StepContext) -> str:
    return ctx.ports.engine.stop(ctx.resource_id)


def _restart(ctx: StepContext) -> str:
    return ctx.ports.engine.restart(server_spec(_record(ctx)))


def _create_database(ctx: StepContext) -> str:
    record = _record(ctx)
    password = ctx.ports.secrets.get(secret_name(record))
    if password is None:
        raise NotFound("the instance's password is missing from the secret store")
    return ctx.ports.engine.ensure_database(record["id"], record["database"], record["username"], password)


def _mark(status: str, reason: str) -> Any:
    def step(ctx: StepContext) -> str:
        _set_status(ctx, status, reason)
        return f"instance is {status}"

    return step


def _destroy(ctx: StepContext) -> str:
    return ctx.ports.engine.destroy(ctx.resource_id)


def _release(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "already released"
    ports_allocation.release(ctx.ports, record["endpoint"]["port"], record["id"])
    ctx.ports.secrets.delete(secret_name(record))
    return f"released port {record['endpoint']['port']} and the password secret"


def _remove_record(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "record already removed"
    ctx.ports.store.delete(KIND, record["id"], unique_keys=(_name_key(record["tenant_id"], record["name"]),))
    return "instance record removed"


def _failed(ctx: StepContext, error: str) -> None:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is not None:
        ctx.ports.store.update(
            KIND, record["id"], {"status": "failed", "status_reason": error, "updated_at": utcnow_iso()}
        )


register(
    Workflow(
        "instance.create",
        (
            ("provision", _provision),
            ("start", _start),
            ("create_database", _create_database),
            ("mark_running", _mark("running", "created and accepting connections")),
        ),
        _failed,
    )
)
register(
    Workflow("instance.start", (("start", _start), ("mark_running", _mark("running", "started"))), _failed)
)
register(
    Workflow(
        "instance.stop", (("stop", _stop), ("mark_stopped", _mark("stopped", "stopped by request"))), _failed
    )
)
register(
    Workflow(
        "instance.restart", (("restart", _restart), ("mark_running", _mark("running", "restarted"))), _failed
    )
)
register(
    Workflow(
        "instance.delete",
        (("destroy", _destroy), ("release", _release), ("remove_record", _remove_record)),
        _failed,
    )
)
