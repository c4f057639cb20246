"""quotas: storage and connection quotas of instances and clusters, measured every minute,
`/api/v1/postgres/{single|cluster}/{id}/quota`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.quotas import routes, service
from pgfleet.domains.quotas.models import Quota, QuotaUpdate
from pgfleet.domains.quotas.service import evaluate

DOMAIN = Domain(
    name="quotas",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
    ),
    tasks={"quotas": service.run},
    schedules=(service.SCHEDULE,),
)

__all__ = [
    "DOMAIN",
    "Quota",
    "QuotaUpdate",
    "evaluate",
]
