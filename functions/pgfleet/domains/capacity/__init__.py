"""capacity: utilization capture (hourly) and history, growth analysis with models chosen by
backtest, forecasts with prediction intervals, `/api/v1/capacity` (seed 003, phase 5)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.capacity import capture, live, routes, service

DOMAIN = Domain(
    name="capacity",
    mounts=(Mount(routes.router, "/api/v1/capacity"),),
    tasks={capture.CAPTURE_TASK: live.scheduled_capture},
    schedules=(capture.CAPTURE_SCHEDULE,),  # utilization, hourly
)

status = service.status
forecasts = service.forecasts
priority_of = service.priority_of

__all__ = ["DOMAIN", "forecasts", "priority_of", "status"]
