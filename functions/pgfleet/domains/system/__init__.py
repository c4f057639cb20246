"""system: the audit trail (`/api/v1/system/audit`; audit events themselves are written by
the api handler and the operation engine, pgfleet.core.audit), a server's configuration
(`/api/v1/system/configuration`, its restart operation and planned restarts) and the
platform's status (`/api/v1/system/status`)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.system import configuration, routes

DOMAIN = Domain(
    name="system",
    mounts=(Mount(routes.router, "/api/v1/system"),),
    workflows=configuration.WORKFLOWS,  # system.configure: a restart for settings that need one
    tasks={configuration.RESTART_TASK: configuration.scheduled_restart},  # a planned restart (at())
)

__all__ = ["DOMAIN"]
