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
from datetime import UTC, datetime
from typing import Any

from pgfleet.core import operations
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, InvalidState, NotFound, ValidationFailed
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext
from pgfleet.ports.metadata import Update


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
    return visible_record(ports, principal, rtype.kind, resource_id, rtype.kind)


def visible_record(
    ports: Ports, principal: Principal, kind: str, record_id: str, what: str
) -> dict[str, Any]:
    """The record of `kind`, if the principal sees its tenant; else NotFound ("<what> <id> not
    found"), as for a record that does not exist: another tenant's ids are not revealed."""
    record = ports.store.get(kind, record_id)
    if record is None or not principal.sees_tenant(record["tenant_id"]):
        raise NotFound(f"{what} {record_id} not found")
    return record


def list_visible(
    ports: Ports, principal: Principal, rtype: ResourceType, limit: int, next_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    tenant = None if principal.is_platform_admin else principal.tenant_id
    return ports.store.list(rtype.kind, tenant_id=tenant, limit=limit, next_token=next_token)


def name_key(rtype: ResourceType, tenant: str, name: str) -> str:
    return f"{rtype.kind}-name#{tenant}#{name}"


# --- stranded records ------------------------------------------------------------------------

# Statuses a workflow leaves on its way: a record stays in one only while an operation works.
TRANSITIONAL = (
    "creating", "starting", "stopping", "restarting", "deleting", "pausing", "resuming",
    "resizing", "restoring", "scaling", "promoting", "upgrading",
)  # fmt: skip


def _age_seconds(stamp: str | None) -> float:
    if not stamp:
        return float("inf")
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()


def stranded_since(ports: Ports, record: dict[str, Any]) -> str | None:
    """Why the record is stranded, or None when it is not: it is in a transitional status,
    no operation works on it (none is stored, or the one it names has ended), and it has not
    changed for `settings.stranded_after_seconds` (a synchronous create in progress, such as
    a tenant's, is not stranded)."""
    if record.get("status") not in TRANSITIONAL:
        return None
    op_id = record.get("operation_id")
    op = ports.store.get(operations.KIND, op_id) if op_id else None
    if op is not None and op["status"] not in operations.TERMINAL:
        return None
    age = _age_seconds(record.get("updated_at"))
    if age < ports.settings.stranded_after_seconds:
        return None
    if op is None:
        why = f"operation {op_id} was never stored" if op_id else "no operation was ever stored"
    else:
        why = f"its operation {op_id} ended ({op['status']}) without finishing it"
    return f"{record['status']} for {age:.0f}s, but {why}"


def fail_if_stranded(ports: Ports, kind: str, record: dict[str, Any]) -> str | None:
    """Reconcile: mark a stranded record failed, saying why, so it can be deleted (which
    releases its name and ports) or started again. Returns what it did, or None."""
    why = stranded_since(ports, record)
    if why is None:
        return None
    reason = f"reconcile at {utcnow_iso()}: stranded ({why}); marked failed"
    try:
        ports.store.update(
            kind,
            record["id"],
            # `stranded_in`: what it was doing (a create that never finished holds no user data).
            {
                "status": "failed",
                "status_reason": reason,
                "stranded_in": record["status"],
                "updated_at": utcnow_iso(),
            },
            record["revision"],
        )
    except Conflict:
        return None  # it moved meanwhile: not stranded after all
    return f"{record['id']}: {reason}"


def a(noun: str) -> str:
    """The noun with its indefinite article: "an instance", "a cluster"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def require_status(
    record: dict[str, Any], rtype: ResourceType, action: str, allowed: tuple[str, ...]
) -> None:
    if record["status"] not in allowed:
        raise InvalidState(
            f"cannot {action} {a(rtype.kind)} that is {record['status']}",
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
    requests cannot both start work on one resource (the loser gets 409). It is written in
    one transaction with the operation, so the resource never waits for an operation that
    was never stored."""
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
    return operations.submit_with(
        ports, Update(rtype.kind, record["id"], update, expected_revision=record["revision"]), op
    )


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
    # Delete always works from a stuck state: a transitional status nothing works on.
    if not (action == "delete" and stranded_since(ports, record) is not None):
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
