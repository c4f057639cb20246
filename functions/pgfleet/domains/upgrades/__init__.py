"""upgrades: major-version upgrades of instances and clusters, in place (pg_upgrade) or
blue/green (logical replication and a cutover),
`/api/v1/postgres/{single|cluster}/{id}/upgrade` and `/upgrade/check`."""

from pgfleet.core.context import Ports
from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.upgrades import blue_green, blue_green_cluster, cluster_in_place, in_place, routes
from pgfleet.domains.upgrades.models import UpgradeAccepted, UpgradeCheck, UpgradeRequest

DOMAIN = Domain(
    name="upgrades",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
    ),
    workflows=(
        *in_place.WORKFLOWS,
        *cluster_in_place.WORKFLOWS,
        *blue_green.WORKFLOWS,
        *blue_green_cluster.WORKFLOWS,
    ),
    cascades=(*blue_green.CASCADES, *blue_green_cluster.CASCADES),
)


def reconcile(ports: Ports) -> list[str]:
    """Servers and clusters kept by blue/green upgrades, removed past their retention."""
    return [*blue_green.expire_kept(ports), *blue_green_cluster.expire_kept(ports)]


__all__ = ["DOMAIN", "reconcile", "UpgradeAccepted", "UpgradeCheck", "UpgradeRequest"]
