"""What every managed resource (instance, cluster) shares: tenant-scoped reads, lifecycle
transitions handed to the worker, unique names, idempotent creates, status bookkeeping.

A resource type is described once by a `ResourceType`; services for single instances and
clusters call these functions with their type instead of repeating the logic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pgfleet.core import operations
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import InvalidState, NotFound, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext


@dataclass(frozen=True)
class Transition:
    allowed_from: tuple[str, ...]
    transitional: str
    desired_state: str
    workflow: str


@dataclass(frozen=True)
class ResourceType:
    kind: str  # metadata kind, also the noun in messages
    public_fields: tuple[str, ...]
    transitions: dict[str, Transition]


def standard_transitions(kind: str) -> dict[str, Transition]:
    """The lifecycle every server-like resource has; workflows are named `<kind>.<action>`.
    pause/resume scale to zero (services/sizing.py; services/quotas.py auto-pauses)."""
    return {
        "start": Transition(("stopped", "failed"), "starting", "running", f"{kind}.start"),
        "stop": Transition(("running", "failed"), "stopping", "stopped", f"{kind}.stop"),
        "restart": Transition(("running",), "restarting", "running", f"{kind}.restart"),
        "delete": Transition(
            ("running", "stopped", "failed", "paused"), "deleting", "deleted", f"{kind}.delete"
        ),
        "pause": Transition(("running",), "pausing", "paused", f"{kind}.pause"),
        "resume": Transition(("paused",), "resuming", "running", f"{kind}.resume"),
    }


def public_view(rtype: ResourceType, record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in rtype.public_fields}


def get_visible(ports: Ports, principal: Principal, rtype: ResourceType, resource_id: str) -> dict[str, Any]:
    record = ports.store.get(rtype.kind, resource_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"{rtype.kind} {resource_id} not found")
    return record


def list_visible(
    ports: Ports, principal: Principal, rtype: ResourceType, limit: int, next_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    tenant = None if principal.is_platform_admin else principal.tenant_id
    return ports.store.list(rtype.kind, tenant_id=tenant, limit=limit, next_token=next_token)


def name_key(rtype: ResourceType, tenant: str, name: str) -> str:
    return f"{rtype.kind}-name#{tenant}#{name}"


def require_status(
    record: dict[str, Any], rtype: ResourceType, action: str, allowed: tuple[str, ...]
) -> None:
    if record["status"] not in allowed:
        raise InvalidState(
            f"cannot {action} a {rtype.kind} that is {record['status']}",
            details={"status": record["status"], "allowed_from": list(allowed)},
        )


def begin(
    ports: Ports,
    principal: Principal,
    rtype: ResourceType,
    record: dict[str, Any],
    *,
    action: str,
    transitional: str,
    workflow: str,
    desired_state: str | None = None,
    params: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move a resource into a transitional status and hand the workflow to the worker.

    The status change is conditional on the revision the caller read, so two concurrent
    requests cannot both start work on one resource (the loser gets 409)."""
    op = operations.new_operation(workflow, record["id"], record["tenant_id"], params)
    update = {
        "status": transitional,
        "status_reason": f"{action} requested by {principal.sub or 'a user'}",
        "operation_id": op["id"],
        "updated_at": utcnow_iso(),
        **(changes or {}),
    }
    if desired_state:
        update["desired_state"] = desired_state
    record = ports.store.update(rtype.kind, record["id"], update, expected_revision=record["revision"])
    operations.submit(ports, op)
    return record


def transition(
    ports: Ports,
    principal: Principal,
    rtype: ResourceType,
    resource_id: str,
    action: str,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """start / stop / restart / delete: check the status allows it, then hand it to the worker
    (with the workflow's `params`, e.g. delete's final_backup)."""
    t = rtype.transitions[action]
    record = get_visible(ports, principal, rtype, resource_id)
    require_status(record, rtype, action, t.allowed_from)
    return begin(
        ports,
        principal,
        rtype,
        record,
        action=action,
        transitional=t.transitional,
        workflow=t.workflow,
        desired_state=t.desired_state,
        params=params,
    )


# --- idempotent creates -------------------------------------------------------------------


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


def _idempotency_key(rtype: ResourceType, tenant: str, key: str) -> str:
    return f"idempotency#{rtype.kind}#{tenant}#{key}"


def replayed_create(
    ports: Ports, rtype: ResourceType, tenant: str, key: str | None, body_fingerprint: str
) -> dict[str, Any] | None:
    """The record an earlier create with this Idempotency-Key made, or None."""
    if not key:
        return None
    claim = ports.store.claimed(_idempotency_key(rtype, tenant, key))
    if claim is None:
        return None
    if (claim.get("value") or {}).get("fingerprint") != body_fingerprint:
        raise ValidationFailed(
            "Idempotency-Key was already used with a different request body",
            details={"header": "Idempotency-Key"},
        )
    return ports.store.get(rtype.kind, claim["owner"])


def remember_create(
    ports: Ports, rtype: ResourceType, tenant: str, key: str | None, resource_id: str, body_fingerprint: str
) -> None:
    if key:
        ports.store.claim(
            _idempotency_key(rtype, tenant, key), resource_id, {"fingerprint": body_fingerprint}
        )


# --- workflow step helpers ------------------------------------------------------------------


def step_record(ctx: StepContext, rtype: ResourceType) -> dict[str, Any]:
    record = ctx.ports.store.get(rtype.kind, ctx.resource_id)
    if record is None:
        raise NotFound(f"{rtype.kind} {ctx.resource_id} no longer exists")
    return record


def set_status(
    ctx: StepContext, rtype: ResourceType, status: str, reason: str, **changes: Any
) -> dict[str, Any]:
    record = step_record(ctx, rtype)
    return ctx.ports.store.update(
        rtype.kind,
        record["id"],
        {"status": status, "status_reason": reason, "updated_at": utcnow_iso(), **changes},
        record["revision"],
    )


def mark(rtype: ResourceType, status: str, reason: str) -> Callable[[StepContext], str]:
    def step(ctx: StepContext) -> str:
        set_status(ctx, rtype, status, reason)
        return f"{rtype.kind} is {status}"

    return step


def mark_failed(rtype: ResourceType) -> Callable[[StepContext, str], None]:
    def on_failure(ctx: StepContext, error: str) -> None:
        record = ctx.ports.store.get(rtype.kind, ctx.resource_id)
        if record is not None:
            ctx.ports.store.update(
                rtype.kind,
                record["id"],
                {"status": "failed", "status_reason": error, "updated_at": utcnow_iso()},
            )

    return on_failure


def remove_record(rtype: ResourceType) -> Callable[[StepContext], str]:
    def step(ctx: StepContext) -> str:
        record = ctx.ports.store.get(rtype.kind, ctx.resource_id)
        if record is None:
            return "record already removed"
        ctx.ports.store.delete(
            rtype.kind, record["id"], unique_keys=(name_key(rtype, record["tenant_id"], record["name"]),)
        )
        return f"{rtype.kind} record removed"

    return step


def all_records(ports: Ports, kind: str) -> Iterator[dict[str, Any]]:
    """Every record of a kind, page by page."""
    token = None
    while True:
        page, token = ports.store.list(kind, limit=100, next_token=token)
        yield from page
        if not token:
            return
