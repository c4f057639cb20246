"""Every Terraform resource and data source of the provider, as declarations.

A new resource is one `ResourceSpec` here: its API path, its create model, the response
fields it exposes, and how each argument changes. For example, a cluster would be

    CLUSTER = ResourceSpec(
        name="cluster", path="/api/v1/postgres/cluster", create=ClusterCreate,
        response=ClusterCreated, description="An HA PostgreSQL cluster (Patroni).",
        computed=(Computed("status"), Computed("password", "credentials.password", ...)),
        in_place=(InPlaceUpdate("scale", ("replicas",)),),
        force_new=("name", "version"),
    )

and a child object puts its parent in the path:
`path="/api/v1/postgres/cluster/{cluster_id}/tenants", parents={"cluster_id": "..."}`.
"""

from __future__ import annotations

from pgfleet.models.instance import InstanceCreate, InstanceCreated
from pgfleet.provider.spec import Computed, DataSourceSpec, InPlaceUpdate, ResourceSpec

INSTANCE = ResourceSpec(
    name="instance",
    path="/api/v1/postgres/single",
    create=InstanceCreate,
    response=InstanceCreated,
    description=(
        "A single PostgreSQL instance. `cpu`, `memory` and `storage` change in place (resize); "
        "changing `name`, `version`, `database` or `username` replaces the instance and its data."
    ),
    computed=(
        Computed("status", description="Observed status of the instance."),
        Computed("host", "endpoint.host"),
        Computed("port", "endpoint.port"),
        Computed("password", "credentials.password", sensitive=True, create_only=True),
        Computed("uri", "credentials.uri", sensitive=True, create_only=True),
    ),
    in_place=(InPlaceUpdate("resize", ("cpu", "memory", "storage")),),
    force_new=("name", "version", "database", "username"),
    example={"name": "orders-db", "memory": 2048},
)

INSTANCE_DATA = DataSourceSpec(
    INSTANCE, description="Looks up a single PostgreSQL instance by id (its password is not readable)."
)

RESOURCES: tuple[ResourceSpec, ...] = (INSTANCE,)
DATA_SOURCES: tuple[DataSourceSpec, ...] = (INSTANCE_DATA,)
