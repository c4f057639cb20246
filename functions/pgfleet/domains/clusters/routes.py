"""/api/v1/postgres/cluster: HA clusters (Patroni)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.lifecycle_routes import add_lifecycle_routes
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.clusters import service as clusters
from pgfleet.domains.clusters.models import (
    Cluster,
    ClusterCreate,
    ClusterCreated,
    ClusterList,
    ClusterLogs,
    ClusterPromote,
    ClusterScale,
    ClusterStats,
    ReplicationStatus,
)

router = Router()

ClusterId = Annotated[str, Path(pattern=r"^pgc-[0-9a-f]{12}$", description="Cluster id.")]


def _view(record: dict[str, Any]) -> Cluster:
    return Cluster.model_validate(clusters.view(ports(), record))


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    return clusters.view(ports(), record)


@router.post("/", summary="Create an HA cluster", status_code=202)
@requires("postgres:write")
def create_cluster(body: ClusterCreate) -> ClusterCreated:
    created = clusters.create(ports(), principal(router), body, header(router, "Idempotency-Key"))
    return ClusterCreated.model_validate(created)


@router.get("/", summary="List clusters")
@requires("postgres:read")
def list_clusters(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> ClusterList:
    records, token = clusters.list_visible(ports(), principal(router), limit, next_token)
    return ClusterList(clusters=[_view(r) for r in records], next_token=token)


@router.get("/<resource_id>", summary="Get a cluster, with its live topology")
@requires("postgres:read")
def get_cluster(resource_id: ClusterId) -> Cluster:
    return _view(clusters.get_visible(ports(), principal(router), resource_id))


add_lifecycle_routes(router, "cluster", ClusterId, Cluster, clusters.transition, _shown)


@router.post("/<resource_id>/scale", summary="Add or remove replicas", status_code=202)
@requires("postgres:write")
def scale_cluster(resource_id: ClusterId, body: ClusterScale) -> Cluster:
    return _view(clusters.scale(ports(), principal(router), resource_id, body.node_count))


@router.post(
    "/<resource_id>/promote", summary="Make a replica the primary (switchover or failover)", status_code=202
)
@requires("postgres:write")
def promote_replica(resource_id: ClusterId, body: ClusterPromote) -> Cluster:
    return _view(clusters.promote(ports(), principal(router), resource_id, body.node_id))


@router.get("/<resource_id>/replication/status", summary="Replication state read live from Patroni")
@requires("postgres:read")
def replication_status(resource_id: ClusterId) -> ReplicationStatus:
    return ReplicationStatus.model_validate(
        clusters.replication_status(ports(), principal(router), resource_id)
    )


@router.get("/<resource_id>/stats", summary="Live statistics per node and for the cluster")
@requires("postgres:read")
def cluster_stats(resource_id: ClusterId) -> ClusterStats:
    return ClusterStats.model_validate(clusters.stats(ports(), principal(router), resource_id))


@router.get("/<resource_id>/logs", summary="Log lines of all nodes, merged, newest last")
@requires("postgres:read")
def cluster_logs(
    resource_id: ClusterId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    node: Annotated[
        str | None, Query(pattern=r"^n[1-9][0-9]?$", description="Only this node's lines.")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only lines at or after this time (ISO 8601).")
    ] = None,
) -> ClusterLogs:
    return ClusterLogs.model_validate(
        clusters.logs(ports(), principal(router), resource_id, limit, node, since)
    )
