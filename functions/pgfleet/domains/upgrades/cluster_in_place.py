"""In-place major-version upgrade of a Patroni cluster (`cluster.upgrade.in_place`), with one
planned downtime.

Steps: a full backup; the new cluster made (initdb) and a checkpoint, while the primary still
serves; stop every node (the replicas first, the primary last, so Patroni never
fails over); pg_upgrade of the primary's data directory (copy, or hard links when the disk is
short), the old one kept, the replicas' data set aside, every node's Patroni configuration
rewritten for the new version and the cluster's DCS state reset (pg_upgrade gives a new
system identifier); archiving moved to the backup tool of the new version; the upgraded
primary started alone; verify (the new version answers and takes writes: the downtime ends);
the kept directories dropped (they are no way back any more); the replicas cloned again from
it until they stream; extensions updated and statistics rebuilt; a first backup on the new
version.

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
from pgfleet.domains.upgrades.common import space_check, workflow_type
from pgfleet.domains.upgrades.models import UpgradeCheckItem
from pgfleet.ports.cluster_engine import ClusterSpec

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


def _spec(ctx: StepContext) -> ClusterSpec:
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


def _prepare(ctx: StepContext) -> str:
    """The new cluster for the primary, made while it still serves (initdb is downtime saved);
    the primary is recorded as the node to upgrade."""
    record = _record(ctx)
    primary = next(
        (
            m.node_id
            for m in ctx.ports.cluster_engine.members(record["id"])
            if m.role == "primary" and m.running
        ),
        None,
    )
    if primary is None:
        raise EngineError(f"cluster {record['id']} has no running primary to upgrade")
    operations.report(ctx, phase="preparing", upgraded_node=primary)
    return ctx.ports.cluster_engine.prepare_upgrade(record["id"], primary, _target(ctx))


def _stop(ctx: StepContext) -> str:
    """Record the primary, then stop the replicas (together) and the primary last: stopping
    the primary first would make Patroni promote a replica. The downtime starts when the
    primary stops, in the synchronous modes already when its replicas do (its commits wait
    for one: with sync until Patroni notices they left, with sync_strict until one is back)."""
    record = _record(ctx)
    engine = ctx.ports.cluster_engine
    # The primary now (Patroni may have failed over since `prepare`), or, when this step runs
    # again after it stopped the cluster, the one recorded.
    live = next((m.node_id for m in engine.members(record["id"]) if m.role == "primary" and m.running), None)
    primary = live or _detail(ctx).get("upgraded_node")
    if primary is None:
        raise EngineError(f"cluster {record['id']} has no running primary to upgrade")

    def down() -> None:
        fresh = _detail(ctx)
        operations.report(
            ctx, phase="down",
            down_since=fresh.get("down_since") or utcnow_iso(), down_started=fresh.get("down_started") or time.time(),
        )  # fmt: skip

    operations.report(ctx, phase="stopping", upgraded_node=primary, stopping=True)
    if record["replication_mode"] != "async":
        down()
    replicas = [n["id"] for n in record["nodes"] if n["id"] != primary]
    _parallel(lambda node_id: engine.stop_node(record["id"], node_id), replicas)
    if live == primary:  # a fresh checkpoint: the primary's shutdown, the downtime, is shorter
        engine.prepare_upgrade(record["id"], primary, _target(ctx))
    down()
    engine.stop_node(record["id"], primary)
    return f"stopped {', '.join(replicas) or 'no replica'}, then the primary {primary}"


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


def _down_ends(ctx: StepContext) -> float | None:
    """Record how long the cluster had no writable primary, up to now."""
    started = _detail(ctx).get("down_started")
    down = round(time.time() - float(started), 1) if started else None
    operations.report(ctx, phase="verifying", down_seconds=down)
    return down


def _start_primary(ctx: StepContext) -> str:
    reason = ctx.ports.cluster_engine.start_leader(_spec(ctx), _primary(ctx), timeout=START_TIMEOUT)
    down = _down_ends(ctx)
    return reason + (f"; {down} s without a writable primary" if down is not None else "")


def _verify(ctx: StepContext) -> str:
    """The upgraded primary runs the target version and takes writes (the application role
    is re-ensured: a catalog write as the platform)."""
    record = _record(ctx)
    primary = _primary(ctx)
    running = ctx.ports.cluster_engine.node_version(record["id"], primary)
    if running.split(".")[0] != _target(ctx):
        raise EngineError(f"the upgraded primary {primary} runs PostgreSQL {running}, not {_target(ctx)}")
    # With sync_strict no commit returns before a replica confirms it: the replicas are cloned
    # first (the kept data directories stay until the verification, so this takes more disk).
    strict = record["replication_mode"] == "sync_strict"
    rebuilt = f"{_rebuild_replicas(ctx)}; " if strict else ""
    clusters.create_database_step(ctx)
    down = f"; {_down_ends(ctx)} s without a writable primary" if strict else ""
    return f"{rebuilt}{primary}: PostgreSQL {running} accepts connections and writes{down}"


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
    detail = _detail(ctx)
    primary = detail.get("upgraded_node")
    if not primary or not detail.get("stopping"):  # nothing was stopped yet
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
        # The old primary first, alone: it has the newest data and registers the old system id.
        engine.start_leader(spec, str(primary), timeout=START_TIMEOUT)
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
    ("prepare_new_cluster", _prepare),
    ("stop", _stop),
    ("pg_upgrade", _pg_upgrade),
    ("configure_archiving", _archiving),
    ("start_primary", _start_primary),
    (POINT_OF_NO_RETURN, _verify),
    # Past the verification the old data is no way back any more: dropped before the replicas
    # are cloned, so the clones need no more disk than the replicas had.
    ("drop_old_data", _finish),
    ("rebuild_replicas", _rebuild_replicas),
    ("check_versions", _replicas_version),
    ("update_extensions_and_analyze", _after),
    ("first_backup", _first_backup),
    ("mark_running", _mark),
)

WORKFLOWS: tuple[Workflow, ...] = (Workflow(workflow_type(clusters.KIND, "in_place"), STEPS, _failed),)
