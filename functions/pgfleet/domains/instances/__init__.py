"""instances: single PostgreSQL servers, `/api/v1/postgres/single`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.instances import routes, service
from pgfleet.domains.instances.models import (
    Cpu,
    Instance,
    InstanceCreate,
    InstanceStats,
    InstanceStatus,
    LogEntry,
    Memory,
    Storage,
)
from pgfleet.domains.instances.routes import InstanceId
from pgfleet.domains.instances.service import (
    INSTANCE,
    KIND,
    connection_uri,
    create,
    create_database_step,
    get_visible,
    log_view,
    mark_running_step,
    provision_step,
    public_view,
    require_supported_version,
    server_spec,
    start_step,
    stats_view,
    stop_step,
)

from pgfleet.domains.instances.models import InstanceCreated

DOMAIN = Domain(
    name="instances",
    mounts=(Mount(routes.router, "/api/v1/postgres/single"),),
    workflows=service.WORKFLOWS,
)

__all__ = [
    "DOMAIN",
    "Cpu",
    "INSTANCE",
    "Instance",
    "InstanceCreate",
    "InstanceCreated",
    "InstanceId",
    "InstanceStats",
    "InstanceStatus",
    "KIND",
    "LogEntry",
    "Memory",
    "Storage",
    "connection_uri",
    "create",
    "create_database_step",
    "get_visible",
    "log_view",
    "mark_running_step",
    "provision_step",
    "public_view",
    "require_supported_version",
    "server_spec",
    "start_step",
    "stats_view",
    "stop_step",
]
