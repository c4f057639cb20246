"""In-place major-version upgrade of a Patroni cluster (`cluster.upgrade.in_place`), with one
planned downtime.

Steps: a full backup; stop every node (the replicas first, the primary last, so Patroni never
fails over); pg_upgrade of the primary's data directory (copy, or hard links when the disk is
short), the old one kept, the replicas' data set aside, every node's Patroni configuration
rewritten for the new version and the cluster's DCS state reset (pg_upgrade gives a new
system identifier); archiving moved to the backup tool of the new version; the upgraded
primary started alone; verify (the new version answers and takes writes: the downtime ends);
the replicas cloned again from it until they stream; the kept directories dropped; extensions
updated and statistics rebuilt; a first backup on the new version.

Until `verify` has passed, a failure puts the old cluster back (the kept data directories, the
old configuration, the DCS state reset again) and starts it as it was. After it, the upgraded
primary has taken writes and is the cluster: a later failure is reported on the cluster,
never rolled back over those writes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.core.leases import lease_kept
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, StepFn, Workflow
from pgfleet.domains import archive, clusters
from pgfleet.domains.upgrades.models import UpgradeCheckItem
from pgfleet.domains.upgrades.service import space_check, workflow_type

CLUSTER = clusters.CLUSTER
# The step after which the upgraded primary is the cluster (no way back by roll-back).
POINT_OF_NO_RETURN = "verify"
START_TIMEOUT = 120


# --- pre-flight ---------------------------------------------------------------------------------


def checks(ports: Ports, record: dict[str, Any], target: str) -> tuple[list[UpgradeCheckItem], bool]:
    """The checks of an in-place upgrade of a cluster, all on its running primary: the disk
    (a copy, or hard links), then pg_upgrade --check live and the extensions. Returns the
    items and whether pg_upgrade would use hard links."""
    engine = ports.cluster_engine
    try:
        data_bytes, free_bytes = engine.upgrade_space(record["id"])
    except EngineError as exc:
        return [UpgradeCheckItem(name="primary", passed=False, detail=str(exc))], False
    disk, link = space_check(data_bytes, free_bytes)
    try:
        findings = engine.upgrade_check(record["id"], target, link)
    except EngineError as exc:
        findings = [str(exc)]
    check = UpgradeCheckItem(
        name="pg_upgrade --check",
        passed=not findings,
        detail="; ".join(findings) or "pg_upgrade --check passed against the running primary",
    )
    return [disk, check], link


# --- steps ------------------------------------------------------------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, CLUSTER)


def _target(ctx: StepContext) -> str:
    return str(ctx.params["target_version"])


def _from(ctx: StepContext) -> str:
    return str(ctx.params["from_version"])


def _detail(ctx: StepContext) -> dict[str, Any]:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return dict(fresh.get("detail") or {})


def _primary(ctx: StepContext) -> str:
    """The node whose data directory is upgraded: the primary when the cluster stopped."""
    primary = _detail(ctx).get("upgraded_node")
    if not primary:
        raise EngineError("the primary to upgrade was not recorded before the cluster stopped")
    return str(primary)


def _spec(ctx: StepContext) -> Any:
    return clusters.cluster_spec(_record(ctx))


def _update(ctx: StepContext, **changes: Any) -> dict[str, Any]:
    record = _record(ctx)
    return ctx.ports.store.update(
        CLUSTER.kind, record["id"], {**changes, "updated_at": utcnow_iso()}, record["revision"]
    )


def _parallel(fn: Any, items: list[Any]) -> list[str]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def _backup(ctx: StepContext) -> str:
    operations.report(ctx, phase="backup", phase_reason="a full backup before the upgrade")
    return archive.lifecycle.take_full_backup(ctx, _record(ctx), "pre-upgrade")


def _stop(ctx: StepContext) -> str:
    """Record the primary, then stop the replicas and the primary last (stopping the primary
    first would make Patroni promote a replica)."""
    record = _record(ctx)
    engine = ctx.ports.cluster_engine
    members = {m.node_id: m for m in engine.members(record["id"])}
    detail = _detail(ctx)
    primary = detail.get("upgraded_node") or next(
        (m.node_id for m in members.values() if m.role == "primary" and m.running), None
    )
    if primary is None:
        raise EngineError(f"cluster {record['id']} has no running primary to upgrade")
    operations.report(
        ctx, phase="down", upgraded_node=primary,
        down_since=detail.get("down_since") or utcnow_iso(), down_started=detail.get("down_started") or time.time(),
    )  # fmt: skip
    order = sorted((n["id"] for n in record["nodes"]), key=lambda node_id: node_id == primary)
    for node_id in order:
        engine.stop_node(record["id"], node_id)
    return f"stopped {', '.join(order)} (the primary {primary} last)"


def _pg_upgrade(ctx: StepContext) -> str:
    spec = clusters.cluster_spec({**_record(ctx), "version": _target(ctx)})
    operations.report(ctx, phase="pg_upgrade")
    with lease_kept(ctx):
        reason = ctx.ports.cluster_engine.upgrade_primary(spec, _primary(ctx), bool(ctx.params.get("link")))
    _update(ctx, version=_target(ctx))
    return reason


def _provision(ctx: StepContext) -> str:
    spec = _spec(ctx)
    done = {ctx.ports.cluster_engine.provision_node(spec, node) for node in spec.nodes}
    return ", ".join(sorted(done))


def _archiving(ctx: StepContext) -> str:
    """Point the stanza at the upgraded cluster: the backup tool of the new version takes
    over, and its archive settings go into every node's configuration."""
    reason = archive.service.configure_step(CLUSTER)(ctx)
    return f"{reason}; nodes: {_provision(ctx)}"


def _start_primary(ctx: StepContext) -> str:
    reason = ctx.ports.cluster_engine.start_upgraded_primary(_spec(ctx), _primary(ctx), timeout=START_TIMEOUT)
    started = _detail(ctx).get("down_started")
    down = round(time.time() - float(started), 1) if started else None
    operations.report(ctx, phase="verifying", down_seconds=down)
    return reason + (f"; {down} s without a writable primary" if down is not None else "")


def _verify(ctx: StepContext) -> str:
    """The upgraded primary runs the target version and takes writes (the application role
    is re-ensured: a catalog write as the platform)."""
    record = _record(ctx)
    primary = _primary(ctx)
    running = ctx.ports.cluster_engine.node_version(record["id"], primary)
    if running.split(".")[0] != _target(ctx):
        raise EngineError(f"the upgraded primary {primary} runs PostgreSQL {running}, not {_target(ctx)}")
    clusters.create_database_step(ctx)
    return f"{primary}: PostgreSQL {running} accepts connections and writes"


def _rebuild_replicas(ctx: StepContext) -> str:
    """Start the other nodes: Patroni finds their data directories empty and clones the new
    primary. Done once every replica streams from it."""
    spec = _spec(ctx)
    primary = _primary(ctx)
    operations.report(ctx, phase="rebuilding_replicas")
    others = [n for n in spec.nodes if n.node_id != primary]
    _parallel(lambda node: ctx.ports.cluster_engine.start_node(spec, node), others)
    with lease_kept(ctx):
        healthy = ctx.ports.cluster_engine.wait_until_healthy(spec, timeout=clusters.HEALTHY_TIMEOUT)
    return f"cloned {', '.join(n.node_id for n in others) or 'no replica'} again from {primary}; {healthy}"


def _replicas_version(ctx: StepContext) -> str:
    """Every node answers with the target version."""
    record = _record(ctx)
    seen = {n["id"]: ctx.ports.cluster_engine.node_version(record["id"], n["id"]) for n in record["nodes"]}
    wrong = {k: v for k, v in seen.items() if v.split(".")[0] != _target(ctx)}
    if wrong:
        raise EngineError("nodes on another version: " + ", ".join(f"{k} {v}" for k, v in wrong.items()))
    return "every node runs PostgreSQL " + ", ".join(sorted(set(seen.values())))


def _finish(ctx: StepContext) -> str:
    operations.report(ctx, phase="finishing")
    return ctx.ports.cluster_engine.finish_upgrade(ctx.resource_id, _target(ctx))


def _after(ctx: StepContext) -> str:
    with lease_kept(ctx):
        return ctx.ports.cluster_engine.after_upgrade(ctx.resource_id)


def _first_backup(ctx: StepContext) -> str:
    record = _record(ctx)
    stanza = archive.service.create_stanza(ctx.ports, record)
    backup = archive.lifecycle.take_full_backup(ctx, record, "post-upgrade")
    return f"{stanza}; {backup}"


def _note(ctx: StepContext) -> str:
    down = _detail(ctx).get("down_seconds")
    mode = "hard links" if ctx.params.get("link") else "a copy"
    note = f"upgraded in place from PostgreSQL {_from(ctx)} to {_target(ctx)} (pg_upgrade of the primary with {mode}"
    return note + (f", {down} s without a writable primary)" if down is not None else ")")


def _mark(ctx: StepContext) -> str:
    record = _record(ctx)
    limits = ctx.ports.cluster_engine.apply_resources(clusters.cluster_spec(record))
    note = _note(ctx)
    operations.report(ctx, phase="completed")
    clusters.refresh_topology(
        ctx.ports, record, status="running", status_reason=f"running; replicas streaming; {note}; {limits}",
        limits=limits,
    )  # fmt: skip
    return f"cluster runs PostgreSQL {_target(ctx)}; {note}"


# --- failure ------------------------------------------------------------------------------------


def _passed(ctx: StepContext, name: str) -> bool:
    fresh = ctx.ports.store.get(operations.KIND, ctx.operation["id"]) or ctx.operation
    return any(s["name"] == name and s["status"] == "succeeded" for s in fresh.get("steps", []))


def _failed(ctx: StepContext, error: str) -> None:
    """Before anything stopped: nothing changed. Before `verify` passed: the old cluster
    back, started, running as it was. After: the upgraded cluster stays; it says what did
    not finish."""
    record = ctx.ports.store.get(CLUSTER.kind, ctx.resource_id)
    if record is None:
        return
    target = _target(ctx)
    if _passed(ctx, POINT_OF_NO_RETURN):
        operations.report(ctx, phase="completed_with_errors")
        resources.set_status(
            ctx, CLUSTER, "running",
            f"upgraded to PostgreSQL {target}, but a step after the verification failed: {error}",
        )  # fmt: skip
        return
    primary = _detail(ctx).get("upgraded_node")
    if not primary:  # the backup failed, or the stop found no primary: nothing was stopped
        operations.report(ctx, phase="failed")
        resources.set_status(
            ctx, CLUSTER, "running",
            f"the upgrade to PostgreSQL {target} failed before the cluster was stopped ({error}); nothing changed",
        )  # fmt: skip
        return
    engine = ctx.ports.cluster_engine
    try:
        _update(ctx, version=_from(ctx))
        archive.service.configure_step(CLUSTER)(ctx)
        spec = _spec(ctx)
        put_back = engine.roll_back_upgrade(spec, str(primary), target)
        engine.start_node(spec, spec.node(str(primary)))  # the old leader first: it registers its id
        _parallel(lambda node: engine.start_node(spec, node), [n for n in spec.nodes if n.node_id != primary])
        engine.wait_until_healthy(spec, timeout=clusters.HEALTHY_TIMEOUT)
    except (EngineError, KeyError) as exc:
        operations.report(ctx, phase="failed")
        resources.set_status(
            ctx, CLUSTER, "failed",
            f"the upgrade to PostgreSQL {target} failed ({error}) and the old version could not be put back: {exc}",
        )  # fmt: skip
        return
    operations.report(ctx, phase="rolled_back")
    clusters.refresh_topology(
        ctx.ports, _record(ctx), status="running",
        status_reason=f"the upgrade to PostgreSQL {target} failed ({error}); rolled back: {put_back}; "
        f"PostgreSQL {_from(ctx)} runs as before",
    )  # fmt: skip


STEPS: tuple[tuple[str, StepFn], ...] = (
    ("backup", _backup),
    ("stop", _stop),
    ("pg_upgrade", _pg_upgrade),
    ("configure_archiving", _archiving),
    ("start_primary", _start_primary),
    (POINT_OF_NO_RETURN, _verify),
    ("rebuild_replicas", _rebuild_replicas),
    ("check_versions", _replicas_version),
    ("drop_old_data", _finish),
    ("update_extensions_and_analyze", _after),
    ("first_backup", _first_backup),
    ("mark_running", _mark),
)

WORKFLOWS: tuple[Workflow, ...] = (Workflow(workflow_type(clusters.KIND, "in_place"), STEPS, _failed),)
