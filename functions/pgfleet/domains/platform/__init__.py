"""platform: health and version (no authentication); the detailed health of every
dependency (`/api/health/detailed`) and the Prometheus metrics (`/api/metrics`), both
`monitoring:read` and scoped by the token; and platform housekeeping (the hourly history
expiry sweep). The OpenAPI document and Swagger UI are served by the api handler, from every
domain's routes."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.platform import health, routes, schedules

DOMAIN = Domain(
    name="platform",
    mounts=(Mount(routes.router),),
    tasks={schedules.HISTORY_EXPIRY_TASK: schedules.expire_history},
    schedules=(schedules.HISTORY_EXPIRY_SCHEDULE,),
)

detailed_health = health.detailed

__all__ = ["DOMAIN", "detailed_health"]
