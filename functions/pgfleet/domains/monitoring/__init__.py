"""monitoring: alerts today (`/api/v1/monitoring/alerts`), raised by the domains that watch
a condition (quotas) through `observe` and `resolve_all_for`."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.monitoring import routes
from pgfleet.domains.monitoring.models import AlertAction
from pgfleet.domains.monitoring.service import Condition, observe, resolve_all_for

DOMAIN = Domain(name="monitoring", mounts=(Mount(routes.router, "/api/v1/monitoring"),))

__all__ = ["DOMAIN", "AlertAction", "Condition", "observe", "resolve_all_for"]
