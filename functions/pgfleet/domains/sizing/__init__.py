"""sizing: resize, pause and resume of instances and clusters,
`/api/v1/postgres/{single|cluster}/{id}/{resize|pause|resume}`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.sizing import routes, workflows

DOMAIN = Domain(
    name="sizing",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
    ),
    workflows=workflows.WORKFLOWS,
)

__all__ = ["DOMAIN"]
