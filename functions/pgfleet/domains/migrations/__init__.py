"""migrations: a single instance moved into an HA cluster, `/api/v1/postgres/migrate`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.core.operations import Cascade
from pgfleet.domains import clusters, instances
from pgfleet.domains.migrations import routes, workflows
from pgfleet.domains.migrations.models import Migration, MigrationCreate
from pgfleet.domains.migrations.service import forget_cluster, forget_source, reconcile

DOMAIN = Domain(
    name="migrations",
    mounts=(Mount(routes.router, "/api/v1/postgres/migrate"),),
    workflows=workflows.WORKFLOWS,
    # The old endpoint forwards while both the source and the cluster exist.
    cascades=(
        Cascade(instances.KIND, "migrations", forget_source),
        Cascade(clusters.KIND, "migrations", forget_cluster),
    ),
)

__all__ = ["DOMAIN", "Migration", "MigrationCreate", "reconcile"]
