"""Single instances and HA clusters seen alike, for what works the same on both: tenants,
quotas, resize, pause. A `Server` is a visible resource record with its type; its
`DatabaseAdmin` runs SQL on the instance or on the cluster's current primary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pgfleet.core import auth, resources
from pgfleet.core.auth import Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError, InvalidState, NotFound, ServiceError, ValidationFailed
from pgfleet.core.resources import ResourceType
from pgfleet.domains import clusters, instances
from pgfleet.ports.database_admin import DatabaseAdmin

TYPES: dict[str, ResourceType] = {instances.KIND: instances.INSTANCE, clusters.KIND: clusters.CLUSTER}
MB = 1024 * 1024


class ServerUnavailable(ServiceError):
    """The server should answer but does not (503): the request may be retried."""

    status = 503
    code = "server_unavailable"


@dataclass(frozen=True)
class Server:
    kind: str  # "instance" | "cluster"
    record: dict[str, Any]

    @property
    def rtype(self) -> ResourceType:
        return TYPES[self.kind]

    @property
    def id(self) -> str:
        return str(self.record["id"])


def get_visible(ports: Ports, principal: Principal, kind: str, resource_id: str) -> Server:
    """The caller's instance or cluster (404 for another tenant's)."""
    return Server(kind, resources.get_visible(ports, principal, TYPES[kind], resource_id))


def get(ports: Ports, kind: str, resource_id: str) -> Server | None:
    record = ports.store.get(kind, resource_id)
    return Server(kind, record) if record is not None else None


def all_servers(ports: Ports, tenant_id: str | None = None) -> Iterator[Server]:
    """Every instance and cluster, of every tenant (scheduled tasks) or of `tenant_id`;
    instances first, each kind oldest first, read a page at a time as the caller goes on."""
    for kind in TYPES:
        token = None
        while True:
            page, token = ports.store.list(kind, tenant_id=tenant_id, limit=100, next_token=token)
            yield from (Server(kind, record) for record in page)
            if not token:
                break


def admin(ports: Ports, server: Server) -> DatabaseAdmin:
    """The server's DatabaseAdmin; 503 when the engine cannot reach it."""
    try:
        if server.kind == clusters.KIND:
            return ports.cluster_engine.database_admin(server.id)
        return ports.engine.database_admin(server.id)
    except EngineError as exc:
        raise ServerUnavailable(f"{server.kind} {server.id} cannot be reached: {exc}") from exc


def endpoints(server: Server) -> list[dict[str, Any]]:
    """Where clients connect: one endpoint, or every node of a cluster."""
    if server.kind == clusters.KIND:
        return [n["endpoint"] for n in server.record["nodes"]]
    return [server.record["endpoint"]]


def connection_uri(server: Server, username: str, password: str, database: str) -> str:
    """A libpq URI for a user of the server (read-write endpoint for a cluster)."""
    query = "target_session_attrs=read-write" if server.kind == clusters.KIND else ""
    return instances.connection_uri(
        username, password, endpoints(server), database, query=query, version=server.record.get("version")
    )


def tls_credentials(server: Server, username: str, password: str, database: str) -> dict[str, Any]:
    """`verified_uri` and `ca_certificate` of a user of the server (instances.tls_credentials)."""
    query = "target_session_attrs=read-write" if server.kind == clusters.KIND else ""
    return instances.tls_credentials(
        username, password, endpoints(server), database, server.record.get("version"), query=query
    )


# --- the scope rule of seed 003 (targetId, tenantId, or every server the caller may see) -------


@dataclass(frozen=True)
class Target:
    """One server a call looks at: an instance, or a cluster's primary (or named node)."""

    server: Server
    node: str | None = None

    @property
    def target_id(self) -> str:
        return self.server.id

    @property
    def tenant_id(self) -> str:
        return str(self.server.record["tenant_id"])

    @property
    def running(self) -> bool:
        return self.server.record.get("status") == "running"


def kind_of(target_id: str) -> str:
    if target_id.startswith("pgi-"):
        return instances.KIND
    if target_id.startswith("pgc-"):
        return clusters.KIND
    raise ValidationFailed(
        f"targetId {target_id!r} is neither an instance (pgi-...) nor a cluster (pgc-...)",
        details={"field": "targetId"},
    )


def targets(
    ports: Ports,
    principal: Principal,
    target_id: str | None,
    tenant_id: str | None,
    node: str | None = None,
    *,
    require_running: bool = True,
    what: str = "it",
) -> list[Target]:
    """The servers of a call. An explicit `targetId` that is not running is a 409 with its
    status when `require_running` (`what` names what cannot be read: "its locks"); in a tenant
    or fleet scope such servers are skipped."""
    tenant = auth.tenant_scope(principal, tenant_id)
    if node is not None and (target_id is None or not target_id.startswith("pgc-")):
        raise ValidationFailed(
            "node names a member of a cluster: give the cluster's targetId", details={"field": "node"}
        )
    if target_id is not None:
        server = get_visible(ports, principal, kind_of(target_id), target_id)
        if tenant is not None and server.record["tenant_id"] != tenant:
            raise NotFound(f"{server.kind} {target_id} not found")
        if node is not None and node not in {n["id"] for n in server.record.get("nodes", [])}:
            raise NotFound(f"cluster {target_id} has no node {node}")
        target = Target(server, node)
        if require_running and not target.running:
            raise InvalidState(
                f"{server.kind} {target_id} is {server.record.get('status')}: {what} can be read only while it runs",
                details={"status": server.record.get("status")},
            )
        return [target]
    found = [Target(s) for s in all_servers(ports, tenant)]
    return [t for t in found if t.running] if require_running else found
