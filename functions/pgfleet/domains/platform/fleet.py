"""The managed servers as they are now, observed through the engines: whether each node
answers, its connections, the database's size, the replicas' lag, and when the last backup
completed. The detailed health (a bounded sample) and the metrics (every server in scope)
read the same observations.

Scope: a platform token sees every tenant's servers; any other token its own tenant's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import PgfleetError
from pgfleet.domains import archive, clusters, servers
from pgfleet.domains.platform import probes
from pgfleet.domains.servers import Server
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES
from pgfleet.ports.engine import ServerStats

log = logging.getLogger(__name__)

# A server in this status should answer; others (stopped, paused, on their way) are not asked.
SHOULD_ANSWER = "running"


@dataclass(frozen=True)
class NodeObservation:
    """One PostgreSQL server of a resource: the instance itself, or a cluster member."""

    node_id: str
    is_primary: bool
    up: bool  # it accepted a connection and answered the statistics query
    reason: str  # why it is not up ("" when it is)
    stats: ServerStats | None = None


@dataclass(frozen=True)
class ReplicaObservation:
    """A standby as its primary sees it (a read replica of an instance, a cluster replica)."""

    name: str
    state: str
    lag_bytes: int
    lag_seconds: float | None
    healthy: bool  # streaming and at most HEALTHY_LAG_BYTES behind


@dataclass(frozen=True)
class ServerObservation:
    server: Server
    nodes: tuple[NodeObservation, ...]  # empty when the server was not asked (not running)
    replicas: tuple[ReplicaObservation, ...]
    last_backup_at: datetime | None  # when its last physical backup completed
    problems: tuple[str, ...] = ()  # what could not be observed, and why

    @property
    def asked(self) -> bool:
        return bool(self.nodes)

    @property
    def primary(self) -> NodeObservation | None:
        return next((n for n in self.nodes if n.is_primary), None)


def scope_tenant(principal: Principal) -> str | None:
    """The tenant whose servers the caller sees; None for every tenant (a platform token)."""
    return None if principal.is_platform_admin else principal.tenant_id


def in_scope(ports: Ports, principal: Principal) -> Iterator[Server]:
    """The caller's instances and clusters, read a page at a time."""
    return servers.all_servers(ports, scope_tenant(principal))


def sample(ports: Ports, principal: Principal, size: int) -> list[Server]:
    """The first `size` servers of the caller's that should answer (instances first, oldest
    first): reading stops once they are found."""
    found = []
    for server in in_scope(ports, principal):
        if server.record.get("status") == SHOULD_ANSWER:
            found.append(server)
            if len(found) == size:
                break
    return found


def node_ids(server: Server) -> list[str]:
    """The nodes of a server as its record lists them (the instance itself for an instance)."""
    if server.kind == clusters.KIND:
        return [str(n["id"]) for n in server.record.get("nodes", [])]
    return [server.id]


def observe(ports: Ports, server: Server) -> ServerObservation:
    """Observe one server: its nodes and replicas when its status says it should answer,
    and its last backup always. Never raises for what the server does: a node that does
    not answer is down with the reason, and what could not be read is in `problems`."""
    nodes: list[NodeObservation] = []
    replicas: list[ReplicaObservation] = []
    problems: list[str] = []
    if server.record.get("status") == SHOULD_ANSWER:
        observe_nodes = _observe_cluster if server.kind == clusters.KIND else _observe_instance
        observe_nodes(ports, server, nodes, replicas, problems)
    last = archive.records.latest_completed(ports, server.id)
    finished = last.get("finished_at") if last else None
    return ServerObservation(
        server=server,
        nodes=tuple(nodes),
        replicas=tuple(replicas),
        last_backup_at=archive.records.parse_iso(finished) if finished else None,
        problems=tuple(problems),
    )


def _observe_instance(
    ports: Ports,
    server: Server,
    nodes: list[NodeObservation],
    replicas: list[ReplicaObservation],
    problems: list[str],
) -> None:
    state = ports.engine.state(server.id)
    if not state.running:
        nodes.append(NodeObservation(server.id, True, False, state.reason or "not running"))
        return
    try:
        stats = ports.engine.stats(server.id, server.record["database"])
    except PgfleetError as exc:
        nodes.append(NodeObservation(server.id, True, False, str(exc)))
        return
    nodes.append(NodeObservation(server.id, True, True, "", stats))
    try:
        standbys = ports.engine.replica_status(server.id)
    except PgfleetError as exc:
        problems.append(f"replication status: {exc}")
        return
    replicas.extend(
        ReplicaObservation(
            name=s.application_name or s.slot or "?",
            state=s.state,
            lag_bytes=s.lag_bytes,
            lag_seconds=s.lag_seconds,
            healthy=s.state == "streaming" and s.lag_bytes <= HEALTHY_LAG_BYTES,
        )
        for s in standbys
    )


def _observe_cluster(
    ports: Ports,
    server: Server,
    nodes: list[NodeObservation],
    replicas: list[ReplicaObservation],
    problems: list[str],
) -> None:
    members = ports.cluster_engine.members(server.id)
    listed = {m.node_id for m in members}
    for member in members:
        primary = member.role == "primary"
        if not member.running:
            nodes.append(NodeObservation(member.node_id, primary, False, f"not running ({member.state})"))
            continue
        try:
            stats = ports.cluster_engine.node_stats(server.id, member.node_id, server.record["database"])
        except PgfleetError as exc:
            nodes.append(NodeObservation(member.node_id, primary, False, str(exc)))
            continue
        nodes.append(NodeObservation(member.node_id, primary, True, "", stats))
    for node_id in node_ids(server):
        if node_id not in listed:
            nodes.append(NodeObservation(node_id, False, False, "Patroni does not list it"))
    if not any(n.is_primary and n.up for n in nodes):
        return
    try:
        status = ports.cluster_engine.replication_status(server.id)
    except PgfleetError as exc:
        problems.append(f"replication status: {exc}")
        return
    replicas.extend(
        ReplicaObservation(r.node_name, r.state, r.lag_bytes, r.lag_seconds, r.is_healthy)
        for r in status.replicas
    )


def build_engines(ports: Ports) -> None:
    """Build the engines once, on this thread, before probes use them from several (two
    threads reading a cached property at once would build two). One that cannot be built is
    left to the probes that use it, which report why."""
    for name in ("engine", "cluster_engine"):
        try:
            getattr(ports, name)
        except Exception:  # each probe that needs it reports why
            continue


def observe_all(
    ports: Ports, targets: list[Server], timeout: float, workers: int = 8
) -> list[tuple[Server, probes.Outcome[ServerObservation]]]:
    """Observe the servers side by side, for at most `timeout` seconds in all."""
    build_engines(ports)
    outcomes = probes.run({s.id: functools.partial(observe, ports, s) for s in targets}, timeout, workers)
    for server in targets:
        error = outcomes[server.id].error
        if error is not None and not isinstance(error, PgfleetError):
            log.warning("observing %s %s failed", server.kind, server.id, exc_info=error)
    return [(s, outcomes[s.id]) for s in targets]
