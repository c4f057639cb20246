"""backups: both API families over one catalogue.

- `/api/v1/postgres/{single|cluster}/{id}/backup...` and `.../restore` (seed 000);
- `/api/v1/backup/...` (seed 003: execute, status, list, verify, recovery).
"""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains import archive
from pgfleet.domains.backups import family_routes, routes, service, verification, workflows

DOMAIN = Domain(
    name="backups",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
        Mount(family_routes.router, "/api/v1/backup"),
    ),
    workflows=service.WORKFLOWS + verification.WORKFLOWS + workflows.WORKFLOWS,
    # a resource's scheduled backup (schedules made per resource), and expiry of old backups
    tasks={"backup": service.run_scheduled},
    schedules=(archive.schedules.EXPIRY_SCHEDULE,),
)

start_backup = service.start_backup
active_backup = service.active_backup
latest_verified = verification.latest_verified  # compliance: a backup verified recently

__all__ = ["DOMAIN", "active_backup", "latest_verified", "start_backup"]
