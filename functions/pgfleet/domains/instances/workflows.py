"""The workflows of single instances, run by the worker step by step; every step is idempotent."""

from __future__ import annotations

from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.errors import NotFound
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import archive
from pgfleet.domains.instances.service import INSTANCE, KIND, secret_name, server_spec

# --- workflow steps (run by the worker; each idempotent) ---------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, INSTANCE)


def provision_step(ctx: StepContext) -> str:
    return ctx.ports.engine.provision(server_spec(_record(ctx)))


def start_step(ctx: StepContext) -> str:
    return ctx.ports.engine.start(server_spec(_record(ctx)))


def stop_step(ctx: StepContext) -> str:
    return ctx.ports.engine.stop(ctx.resource_id)


def _restart(ctx: StepContext) -> str:
    return ctx.ports.engine.restart(server_spec(_record(ctx)))


def create_database_step(ctx: StepContext) -> str:
    record = _record(ctx)
    password = ctx.ports.secrets.get(secret_name(record))
    if password is None:
        raise NotFound("the instance's password is missing from the secret store")
    return ctx.ports.engine.ensure_database(record["id"], record["database"], record["username"], password)


def _destroy(ctx: StepContext) -> str:
    return ctx.ports.engine.destroy(ctx.resource_id)


def _release(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "already released"
    ports_allocation.release(ctx.ports, record["endpoint"]["port"], record["id"])
    ctx.ports.secrets.delete(secret_name(record))
    return f"released port {record['endpoint']['port']} and the password secret"


_failed = resources.mark_failed(INSTANCE)


def mark_running_step(ctx: StepContext) -> str:
    """Running: keep the server inside its memory/CPU limits and say how they are enforced
    (cgroups, or settings only where the host does not allow them)."""
    return _mark_running(ctx, _record(ctx))


def _mark_running(ctx: StepContext, record: dict[str, Any], note: str = "", **changes: Any) -> str:
    limits = ctx.ports.engine.apply_resources(server_spec(record))
    reason = f"running and accepting connections; {limits}{note}"
    resources.set_status(ctx, INSTANCE, "running", reason, limits=limits, **changes)
    return f"instance is running; {limits}{note}"


def _mark_created(ctx: StepContext) -> str:
    """Running as soon as it accepts connections: the first full backup follows as its own
    operation (see archive.lifecycle), so neither a user nor `terraform apply` waits for it."""
    record = _record(ctx)
    scheduled = archive.schedules.apply_tenant_default(ctx.ports, record)
    backup = archive.lifecycle.start_first_backup(ctx, record)
    note = f"; first backup {backup['id']} started (operation {backup['operation_id']})"
    note += f"; {scheduled}" if scheduled else ""
    return _mark_running(ctx, record, note, first_backup_id=backup["id"])


def _release_limits(ctx: StepContext) -> str:
    return ctx.ports.engine.release_resources(ctx.resource_id)


# pause keeps the data directory, the reserved port (the endpoint) and the backups.
_PAUSED = "paused: compute stopped, its cgroup and memory released; data, endpoint and backups kept"


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "instance.create",
        (
            ("configure_archiving", archive.service.configure_step(INSTANCE)),
            ("provision", provision_step),
            ("start", start_step),
            ("create_database", create_database_step),
            ("mark_running", _mark_created),
        ),
        _failed,
    ),
    Workflow("instance.start", (("start", start_step), ("mark_running", mark_running_step)), _failed),
    Workflow(
        "instance.stop",
        (("stop", stop_step), ("mark_stopped", resources.mark(INSTANCE, "stopped", "stopped by request"))),
        _failed,
    ),
    Workflow("instance.restart", (("restart", _restart), ("mark_running", mark_running_step)), _failed),
    Workflow(
        "instance.pause",
        (
            ("stop", stop_step),
            ("release_limits", _release_limits),
            ("mark_paused", resources.mark(INSTANCE, "paused", _PAUSED)),
        ),
        _failed,
    ),
    Workflow("instance.resume", (("start", start_step), ("mark_running", mark_running_step)), _failed),
    Workflow(
        "instance.delete",
        (
            ("settle_backups", archive.lifecycle.settle_backups_step(INSTANCE)),
            ("final_backup", archive.lifecycle.final_backup_step(INSTANCE, start_step)),
            ("delete_dependents", operations.dependents_step(KIND)),
            ("destroy", _destroy),
            ("release_backups", archive.lifecycle.release_backups_step(INSTANCE)),
            ("release", _release),
            ("remove_record", resources.remove_record(INSTANCE)),
        ),
        _failed,
    ),
)
