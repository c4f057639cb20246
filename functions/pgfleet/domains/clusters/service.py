"""HA clusters: Patroni nodes behind one multi-host endpoint.

The record holds the desired shape (node list with reserved ports, replication mode) and the
last observed topology (roles, timelines, lag). Patroni is the source of truth for who is
primary: reads overlay the live topology, reconcile persists it and repairs dead nodes.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from pgfleet.core import admission, operations, resources
from pgfleet.core import port_allocation as ports_allocation
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.core.resources import ResourceType
from pgfleet.domains import archive, instances
from pgfleet.domains.clusters.models import ClusterCreate
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec, NodeState, Upstream
from pgfleet.ports.metadata import Create

CLUSTER = ResourceType(
    kind="cluster",
    public_fields=(
        "id",
        "name",
        "tenant_id",
        "status",
        "status_reason",
        "version",
        "node_count",
        "replication_mode",
        "primary",
        "nodes",
        "cpu",
        "memory",
        "storage",
        "database",
        "username",
        "created_at",
        "updated_at",
        "operation_id",
        "pooler",  # performance: connections/configure
    ),  # fmt: skip
    transitions=resources.standard_transitions("cluster"),
)
KIND = CLUSTER.kind
NODE_PUBLIC_FIELDS = ("id", "name", "role", "state", "endpoint", "timeline", "lag_bytes")
HEALTHY_TIMEOUT = 180


def secret_name(record: dict[str, Any]) -> str:
    return f"clusters/{record['id']}/{record['username']}"


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    view = {**resources.public_view(CLUSTER, record), "engine": instances.engine_of(record)}
    view["nodes"] = [{k: n.get(k) for k in NODE_PUBLIC_FIELDS} for n in record["nodes"]]
    view["node_count"] = len(record["nodes"])
    return view


def view(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a cluster: the record's public fields and the state of its
    backups, read from its first backup (see archive.lifecycle.backup_state)."""
    return {**public_view(record), **archive.lifecycle.backup_state(ports, record)}


def cluster_spec(record: dict[str, Any]) -> ClusterSpec:
    return ClusterSpec(
        cluster_id=record["id"],
        version=record["version"],
        nodes=tuple(NodeSpec(n["id"], n["endpoint"]["port"], n["rest_port"]) for n in record["nodes"]),
        replication_mode=record["replication_mode"],
        cpu=record["cpu"],
        memory_mb=record["memory"],
        storage_gb=record["storage"],
        # backups: every node carries the same archive settings (pgfleet.domains.archive.service).
        settings={**record.get("settings", {}), **record.get("archive_settings", {})},
        # a standby cluster (a migration into a cluster) until its promotion clears it
        standby_of=Upstream(**record["standby_of"]) if record.get("standby_of") else None,
    )


def credentials(record: dict[str, Any], password: str) -> dict[str, Any]:
    hosts = [n["endpoint"] for n in record["nodes"]]
    args = (record["username"], password, hosts, record["database"])
    return {
        "username": record["username"],
        "password": password,
        "uri": instances.connection_uri(
            *args, query="target_session_attrs=read-write", version=record.get("version")
        ),
        "read_only_uri": instances.connection_uri(
            *args, query="target_session_attrs=prefer-standby", version=record.get("version")
        ),
        **instances.tls_credentials(*args, record.get("version"), query="target_session_attrs=read-write"),
    }


def new_nodes(
    ports: Ports, cluster_id: str, name: str, existing: list[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """Nodes n1..n9 (short ids keep unix socket paths short), each with a PostgreSQL and a
    Patroni REST port reserved."""
    used = {n["id"] for n in existing}
    free_ids = [f"n{i}" for i in range(1, 10) if f"n{i}" not in used][:count]
    reserved = ports_allocation.reserve(ports, cluster_id, count=2 * len(free_ids))
    host = ports.engine.host
    return [
        {
            "id": node_id,
            "name": f"{name}-{node_id}",
            "role": "unknown",
            "state": "creating",
            "endpoint": {"host": host, "port": reserved[2 * i]},
            "rest_port": reserved[2 * i + 1],
            "timeline": None,
            "lag_bytes": None,
        }
        for i, node_id in enumerate(free_ids)
    ]


def create(
    ports: Ports,
    principal: Principal,
    body: ClusterCreate,
    idempotency_key: str | None = None,
    *,
    workflow: str = "cluster.create",
    params: dict[str, Any] | None = None,
    password: str | None = None,
    standby_of: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Accept a create request (a restore into a new cluster runs its own `workflow`). A
    migration passes the `password` its copied role already has and the upstream
    (`standby_of`: host, port, slot) the cluster follows until its promotion."""
    tenant = principal.tenant_id
    body_fingerprint = resources.fingerprint(body)
    earlier = resources.replayed_create(ports, CLUSTER, tenant, idempotency_key, body_fingerprint)
    if earlier is not None:
        return {
            **public_view(earlier),
            "credentials": credentials(earlier, ports.secrets.get(secret_name(earlier)) or ""),
        }
    instances.require_supported_version(ports, body.version, ports.cluster_engine.supported_versions())
    admission.admit(
        ports,
        tenant,
        admission.Demand.servers(
            body.node_count, cpu=body.cpu, memory_mb=body.memory, storage_gb=body.storage, instance=True
        ),
        f"cluster {body.name} ({body.node_count} nodes)",
    )
    cluster_id = new_id("pgc")
    nodes = new_nodes(ports, cluster_id, body.name, [], body.node_count)
    now = utcnow_iso()
    op = operations.new_operation(workflow, cluster_id, tenant, params)
    record: dict[str, Any] = {
        "id": cluster_id,
        "tenant_id": tenant,
        "name": body.name,
        "status": "creating",
        "status_reason": "accepted; waiting for the worker",
        "desired_state": "running",
        "engine": ports.settings.engine,
        "version": body.version,
        "node_count": body.node_count,
        "replication_mode": body.replication_mode,
        "primary": None,
        "nodes": nodes,
        "cpu": body.cpu,
        "memory": body.memory,
        "storage": body.storage,
        "database": body.database,
        "username": body.username,
        "created_at": now,
        "updated_at": now,
        "operation_id": op["id"],
        "created_by": principal.sub,
    }
    if standby_of is not None:
        record["standby_of"] = standby_of
    # As for instances: the password, then the record, its name and its operation at once.
    password = password or secrets.token_urlsafe(24)
    try:
        ports.secrets.put(secret_name(record), password)
        record = operations.submit_with(
            ports, Create(KIND, record, unique_keys=(resources.name_key(CLUSTER, tenant, body.name),)), op
        )
    except Exception:
        if ports.store.get(KIND, cluster_id) is None:
            release_ports(ports, cluster_id, nodes)
            ports.secrets.delete(secret_name(record))
        raise
    resources.remember_create(ports, CLUSTER, tenant, idempotency_key, cluster_id, body_fingerprint)
    return {**public_view(record), "credentials": credentials(record, password)}


def release_ports(ports: Ports, cluster_id: str, nodes: list[dict[str, Any]]) -> None:
    for node in nodes:
        ports_allocation.release(ports, node["endpoint"]["port"], cluster_id)
        ports_allocation.release(ports, node["rest_port"], cluster_id)


def get_visible(ports: Ports, principal: Principal, cluster_id: str, live: bool = True) -> dict[str, Any]:
    record = resources.get_visible(ports, principal, CLUSTER, cluster_id)
    return with_live_topology(ports, record) if live else record


def list_visible(
    ports: Ports, principal: Principal, limit: int, next_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    return resources.list_visible(ports, principal, CLUSTER, limit, next_token)


def transition(
    ports: Ports, principal: Principal, cluster_id: str, action: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    return resources.transition(ports, principal, CLUSTER, cluster_id, action, params)


# --- topology --------------------------------------------------------------------------------


def apply_members(record: dict[str, Any], members: list[NodeState]) -> dict[str, Any]:
    """The record's nodes with roles, states, timelines and lag as Patroni reports them."""
    by_id = {m.node_id: m for m in members}
    nodes = []
    for node in record["nodes"]:
        m = by_id.get(node["id"])
        if m is None:
            nodes.append(
                {**node, "role": "unknown", "state": "stopped" if node["state"] != "creating" else "creating"}
            )
        else:
            nodes.append({**node, "role": m.role, "state": m.state if m.running else "stopped",
                          "timeline": m.timeline, "lag_bytes": m.lag_bytes})  # fmt: skip
    primary = next((m.node_id for m in members if m.role == "primary" and m.running), None)
    return {**record, "nodes": nodes, "primary": primary}


def with_live_topology(ports: Ports, record: dict[str, Any]) -> dict[str, Any]:
    if record["status"] in ("creating", "deleting", "stopped", "paused"):
        return record
    try:
        return apply_members(record, ports.cluster_engine.members(record["id"]))
    except EngineError:
        return record


def refresh_topology(ports: Ports, record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Persist the live topology (and `changes`) into the record."""
    live = apply_members(record, ports.cluster_engine.members(record["id"]))
    return ports.store.update(
        KIND,
        record["id"],
        {"nodes": live["nodes"], "primary": live["primary"], "updated_at": utcnow_iso(), **changes},
        record["revision"],
    )


# --- scale, promote, replication ----------------------------------------------------------------


def scale(ports: Ports, principal: Principal, cluster_id: str, node_count: int) -> dict[str, Any]:
    record = get_visible(ports, principal, cluster_id, live=False)
    resources.require_status(record, CLUSTER, "scale", ("running",))
    if record["replication_mode"] == "sync_strict" and node_count < 2:
        raise InvalidState("a sync_strict cluster needs at least 2 nodes: commits wait for a replica")
    added = node_count - len(record["nodes"])
    admission.admit(
        ports,
        record["tenant_id"],
        admission.Demand.servers(
            added, cpu=record["cpu"], memory_mb=record["memory"], storage_gb=record["storage"], instance=False
        ),
        f"scaling cluster {record['name']} to {node_count} nodes",
    )
    return resources.begin(
        ports, principal, CLUSTER, record, action=f"scale to {node_count} nodes", transitional="scaling",
        workflow="cluster.scale", params={"node_count": node_count},
    )  # fmt: skip


def promote(ports: Ports, principal: Principal, cluster_id: str, node_id: str) -> dict[str, Any]:
    """Accept a promotion only of a replica that can take over now (see `promotion_refusal`):
    a bad candidate is a 409 with the reason, not an operation that fails later."""
    record = get_visible(ports, principal, cluster_id, live=False)
    resources.require_status(record, CLUSTER, "promote a node of", ("running",))
    if not any(n["id"] == node_id for n in record["nodes"]):
        raise NotFound(f"node {node_id} is not part of cluster {cluster_id}")
    try:
        members = ports.cluster_engine.members(cluster_id)
    except EngineError as exc:
        raise InvalidState(f"cannot promote {node_id}: the cluster's state is unknown ({exc})") from exc
    refusal = promotion_refusal(members, node_id, ports.settings.promote_max_lag_bytes)
    if refusal is not None:
        raise InvalidState(f"cannot promote {node_id}: {refusal}")
    return resources.begin(
        ports, principal, CLUSTER, record, action=f"promote {node_id}", transitional="promoting",
        workflow="cluster.promote", params={"node_id": node_id},
    )  # fmt: skip


def promotion_refusal(members: list[NodeState], node_id: str, max_lag_bytes: int) -> str | None:
    """Why `node_id` cannot be promoted now, or None. It must be a healthy replica of the
    running primary (`NodeState.replica_problem`: running, streaming, on the primary's
    timeline, at most `max_lag_bytes` behind), so the switchover keeps every acknowledged
    commit. Without a running primary Patroni is already electing the most up-to-date
    replica; forcing another one could lose commits."""
    primary = next((m for m in members if m.role == "primary" and m.running), None)
    node = next((m for m in members if m.node_id == node_id), None)
    if primary is not None and node_id == primary.node_id:
        return "it is already the primary"
    if primary is None:
        return "the cluster has no running primary (Patroni elects one by itself; promote once it has)"
    if node is None:
        return "Patroni does not list it (not running)"
    return node.replica_problem(primary, max_lag_bytes)


def replication_status(ports: Ports, principal: Principal, cluster_id: str) -> dict[str, Any]:
    record = get_visible(ports, principal, cluster_id, live=False)
    if record["status"] in ("creating", "stopped", "deleting"):
        raise InvalidState(f"cluster is {record['status']}; replication status needs running nodes")
    status = ports.cluster_engine.replication_status(cluster_id)
    return {
        "primary": status.primary,
        "replicas": [
            {
                "node_name": r.node_name,
                "lag_bytes": r.lag_bytes,
                "lag_seconds": r.lag_seconds,
                "state": r.state,
                "is_healthy": r.is_healthy,
            }  # fmt: skip
            for r in status.replicas
        ],
    }


def stats(ports: Ports, principal: Principal, cluster_id: str) -> dict[str, Any]:
    record = get_visible(ports, principal, cluster_id)
    nodes = []
    for node in record["nodes"]:
        if node["state"] in ("stopped", "creating"):
            continue
        try:
            s = ports.cluster_engine.node_stats(cluster_id, node["id"], record["database"])
        except EngineError:
            continue
        nodes.append({**instances.stats_view(s), "node_id": node["id"], "role": node["role"]})
    if not nodes:
        raise InvalidState("no node of the cluster is running")
    primary = next((n for n in nodes if n["role"] == "primary"), nodes[0])
    total = sum(n["connections"]["total"] for n in nodes)
    cluster = {
        "connections": {
            "active": sum(n["connections"]["active"] for n in nodes),
            "idle": sum(n["connections"]["idle"] for n in nodes),
            "total": total,
            "max": sum(n["connections"]["max"] for n in nodes),
        },
        "database_size_bytes": primary["database_size_bytes"],
        "uptime_seconds": primary["uptime_seconds"],
        "commits": sum(n["commits"] for n in nodes),
        "rollbacks": sum(n["rollbacks"] for n in nodes),
        "cache_hit_ratio": round(sum(n["cache_hit_ratio"] for n in nodes) / len(nodes), 6),
        "deadlocks": sum(n["deadlocks"] for n in nodes),
        "collected_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    return {"cluster": cluster, "nodes": nodes}


def logs(
    ports: Ports, principal: Principal, cluster_id: str, limit: int, node: str | None, since: datetime | None
) -> dict[str, Any]:
    record = get_visible(ports, principal, cluster_id, live=False)
    node_ids = [n["id"] for n in record["nodes"]]
    if node is not None and node not in node_ids:
        raise NotFound(f"node {node} is not part of cluster {cluster_id}")
    lines = []
    for node_id in [node] if node else node_ids:
        for line in ports.cluster_engine.node_logs(cluster_id, node_id, limit):
            if since is None or line.timestamp >= since:
                lines.append((line.timestamp, node_id, line))
    lines.sort(key=lambda t: (t[0], t[1]))
    return {"lines": [instances.log_view(line, node=node_id) for _, node_id, line in lines[-limit:]]}


# --- reconcile ---------------------------------------------------------------------------------


def reconcile(ports: Ports, record: dict[str, Any]) -> str | None:
    """Restart dead nodes of a cluster that should run, and persist Patroni's topology
    (a failover Patroni did by itself shows in the record, with the reason)."""
    if record.get("desired_state") != "running" or record["status"] != "running":
        return None
    members = {m.node_id: m for m in ports.cluster_engine.members(record["id"])}
    spec = cluster_spec(record)
    restarted, deferred = [], []
    alive = {n for n, m in members.items() if m.running}
    for node in spec.nodes:
        m = members.get(node.node_id)
        if m is not None and m.running:
            continue
        if m is not None and m.role == "primary" and alive:
            # The lost primary still holds the leader key: restarting it now would let it take
            # its leadership back. Patroni elects a replica once the key expires; restart after.
            deferred.append(node.node_id)
            continue
        ports.cluster_engine.start_node(spec, node)
        restarted.append(node.node_id)
    live = apply_members(record, list(members.values()))
    notes = []
    if deferred:
        notes.append(f"primary {', '.join(deferred)} is down; waiting for Patroni to elect a replica")
    if restarted:
        notes.append(f"restarted dead node(s) {', '.join(restarted)}")
    if live["primary"] and live["primary"] != record.get("primary"):
        notes.append(f"primary is now {live['primary']} (was {record.get('primary')}; failover by Patroni)")
    if not restarted and not deferred and alive == {n.node_id for n in spec.nodes}:
        # A cluster made before TLS was on gets it (a reload on each node: no restart).
        done = ports.cluster_engine.ensure_tls(spec)
        if done:
            notes.append(done)
    changes: dict[str, Any] = {"nodes": live["nodes"], "primary": live["primary"] or record.get("primary")}
    if notes:
        changes["status_reason"] = f"reconcile at {utcnow_iso()}: " + "; ".join(notes)
        changes["updated_at"] = utcnow_iso()
    if changes["nodes"] != record["nodes"] or notes:
        ports.store.update(KIND, record["id"], changes, record["revision"])
    return f"{record['id']}: {'; '.join(notes)}" if notes else None
