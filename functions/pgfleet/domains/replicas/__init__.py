"""replicas: read replicas of single instances, `/api/v1/postgres/single/{id}/replicas`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.core.operations import Cascade
from pgfleet.domains import instances
from pgfleet.domains.replicas import routes, workflows
from pgfleet.domains.replicas.models import Replica, ReplicaCreate
from pgfleet.domains.replicas.service import reconcile
from pgfleet.domains.replicas.workflows import rebuild_all_for_instance

DOMAIN = Domain(
    name="replicas",
    mounts=(Mount(routes.router, "/api/v1/postgres/single"),),
    workflows=workflows.WORKFLOWS,
    # An instance's delete destroys its replicas first.
    cascades=(Cascade(instances.KIND, "replicas", workflows.destroy_all_for_instance),),
)

__all__ = [
    "DOMAIN",
    "Replica",
    "ReplicaCreate",
    "reconcile",
    "rebuild_all_for_instance",
]
