"""notifications: channels that tell people about alerts (EMAIL, SLACK, SMS, WEBHOOK,
PAGERDUTY), `/api/v1/monitoring/notifications` (seed 003, phase 2)."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.notifications import routes

DOMAIN = Domain(name="notifications", mounts=(Mount(routes.router, "/api/v1/monitoring"),))

__all__ = ["DOMAIN"]
