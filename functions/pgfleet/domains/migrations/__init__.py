"""migrations: a single instance moved into an HA cluster, `/api/v1/postgres/migrate`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.migrations import routes, workflows
from pgfleet.domains.migrations.models import Migration, MigrationCreate

DOMAIN = Domain(
    name="migrations",
    mounts=(Mount(routes.router, "/api/v1/postgres/migrate"),),
    workflows=workflows.WORKFLOWS,
)

__all__ = ["DOMAIN", "Migration", "MigrationCreate"]
