"""locks: lock activity, blocking analysis, deadlocks and safe resolution,
`/api/v1/locks` (seed 003, phase 4). A platform schedule captures every running server each
minute into the history store, and runs auto-resolve for the tenants that enabled it."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.locks import analysis, dashboards, deadlocks, routes, schedules
from pgfleet.ports.scheduler import Schedule

CAPTURE_TASK = "locks"
CAPTURE_SCHEDULE = Schedule(
    name="pgfleet-locks-capture", expression="rate(1 minute)", payload={"task": CAPTURE_TASK}
)

DOMAIN = Domain(
    name="locks",
    mounts=(
        Mount(routes.router, "/api/v1/locks"),
        Mount(deadlocks.router, "/api/v1/locks"),
        Mount(analysis.router, "/api/v1/locks"),
        Mount(dashboards.router, "/api/v1/locks"),
    ),
    tasks={schedules.CAPTURE_TASK: schedules.scheduled_capture},
    schedules=(schedules.CAPTURE_SCHEDULE,),
)

__all__ = ["DOMAIN"]
