"""Operations: long work as a list of short, idempotent steps persisted one by one.

A worker (the SQS-triggered Lambda, or the local worker loop) calls `run(operation_id)`.
It takes a lease on the operation (so two deliveries of one message never run it twice at
once), then runs the remaining steps in order, persisting each step's outcome and reason
before the next begins. A worker killed mid-step leaves the step "running"; the next delivery
(or the reconcile schedule) runs that step again, which is safe because steps are idempotent.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgfleet.core import audit, request_context
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.ports.metadata import Create, Write

log = logging.getLogger(__name__)

KIND = "operation"
LEASE_SECONDS = 300
TERMINAL = ("succeeded", "failed")


@dataclass
class StepContext:
    ports: Ports
    operation: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        return self.operation.get("params", {})

    @property
    def resource_id(self) -> str:
        return str(self.operation["resource_id"])


StepFn = Callable[[StepContext], str]


@dataclass(frozen=True)
class Workflow:
    type: str
    steps: tuple[tuple[str, StepFn], ...]
    # Called once when a step fails for good, with the error text: puts the resource into a
    # state that says so.
    on_failure: Callable[[StepContext, str], None] | None = None


WORKFLOWS: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    """Make a workflow runnable (the handlers register every domain's, from the manifests)."""
    WORKFLOWS[workflow.type] = workflow
    return workflow


@dataclass(frozen=True)
class Cascade:
    """A step a domain adds to the delete of the resource its records hang off (the replicas
    of an instance), so the lower domain need not know the higher one."""

    parent_kind: str
    name: str
    step: StepFn


CASCADES: dict[str, dict[str, StepFn]] = {}


def register_cascade(cascade: Cascade) -> None:
    CASCADES.setdefault(cascade.parent_kind, {})[cascade.name] = cascade.step


def dependents_step(parent_kind: str) -> StepFn:
    """A step that runs every registered cascade of `parent_kind`, in registration order,
    and says what each did. Idempotent when each cascade step is."""

    def step(ctx: StepContext) -> str:
        reasons = [f"{name}: {fn(ctx)}" for name, fn in CASCADES.get(parent_kind, {}).items()]
        return "; ".join(reasons) or "nothing depends on it"

    return step


def new_operation(
    op_type: str, resource_id: str, tenant_id: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    workflow = WORKFLOWS[op_type]
    now = utcnow_iso()
    return {
        "id": new_id("op"),
        "type": op_type,
        "resource_id": resource_id,
        "tenant_id": tenant_id,
        "parent_id": resource_id,
        # Who asked: the API caller, or none for the control plane's own (reconcile, schedules).
        "requested_by": request_context.current_user(),
        "status": "pending",
        "progress": 0,
        "steps": [{"name": name, "status": "pending", "reason": None} for name, _ in workflow.steps],
        "error": None,
        "params": params or {},
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "current_step": 0,
        "lease_owner": None,
        "lease_until": 0,
    }


def submit(ports: Ports, operation: dict[str, Any]) -> dict[str, Any]:
    """Persist a new operation and hand it to the worker."""
    stored = ports.store.create(KIND, operation)
    ports.queue.send({"operation_id": stored["id"]})
    return stored


def submit_with(ports: Ports, write: Write, operation: dict[str, Any]) -> dict[str, Any]:
    """Write a resource (a new record, or a change of status) and store the operation that
    works on it in one transaction, then hand the operation to the worker. Returns the
    resource as stored.

    Separate writes would let a crash between them strand the resource: in a transitional
    status with no operation that could ever finish it. If only the message is lost,
    reconcile hands the stored operation to the worker again (`resume_if_stale`)."""
    resource, stored = ports.store.transact([write, Create(KIND, operation)])
    ports.queue.send({"operation_id": stored["id"]})
    return resource


def get_visible(ports: Ports, principal: Principal, operation_id: str) -> dict[str, Any]:
    op = ports.store.get(KIND, operation_id)
    if op is None or not principal.sees_tenant(op["tenant_id"]):
        raise NotFound(f"operation {operation_id} not found")
    return op


def public_view(op: dict[str, Any]) -> dict[str, Any]:
    hidden = {"params", "current_step", "lease_owner", "lease_until", "parent_id", "revision"}
    return {k: v for k, v in op.items() if k not in hidden}


def report(ctx: StepContext, **detail: Any) -> dict[str, Any]:
    """What the running step measures for the user to watch (a replication lag, a phase),
    merged into the operation's `detail`: one store write; the step's own record stays as
    it is."""
    fresh = ctx.ports.store.get(KIND, ctx.operation["id"]) or ctx.operation
    merged = {**(fresh.get("detail") or {}), **detail, "reported_at": utcnow_iso()}
    return ctx.ports.store.update(KIND, fresh["id"], {"detail": merged}, fresh["revision"])


def resume(ports: Ports, operation_id: str) -> None:
    """Re-enqueue an operation whose message may have been lost (reconcile calls this)."""
    ports.queue.send({"operation_id": operation_id})


def is_stale(op: dict[str, Any], now: float | None = None) -> bool:
    """An unfinished operation nobody holds a live lease on."""
    return op["status"] not in TERMINAL and float(op.get("lease_until") or 0) < (now or time.time())


# An operation untouched for this long, with no live lease, has lost its worker or message.
STALE_AFTER_SECONDS = 30


def resume_if_stale(ports: Ports, resource: dict[str, Any]) -> str | None:
    """Hand the resource's unfinished operation back to the worker if nobody works on it
    (reconcile calls this; a duplicate delivery is harmless thanks to the lease)."""
    op = ports.store.get(KIND, resource.get("operation_id") or "")
    if not op or not is_stale(op):
        return None
    updated = datetime.fromisoformat(op["updated_at"].replace("Z", "+00:00"))
    if (datetime.now(UTC) - updated).total_seconds() <= STALE_AFTER_SECONDS:
        return None
    resume(ports, op["id"])
    return f"{resource['id']}: resumed {op['type']} operation {op['id']} (no worker held it)"


def run(ports: Ports, operation_id: str, worker_id: str | None = None) -> str:
    """Run an operation's remaining steps. Returns a line saying what happened."""
    worker_id = worker_id or f"{os.uname().nodename}:{os.getpid()}"
    op = ports.store.get(KIND, operation_id)
    if op is None:
        return f"operation {operation_id}: gone"
    if op["status"] in TERMINAL:
        return f"operation {operation_id}: already {op['status']}"
    op = _take_lease(ports, op, worker_id)
    if op is None:
        return f"operation {operation_id}: another worker holds the lease"
    workflow = WORKFLOWS[op["type"]]
    total = len(workflow.steps)
    while op["current_step"] < total:
        index = op["current_step"]
        name, fn = workflow.steps[index]
        try:
            reason = fn(StepContext(ports, op))
        except Exception as exc:  # a step failing for good ends the operation
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.warning(
                "operation %s step %s failed: %s\n%s", op["id"], name, message, traceback.format_exc()
            )
            op = _save_step(
                ports,
                op,
                index,
                status="failed",
                reason=message,
                finished_at=utcnow_iso(),
                also={
                    "status": "failed",
                    "error": f"{name}: {message}",
                    "finished_at": utcnow_iso(),
                    "lease_until": 0,
                },
            )
            _audit_step(ports, op, name, False, message)
            if workflow.on_failure:
                workflow.on_failure(StepContext(ports, op), f"{name}: {message}")
            return f"operation {op['id']}: failed at {name}: {message}"
        # One write per step: this step's end, and the next step's start (or the operation's).
        last = index + 1 == total
        op = _save_step(
            ports,
            op,
            index,
            status="succeeded",
            reason=reason,
            finished_at=utcnow_iso(),
            advance=True,
            progress=int(100 * (index + 1) / total),
            also={"status": "succeeded", "finished_at": utcnow_iso(), "lease_until": 0} if last else None,
            next_started_at=None if last else utcnow_iso(),
        )
        _audit_step(ports, op, name, True, reason)
    if op["status"] != "succeeded":  # an operation resumed with every step done
        ports.store.update(
            KIND,
            op["id"],
            {"status": "succeeded", "finished_at": utcnow_iso(), "lease_until": 0},
            op["revision"],
        )
    return f"operation {op['id']}: succeeded"


def _audit_step(ports: Ports, op: dict[str, Any], step: str, succeeded: bool, reason: str | None) -> None:
    """One audit event per step. The trail must not stop the work: a failed write is logged
    with the event, so the log holds it."""
    event = audit.step_event(op, step, succeeded, reason, ports.settings.audit_retention_days)
    try:
        ports.history.append(audit.STREAM, [event])
    except Exception as exc:  # the step is done; its record goes to the log instead
        log.error("audit event not stored (%s): %s", exc, event.data)


def _take_lease(ports: Ports, op: dict[str, Any], worker_id: str) -> dict[str, Any] | None:
    now = time.time()
    if op.get("lease_owner") not in (None, worker_id) and float(op.get("lease_until") or 0) > now:
        return None
    changes: dict[str, Any] = {
        "lease_owner": worker_id,
        "lease_until": now + LEASE_SECONDS,
        "status": "running",
        "updated_at": utcnow_iso(),
    }
    if not op.get("started_at"):
        changes["started_at"] = utcnow_iso()
    index = op["current_step"]
    if index < len(op["steps"]):  # the step it resumes at starts now
        steps = [dict(s) for s in op["steps"]]
        steps[index].update(status="running", started_at=utcnow_iso())
        changes["steps"] = steps
    try:
        return ports.store.update(KIND, op["id"], changes, op["revision"])
    except Conflict:
        return None


def _save_step(
    ports: Ports,
    op: dict[str, Any],
    index: int,
    *,
    advance: bool = False,
    progress: int | None = None,
    also: dict[str, Any] | None = None,
    next_started_at: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Write step `index`'s `fields` (and, with `next_started_at`, the next step's start, and
    `also` on the operation) in one update."""
    # Steps may update the operation record themselves (e.g. to store an id they created):
    # re-read so this write carries their changes and keeps the version check honest.
    fresh = ports.store.get(KIND, op["id"]) or op
    steps = [dict(s) for s in fresh["steps"]]
    steps[index].update(fields)
    if next_started_at is not None and index + 1 < len(steps):
        steps[index + 1].update(status="running", started_at=next_started_at)
    changes: dict[str, Any] = {
        "steps": steps,
        "updated_at": utcnow_iso(),
        "lease_until": time.time() + LEASE_SECONDS,
    }
    if advance:
        changes["current_step"] = index + 1
    if progress is not None:
        changes["progress"] = progress
    changes.update(also or {})
    return ports.store.update(KIND, fresh["id"], changes, fresh["revision"])
