"""The workflows of clusters, run by the worker step by step; every step is idempotent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.errors import EngineError, NotFound
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import archive
from pgfleet.domains.clusters.service import (
    CLUSTER,
    HEALTHY_TIMEOUT,
    KIND,
    apply_members,
    cluster_spec,
    new_nodes,
    refresh_topology,
    release_ports,
    secret_name,
)

# --- workflow steps ------------------------------------------------------------------------------


def _record(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, CLUSTER)


def _parallel(fn: Any, items: list[Any]) -> list[str]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def provision_step(ctx: StepContext) -> str:
    record = _record(ctx)
    spec = cluster_spec(record)
    results = [ctx.ports.cluster_engine.provision_node(spec, node) for node in spec.nodes]
    return f"{len(results)} node(s): " + "; ".join(sorted(set(results)))


def start_nodes_step(ctx: StepContext) -> str:
    spec = cluster_spec(_record(ctx))
    # Together: the first Patroni to take the initialize key bootstraps, the others clone it.
    results = _parallel(lambda node: ctx.ports.cluster_engine.start_node(spec, node), list(spec.nodes))
    return f"started {len(results)} Patroni node(s)"


def wait_healthy_step(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.wait_until_healthy(cluster_spec(_record(ctx)), timeout=HEALTHY_TIMEOUT)


def _ensure_running(ctx: StepContext) -> str:
    """Start every node (a no-op for running ones) and wait for a healthy cluster."""
    start_nodes_step(ctx)
    return wait_healthy_step(ctx)


def create_database_step(ctx: StepContext) -> str:
    record = _record(ctx)
    password = ctx.ports.secrets.get(secret_name(record))
    if password is None:
        raise NotFound("the cluster's password is missing from the secret store")
    return ctx.ports.cluster_engine.ensure_database(
        record["id"], record["database"], record["username"], password
    )


def stop_nodes_step(ctx: StepContext) -> str:
    record = _record(ctx)
    try:
        members = {m.node_id: m for m in ctx.ports.cluster_engine.members(record["id"])}
    except EngineError:
        members = {}
    # Replicas first, the primary last: stopping the primary first would make Patroni fail over.
    order = sorted(
        record["nodes"], key=lambda n: members[n["id"]].role == "primary" if n["id"] in members else False
    )
    for node in order:
        ctx.ports.cluster_engine.stop_node(record["id"], node["id"])
    return f"stopped {len(order)} node(s), the primary last"


def mark_running_step(reason: str) -> Any:
    def step(ctx: StepContext) -> str:
        return _mark_running(ctx, _record(ctx), reason)

    return step


def _mark_running(ctx: StepContext, record: dict[str, Any], reason: str, **changes: Any) -> str:
    # Every node inside its memory/CPU limits; the reason says how they are enforced.
    limits = ctx.ports.cluster_engine.apply_resources(cluster_spec(record))
    record = refresh_topology(
        ctx.ports, record, status="running", status_reason=f"{reason}; {limits}",
        node_count=len(record["nodes"]), limits=limits, **changes,
    )  # fmt: skip
    return f"cluster is running; primary {record['primary']}"


def mark_created_step(ctx: StepContext) -> str:
    """Running once the primary takes writes and the replicas stream: the first full backup
    follows as its own operation (see archive.lifecycle), so nobody waits for it."""
    record = _record(ctx)
    scheduled = archive.schedules.apply_tenant_default(ctx.ports, record)
    backup = archive.lifecycle.start_first_backup(ctx, record)
    reason = f"created; replicas streaming; first backup {backup['id']} started (operation {backup['operation_id']})"
    reason += f"; {scheduled}" if scheduled else ""
    return _mark_running(ctx, record, reason, first_backup_id=backup["id"])


def _mark_down(status: str, reason: str) -> Any:
    def step(ctx: StepContext) -> str:
        record = _record(ctx)
        nodes = [{**n, "state": "stopped", "role": "unknown", "lag_bytes": None} for n in record["nodes"]]
        resources.set_status(ctx, CLUSTER, status, reason, nodes=nodes, primary=None)
        return f"cluster is {status}"

    return step


_mark_stopped = _mark_down("stopped", "stopped by request")


def _release_limits(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.release_resources(ctx.resource_id)


def _destroy(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.destroy(ctx.resource_id)


def _release(ctx: StepContext) -> str:
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is None:
        return "already released"
    release_ports(ctx.ports, record["id"], record["nodes"] + record.get("removing_nodes", []))
    ctx.ports.secrets.delete(secret_name(record))
    return f"released {2 * len(record['nodes'])} ports and the password secret"


def _plan_scale(ctx: StepContext) -> str:
    record = _record(ctx)
    target = int(ctx.params["node_count"])
    current = len(record["nodes"])
    if record.get("scale_planned_for") == ctx.operation["id"]:
        return "plan already recorded"
    changes: dict[str, Any] = {"scale_planned_for": ctx.operation["id"]}
    if target > current:
        added = new_nodes(ctx.ports, record["id"], record["name"], record["nodes"], target - current)
        changes["nodes"] = record["nodes"] + added
        reason = f"adding {', '.join(n['id'] for n in added)}"
    elif target < current:
        live = apply_members(record, ctx.ports.cluster_engine.members(record["id"]))
        replicas = [n for n in live["nodes"] if n["id"] != live["primary"]]
        # A stopped replica goes first (it is the furthest behind), then the most lagging ones.
        replicas.sort(key=lambda n: (n["state"] != "stopped", -(n["lag_bytes"] or 0)))
        victims = [n["id"] for n in replicas[: current - target]]
        changes["removing"] = victims
        reason = f"removing {', '.join(victims)} (most lagging replicas first, never the primary)"
    else:
        reason = f"already {current} nodes"
    ctx.ports.store.update(KIND, record["id"], changes, record["revision"])
    return reason


def _add_nodes(ctx: StepContext) -> str:
    record = _record(ctx)
    spec = cluster_spec(record)
    try:
        running = {m.node_id for m in ctx.ports.cluster_engine.members(record["id"]) if m.running}
    except EngineError:
        running = set()
    new = [n for n in spec.nodes if n.node_id not in running]
    for node in new:
        ctx.ports.cluster_engine.provision_node(spec, node)
    _parallel(lambda node: ctx.ports.cluster_engine.start_node(spec, node), new)
    return f"started {', '.join(n.node_id for n in new)}" if new else "no node to add"


def _remove_nodes(ctx: StepContext) -> str:
    record = _record(ctx)
    victims = record.get("removing") or []
    for node_id in victims:
        ctx.ports.cluster_engine.remove_node(record["id"], node_id)
    gone = [n for n in record["nodes"] if n["id"] in victims]
    release_ports(ctx.ports, record["id"], gone)
    ctx.ports.store.update(
        KIND,
        record["id"],
        {"nodes": [n for n in record["nodes"] if n["id"] not in victims], "removing": []},
        record["revision"],
    )
    return f"removed {', '.join(victims)}" if victims else "no node to remove"


def _switchover(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.switchover(ctx.resource_id, ctx.params["node_id"])


def _scaled_or_failed(ctx: StepContext, error: str) -> None:
    # A failed scale or promote leaves a cluster that may still serve: say so, keep it usable.
    record = ctx.ports.store.get(KIND, ctx.resource_id)
    if record is not None:
        ctx.ports.store.update(
            KIND,
            record["id"],
            {
                "status": "running",
                "status_reason": f"last change failed: {error}",
                "updated_at": utcnow_iso(),
            },
        )


_failed = resources.mark_failed(CLUSTER)

# pause keeps the data directories, the reserved ports (the endpoints) and the backups.
_PAUSED = "paused: compute stopped, its cgroups and memory released; data, endpoints and backups kept"


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "cluster.create",
        (
            ("configure_archiving", archive.service.configure_step(CLUSTER)),
            ("provision", provision_step),
            ("start_nodes", start_nodes_step),
            ("wait_healthy", wait_healthy_step),
            ("create_database", create_database_step),
            ("mark_running", mark_created_step),
        ),
        _failed,
    ),
    Workflow(
        "cluster.start",
        (
            ("start_nodes", start_nodes_step),
            ("wait_healthy", wait_healthy_step),
            ("mark_running", mark_running_step("started")),
        ),
        _failed,
    ),
    Workflow("cluster.stop", (("stop_nodes", stop_nodes_step), ("mark_stopped", _mark_stopped)), _failed),
    Workflow(
        "cluster.pause",
        (
            ("stop_nodes", stop_nodes_step),
            ("release_limits", _release_limits),
            ("mark_paused", _mark_down("paused", _PAUSED)),
        ),
        _failed,
    ),
    Workflow(
        "cluster.resume",
        (
            ("start_nodes", start_nodes_step),
            ("wait_healthy", wait_healthy_step),
            ("mark_running", mark_running_step("resumed")),
        ),
        _failed,
    ),
    Workflow(
        "cluster.restart",
        (
            ("stop_nodes", stop_nodes_step),
            ("start_nodes", start_nodes_step),
            ("wait_healthy", wait_healthy_step),
            ("mark_running", mark_running_step("restarted")),
        ),
        _failed,
    ),
    Workflow(
        "cluster.delete",
        (
            ("settle_backups", archive.lifecycle.settle_backups_step(CLUSTER)),
            ("final_backup", archive.lifecycle.final_backup_step(CLUSTER, _ensure_running)),
            ("delete_dependents", operations.dependents_step(KIND)),
            ("destroy", _destroy),
            ("release_backups", archive.lifecycle.release_backups_step(CLUSTER)),
            ("release", _release),
            ("remove_record", resources.remove_record(CLUSTER)),
        ),
        _failed,
    ),
    Workflow(
        "cluster.scale",
        (
            ("plan", _plan_scale),
            ("add_nodes", _add_nodes),
            ("remove_nodes", _remove_nodes),
            ("wait_healthy", wait_healthy_step),
            ("mark_running", mark_running_step("scaled")),
        ),
        _scaled_or_failed,
    ),
    Workflow(
        "cluster.promote",
        (("switchover", _switchover), ("mark_running", mark_running_step("promoted by request"))),
        _scaled_or_failed,
    ),
)
