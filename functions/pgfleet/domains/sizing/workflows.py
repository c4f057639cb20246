"""The resize workflows: one restart for an instance, rolling (replicas, then a switchover) for a cluster; every step idempotent."""

from __future__ import annotations

from typing import Any

from pgfleet.core import operations, resources
from pgfleet.core.errors import EngineError, InvalidState
from pgfleet.core.operations import StepContext, Workflow
from pgfleet.domains import clusters, instances, quotas, servers
from pgfleet.domains.servers import Server
from pgfleet.domains.sizing.service import describe


def _compute_changed(ctx: StepContext, record: dict[str, Any]) -> bool:
    previous = ctx.params["previous"]
    return bool(previous["cpu"] != record["cpu"] or previous["memory"] != record["memory"])


def _server(ctx: StepContext, kind: str) -> Server:
    server = servers.get(ctx.ports, kind, ctx.resource_id)
    if server is None:
        raise InvalidState(f"{kind} {ctx.resource_id} no longer exists")
    return server


def _enforce_storage(kind: str) -> Any:
    def step(ctx: StepContext) -> str:
        lines = quotas.evaluate(ctx.ports, _server(ctx, kind))
        return "; ".join(lines) if lines else "usage within the new limits"

    return step


def _mark_resized(kind: str) -> Any:
    def step(ctx: StepContext) -> str:
        record = _server(ctx, kind).record
        reason = f"resized to {describe(record)}; {record.get('limits') or 'limits unchanged'}"
        if kind == clusters.KIND:
            clusters.refresh_topology(ctx.ports, record, status="running", status_reason=reason)
        else:
            resources.set_status(ctx, instances.INSTANCE, "running", reason)
        return reason

    return step


# --- a single instance ------------------------------------------------------------------------


def _instance_reconfigure(ctx: StepContext) -> str:
    record = resources.step_record(ctx, instances.INSTANCE)
    reason = ctx.ports.engine.provision(instances.server_spec(record))
    return f"{reason}; settings sized for {record['memory']} MB and {record['cpu']} CPU"


def _instance_restart(ctx: StepContext) -> str:
    record = resources.step_record(ctx, instances.INSTANCE)
    if not _compute_changed(ctx, record):
        return "storage only: no restart needed"
    return ctx.ports.engine.restart(instances.server_spec(record))


def _instance_limits(ctx: StepContext) -> str:
    record = resources.step_record(ctx, instances.INSTANCE)
    limits = ctx.ports.engine.apply_resources(instances.server_spec(record))
    ctx.ports.store.update(instances.KIND, record["id"], {"limits": limits})
    return limits


# --- a cluster: rolling --------------------------------------------------------------------------


def _cluster(ctx: StepContext) -> dict[str, Any]:
    return resources.step_record(ctx, clusters.CLUSTER)


def _cluster_reconfigure(ctx: StepContext) -> str:
    return ctx.ports.cluster_engine.reconfigure(clusters.cluster_spec(_cluster(ctx)))


def _remember(ctx: StepContext, **params: Any) -> None:
    """Keep a decision in the operation's params, for the steps after a crash."""
    ctx.ports.store.update(operations.KIND, ctx.operation["id"], {"params": {**ctx.params, **params}})


def _restart_replicas(ctx: StepContext) -> str:
    record = _cluster(ctx)
    if not _compute_changed(ctx, record):
        return "storage only: no restart needed"
    members = ctx.ports.cluster_engine.members(record["id"])
    primary = next((m.node_id for m in members if m.role == "primary" and m.running), None)
    if primary is None:
        raise EngineError(f"cluster {record['id']} has no running primary")
    if "old_primary" not in ctx.params:
        _remember(ctx, old_primary=primary)
    spec = clusters.cluster_spec(record)
    done = [ctx.ports.cluster_engine.restart_node(spec, m.node_id) for m in members if m.node_id != primary]
    return "; ".join(done) or "no replica to restart"


def _switchover(ctx: StepContext) -> str:
    record = _cluster(ctx)
    old = ctx.params.get("old_primary")
    if old is None:
        return "no switchover needed"
    status = ctx.ports.cluster_engine.replication_status(record["id"])
    if status.primary != old:
        return f"{status.primary} is already the primary"
    candidates = sorted(status.replicas, key=lambda r: (not r.is_healthy, r.lag_bytes))
    if not candidates:
        return "single node: its restart is the only interruption"
    errors = []
    # In a synchronous mode Patroni switches over only to a synchronous standby: try them in turn.
    for replica in candidates:
        try:
            return ctx.ports.cluster_engine.switchover(record["id"], replica.node_name)
        except EngineError as exc:
            errors.append(f"{replica.node_name}: {exc}")
    raise EngineError("no replica could take over: " + "; ".join(errors))


def _restart_old_primary(ctx: StepContext) -> str:
    old = ctx.params.get("old_primary")
    if old is None:
        return "no restart needed"
    return ctx.ports.cluster_engine.restart_node(clusters.cluster_spec(_cluster(ctx)), old)


def _cluster_limits(ctx: StepContext) -> str:
    record = _cluster(ctx)
    limits = ctx.ports.cluster_engine.apply_resources(clusters.cluster_spec(record))
    ctx.ports.store.update(clusters.KIND, record["id"], {"limits": limits})
    return limits


def _cluster_resize_failed(ctx: StepContext, error: str) -> None:
    # A rolling change that stopped part-way leaves a cluster that still serves; reconcile
    # repairs a node that did not come back.
    if ctx.ports.store.get(clusters.KIND, ctx.resource_id) is not None:
        resources.set_status(ctx, clusters.CLUSTER, "running", f"resize failed: {error}")


# Declared in this domain's manifest; the handlers register them.
WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        "instance.resize",
        (
            ("reconfigure", _instance_reconfigure),
            ("restart", _instance_restart),
            ("apply_limits", _instance_limits),
            ("enforce_storage", _enforce_storage(instances.KIND)),
            ("mark_running", _mark_resized(instances.KIND)),
        ),
        resources.mark_failed(instances.INSTANCE),
    ),
    Workflow(
        "cluster.resize",
        (
            ("reconfigure", _cluster_reconfigure),
            ("restart_replicas", _restart_replicas),
            ("switchover", _switchover),
            ("restart_old_primary", _restart_old_primary),
            ("apply_limits", _cluster_limits),
            ("enforce_storage", _enforce_storage(clusters.KIND)),
            ("mark_running", _mark_resized(clusters.KIND)),
        ),
        _cluster_resize_failed,
    ),
)
