"""monitoring: metric capture, health, the performance dashboard, alerts and incidents,
`/api/v1/monitoring` (seed 003, phase 2). Alerts are raised by the rules evaluated on every
capture and by the domains that watch a condition (quotas) through `observe`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.monitoring import capture, incidents_routes, metrics_routes, routes
from pgfleet.domains.monitoring.capture import (
    CAPTURE_INTERVAL_MINUTES,
    MAX_CAPTURE_INTERVAL_MINUTES,
    BackendUsage,
    backend_usage,
    capture_interval,
)
from pgfleet.domains.monitoring.metrics import RETENTION_DAYS as METRIC_RETENTION_DAYS
from pgfleet.domains.monitoring.metrics import retention_days as metric_retention_days
from pgfleet.domains.monitoring.models import AlertAction
from pgfleet.domains.monitoring.rules import BY_NAME as ALERT_RULES
from pgfleet.domains.monitoring.rules import reconciled_down, rules_of, set_rule
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
    "ALERT_KIND", "ALERT_RULES", "CAPTURE_INTERVAL_MINUTES", "DOMAIN", "MAX_CAPTURE_INTERVAL_MINUTES",
    "METRIC_RETENTION_DAYS", "AlertAction", "BackendUsage", "Condition", "backend_usage", "capture_interval",
    "metric_retention_days", "observe", "reconciled_down", "resolve_all_for", "rules_of", "set_rule",
]  # fmt: skip
