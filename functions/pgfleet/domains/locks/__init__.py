"""locks: lock activity, blocking analysis, deadlocks and safe resolution,
`/api/v1/locks` (seed 003, phase 4). A platform schedule captures every running server each
minute into the history store, and runs auto-resolve for the tenants that enabled it."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.locks import routes, service
from pgfleet.ports.scheduler import Schedule

CAPTURE_TASK = "locks"
CAPTURE_SCHEDULE = Schedule(
    name="pgfleet-locks-capture", expression="rate(1 minute)", payload={"task": CAPTURE_TASK}
)

DOMAIN = Domain(
    name="locks",
    mounts=(Mount(routes.router, "/api/v1/locks"),),
    tasks={CAPTURE_TASK: service.scheduled_capture},
    schedules=(CAPTURE_SCHEDULE,),
)

__all__ = ["DOMAIN"]
