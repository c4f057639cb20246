"""instances: single PostgreSQL servers, `/api/v1/postgres/single`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.instances import routes, workflows
from pgfleet.domains.instances.models import (
    BackupStatus,
    BackupStatusField,
    BackupStatusReason,
    Cpu,
    FirstBackupId,
    Instance,
    InstanceCreate,
    InstanceCreated,
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
    get_visible,
    log_view,
    public_view,
    require_supported_version,
    secret_name,
    server_spec,
    stats_view,
    tls_query,
    view,
)
from pgfleet.domains.instances.workflows import (
    create_database_step,
    mark_running_step,
    provision_step,
    start_step,
    stop_step,
)

DOMAIN = Domain(
    name="instances",
    mounts=(Mount(routes.router, "/api/v1/postgres/single"),),
    workflows=workflows.WORKFLOWS,
)

__all__ = [
    "DOMAIN",
    "BackupStatus",
    "BackupStatusField",
    "BackupStatusReason",
    "Cpu",
    "FirstBackupId",
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
    "tls_query",
    "create",
    "create_database_step",
    "get_visible",
    "log_view",
    "mark_running_step",
    "provision_step",
    "public_view",
    "require_supported_version",
    "secret_name",
    "server_spec",
    "start_step",
    "stats_view",
    "stop_step",
    "view",
]
