"""upgrades: major-version upgrades of instances and clusters, in place (pg_upgrade) or
blue/green (logical replication and a cutover),
`/api/v1/postgres/{single|cluster}/{id}/upgrade` and `/upgrade/check`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.upgrades import blue_green, cluster_in_place, in_place, routes
from pgfleet.domains.upgrades.models import UpgradeAccepted, UpgradeCheck, UpgradeRequest

DOMAIN = Domain(
    name="upgrades",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
    ),
    workflows=(*in_place.WORKFLOWS, *cluster_in_place.WORKFLOWS, *blue_green.WORKFLOWS),
    cascades=blue_green.CASCADES,
)

reconcile = blue_green.expire_kept

__all__ = ["DOMAIN", "reconcile", "UpgradeAccepted", "UpgradeCheck", "UpgradeRequest"]
