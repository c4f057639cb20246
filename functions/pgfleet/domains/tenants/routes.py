"""/api/v1/postgres/{single|cluster}/<id>/tenants: tenant databases and schemas.

Annotations here are evaluated at definition time (no `from __future__ import annotations`):
the routes are made per resource kind and Powertools reads their real parameter types.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from pgfleet.core.domain import requires
from pgfleet.core.resources import a
from pgfleet.core.routing import header, ports, principal
from pgfleet.domains.clusters import ClusterId
from pgfleet.domains.instances import InstanceId
from pgfleet.domains.tenants import service as tenants
from pgfleet.domains.tenants.models import TENANT_ID_PATTERN, Tenant, TenantCreate, TenantCreated, TenantList

TenantIdPath = Annotated[
    str, Path(pattern=TENANT_ID_PATTERN, min_length=2, max_length=40, description="Tenant id.")
]


def tenant_routes(kind: str, noun: str, resource_id_type: Any) -> Router:
    """The tenant routes of one resource kind ("instance" or "cluster")."""
    router = Router()

    @router.post(
        "/<resource_id>/tenants",
        summary=f"Create a tenant (database or schema, user, quotas) on {a(noun)}",
        status_code=201,
    )
    @requires("postgres:write")
    def create_tenant(resource_id: resource_id_type, body: TenantCreate) -> TenantCreated:  # type: ignore[valid-type]
        created = tenants.create(
            ports(), principal(router), kind, resource_id, body, header(router, "Idempotency-Key")
        )
        return TenantCreated.model_validate(created)

    @router.get("/<resource_id>/tenants", summary=f"List the tenants of {a(noun)}, with usage measured now")
    @requires("postgres:read")
    def list_tenants(resource_id: resource_id_type) -> TenantList:  # type: ignore[valid-type]
        return TenantList.model_validate(tenants.list_tenants(ports(), principal(router), kind, resource_id))

    @router.delete(
        "/<resource_id>/tenants/<tenant_id>",
        summary=f"Delete a tenant of {a(noun)} (after a logical backup, unless told not to)",
        status_code=202,
    )
    @requires("postgres:write")
    def delete_tenant(
        resource_id: resource_id_type,  # type: ignore[valid-type]
        tenant_id: TenantIdPath,
        backup_before_delete: Annotated[
            bool, Query(description="Take a logical backup (pg_dump) of the tenant first.")
        ] = True,
    ) -> Tenant:
        record = tenants.delete(
            ports(), principal(router), kind, resource_id, tenant_id, backup_before_delete
        )
        return Tenant.model_validate(record)

    for handler in (create_tenant, list_tenants, delete_tenant):
        handler.__name__ = handler.__name__.replace("tenant", f"{noun}_tenant")
    return router


single_router = tenant_routes("instance", "instance", InstanceId)
cluster_router = tenant_routes("cluster", "cluster", ClusterId)
