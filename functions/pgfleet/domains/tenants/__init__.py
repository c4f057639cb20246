"""tenants: tenant databases or schemas on an instance or a cluster,
`/api/v1/postgres/{single|cluster}/{id}/tenants`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.tenants import routes, workflows
from pgfleet.domains.tenants.models import TenantCreate, TenantCreated, tenant_stem
from pgfleet.domains.tenants.service import (
    ACTIVE,
    KIND,
    forget,
    move,
    of_server,
    reconcile,
    require_no_tenant_operation,
    secret_name,
    spec,
    usage_view,
)

DOMAIN = Domain(
    name="tenants",
    mounts=(
        Mount(routes.single_router, "/api/v1/postgres/single"),
        Mount(routes.cluster_router, "/api/v1/postgres/cluster"),
    ),
    workflows=workflows.WORKFLOWS,
)

__all__ = [
    "secret_name",
    "DOMAIN",
    "ACTIVE",
    "KIND",
    "TenantCreate",
    "TenantCreated",
    "forget",
    "move",
    "of_server",
    "reconcile",
    "require_no_tenant_operation",
    "spec",
    "tenant_stem",
    "usage_view",
]
