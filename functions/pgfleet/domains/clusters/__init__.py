"""clusters: HA clusters run by Patroni, `/api/v1/postgres/cluster`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.clusters import routes, workflows
from pgfleet.domains.clusters.models import (
    Cluster,
    ClusterCreate,
    ClusterCreated,
    ClusterCredentials,
    NodeCount,
)
from pgfleet.domains.clusters.routes import ClusterId
from pgfleet.domains.clusters.service import (
    CLUSTER,
    HEALTHY_TIMEOUT,
    KIND,
    cluster_spec,
    create,
    credentials,
    public_view,
    reconcile,
    refresh_topology,
    secret_name,
    view,
)
from pgfleet.domains.clusters.workflows import (
    create_database_step,
    mark_created_step,
    mark_running_step,
    provision_step,
    start_nodes_step,
    stop_nodes_step,
    wait_healthy_step,
)

DOMAIN = Domain(
    name="clusters",
    mounts=(Mount(routes.router, "/api/v1/postgres/cluster"),),
    workflows=workflows.WORKFLOWS,
)

__all__ = [
    "secret_name",
    "DOMAIN",
    "CLUSTER",
    "Cluster",
    "ClusterCreate",
    "ClusterCreated",
    "ClusterCredentials",
    "ClusterId",
    "HEALTHY_TIMEOUT",
    "KIND",
    "NodeCount",
    "cluster_spec",
    "create",
    "create_database_step",
    "credentials",
    "mark_created_step",
    "mark_running_step",
    "provision_step",
    "public_view",
    "reconcile",
    "refresh_topology",
    "start_nodes_step",
    "stop_nodes_step",
    "view",
    "wait_healthy_step",
]
