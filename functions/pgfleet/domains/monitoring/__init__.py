"""monitoring: metric capture, health, the performance dashboard, alerts and incidents,
`/api/v1/monitoring` (seed 003, phase 2). Alerts are raised by the rules evaluated on every
capture and by the domains that watch a condition (quotas) through `observe`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.monitoring import capture, incidents_routes, metrics_routes, routes
from pgfleet.domains.monitoring.capture import BackendUsage, backend_usage
from pgfleet.domains.monitoring.models import AlertAction
from pgfleet.domains.monitoring.rules import reconciled_down
from pgfleet.domains.monitoring.service import KIND as ALERT_KIND
from pgfleet.domains.monitoring.service import Condition, observe, resolve_all_for

DOMAIN = Domain(
    name="monitoring",
    mounts=(
        Mount(routes.router, "/api/v1/monitoring"),
        Mount(metrics_routes.router, "/api/v1/monitoring"),
        Mount(incidents_routes.router, "/api/v1/monitoring"),
    ),
    tasks={capture.CAPTURE_TASK: capture.scheduled_capture},
    schedules=(capture.CAPTURE_SCHEDULE,),
)

__all__ = [
    "ALERT_KIND", "DOMAIN", "AlertAction", "BackendUsage", "Condition", "backend_usage", "observe", "reconciled_down",
    "resolve_all_for",
]  # fmt: skip
