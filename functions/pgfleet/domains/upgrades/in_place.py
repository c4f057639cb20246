"""In-place major-version upgrade of a single instance (`instance.upgrade.in_place`).

Steps: a full backup; stop; pg_upgrade (copy, or hard links when the disk is short) with the
old data directory kept; archiving moved to the backup tool of the new version; start on the
same endpoint; verify (the new version answers and takes writes); drop the kept directory;
update extensions and rebuild statistics; a first backup on the new version.

Until `verify` has passed, a failure puts the old version back (the kept data directory, or
with hard links the renamed pg_control) and starts it as it was. After it, the new server is
the instance: a failed analyze or backup is reported on the instance, never rolled back over
writes the new server has taken.
"""

from __future__ import annotations

import time
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.errors import EngineError, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, StepFn, Workflow
from pgfleet.domains import archive, instances, replicas
from pgfleet.domains.upgrades.common import workflow_type

INSTANCE = instances.INSTANCE
# The steps after which the new version is the instance (no way back by roll-back).
POINT_OF_NO_RETURN = "verify"


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, INSTANCE)


def _target(ctx: StepContext) -> str:
    return str(ctx.params["target_version"])


def _from(ctx: StepContext) -> str:
    return str(ctx.params["from_version"])


def _update(ctx: StepContext, **changes: Any) -> dict[str, Any]:
    record = _record(ctx)
    return ctx.ports.store.update(
        INSTANCE.kind, record["id"], {**changes, "updated_at": utcnow_iso()}, record["revision"]
    )


def _backup(ctx: StepContext) -> str:
    operations.report(ctx, phase="backup", phase_reason="a full backup before the upgrade")
    return archive.lifecycle.take_full_backup(ctx, _record(ctx), "pre-upgrade")


def _prepare(ctx: StepContext) -> str:
    return ctx.ports.engine.prepare_upgrade(ctx.resource_id, _target(ctx))


def _stop(ctx: StepContext) -> str:
    down_since = (
        (ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or {}).get("detail", {}).get("down_since")
    )
    operations.report(ctx, phase="down", down_since=down_since or utcnow_iso(), down_started=time.time())
    return ctx.ports.engine.stop(ctx.resource_id)


def _pg_upgrade(ctx: StepContext) -> str:
    record = _record(ctx)
    spec = instances.server_spec({**record, "version": _target(ctx)})
    reason = ctx.ports.engine.upgrade_data(spec, bool(ctx.params.get("link")))
    _update(ctx, version=_target(ctx))
    return reason


def _archiving(ctx: StepContext) -> str:
    """Point the stanza at the upgraded data directory: the backup tool of the new version
    takes over, and its archive settings go into the server's configuration."""
    reason = archive.service.configure_step(INSTANCE)(ctx)
    ctx.ports.engine.provision(instances.server_spec(_record(ctx)))
    return reason


def _start(ctx: StepContext) -> str:
    reason = ctx.ports.engine.start(instances.server_spec(_record(ctx)))
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or {}
    started = (fresh.get("detail") or {}).get("down_started")
    down = round(time.time() - float(started), 1) if started else None
    operations.report(ctx, phase="verifying", down_seconds=down)
    return f"{reason} on the same endpoint" + (f" after {down} s down" if down is not None else "")


def _verify(ctx: StepContext) -> str:
    """The server runs the target version and takes writes (the application role is
    re-ensured: a catalog write as the platform)."""
    record = _record(ctx)
    state = ctx.ports.engine.state(record["id"])
    if not state.accepting_connections:
        raise EngineError(f"the upgraded server does not accept connections: {state.reason}")
    running = ctx.ports.engine.server_version(record["id"])
    if running.split(".")[0] != _target(ctx):
        raise EngineError(f"the upgraded server runs PostgreSQL {running}, not {_target(ctx)}")
    password = ctx.ports.secrets.get(instances.secret_name(record))
    if password is None:
        raise NotFound("the instance's password is missing from the secret store")
    ctx.ports.engine.ensure_database(record["id"], record["database"], record["username"], password)
    return f"PostgreSQL {running} accepts connections and writes"


def _replicas(ctx: StepContext) -> str:
    return replicas.rebuild_all_for_instance(ctx, _target(ctx))


def _finish(ctx: StepContext) -> str:
    operations.report(ctx, phase="finishing")
    return ctx.ports.engine.finish_upgrade(ctx.resource_id, _target(ctx))


def _after(ctx: StepContext) -> str:
    return ctx.ports.engine.after_upgrade(ctx.resource_id)


def _first_backup(ctx: StepContext) -> str:
    record = _record(ctx)
    stanza = archive.service.create_stanza(ctx.ports, record)
    backup = archive.lifecycle.take_full_backup(ctx, record, "post-upgrade")
    return f"{stanza}; {backup}"


def _mark(ctx: StepContext) -> str:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or {}
    down = (fresh.get("detail") or {}).get("down_seconds")
    mode = "hard links" if ctx.params.get("link") else "a copy"
    note = f"; upgraded in place from PostgreSQL {_from(ctx)} to {_target(ctx)} (pg_upgrade with {mode}"
    note += f", {down} s without connections)" if down is not None else ")"
    operations.report(ctx, phase="completed")
    record = _record(ctx)
    limits = ctx.ports.engine.apply_resources(instances.server_spec(record))
    resources.set_status(
        ctx, INSTANCE, "running", f"running and accepting connections; {limits}{note}", limits=limits
    )
    return f"instance runs PostgreSQL {_target(ctx)}{note}"


def _passed(ctx: StepContext, name: str) -> bool:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return any(s["name"] == name and s["status"] == "succeeded" for s in fresh.get("steps", []))


def _failed(ctx: StepContext, error: str) -> None:
    """Before `verify` passed: the old version back, started, running as it was. After: the
    new version stays; the instance says what did not finish."""
    record = ctx.ports.store.get(INSTANCE.kind, ctx.resource_id)
    if record is None:
        return
    if _passed(ctx, POINT_OF_NO_RETURN):
        operations.report(ctx, phase="completed_with_errors")
        resources.set_status(
            ctx, INSTANCE, "running",
            f"upgraded to PostgreSQL {_target(ctx)}, but a step after the verification failed: {error}",
        )  # fmt: skip
        return
    try:
        put_back = ctx.ports.engine.roll_back_upgrade(record["id"], _target(ctx))
        _update(ctx, version=_from(ctx))
        archive.service.configure_step(INSTANCE)(ctx)
        spec = instances.server_spec(_record(ctx))
        ctx.ports.engine.provision(spec)
        ctx.ports.engine.start(spec)
    except EngineError as exc:
        operations.report(ctx, phase="failed")
        resources.set_status(
            ctx, INSTANCE, "failed",
            f"the upgrade to PostgreSQL {_target(ctx)} failed ({error}) and the old version could not be "
            f"put back: {exc}",
        )  # fmt: skip
        return
    operations.report(ctx, phase="rolled_back")
    resources.set_status(
        ctx, INSTANCE, "running",
        f"the upgrade to PostgreSQL {_target(ctx)} failed ({error}); rolled back: {put_back}, PostgreSQL "
        f"{_from(ctx)} runs as before",
    )  # fmt: skip


STEPS: tuple[tuple[str, StepFn], ...] = (
    ("backup", _backup),
    ("prepare_new_cluster", _prepare),
    ("stop", _stop),
    ("pg_upgrade", _pg_upgrade),
    ("configure_archiving", _archiving),
    ("start", _start),
    (POINT_OF_NO_RETURN, _verify),
    ("drop_old_data", _finish),
    ("rebuild_replicas", _replicas),
    ("update_extensions_and_analyze", _after),
    ("first_backup", _first_backup),
    ("mark_running", _mark),
)

WORKFLOWS: tuple[Workflow, ...] = (Workflow(workflow_type(instances.KIND, "in_place"), STEPS, _failed),)
