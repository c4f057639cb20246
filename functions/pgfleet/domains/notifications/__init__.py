"""notifications: channels that tell people about alerts (EMAIL, SLACK, SMS, WEBHOOK,
PAGERDUTY), `/api/v1/monitoring/notifications` (seed 003, phase 2).

Alerts reach channels through `notify(ports, alert, event)`: one `notification_delivery`
record per channel, sent by the worker (`notification.deliver`) with retries."""

from pgfleet.core.domain import Domain, Mount
from pgfleet.domains.notifications import routes
from pgfleet.domains.notifications.delivery import MESSAGE_TYPE, deliver, deliveries_of, notify
from pgfleet.domains.notifications.models import (
    MASK,
    SECRET_FIELDS,
    ChannelCreate,
    ChannelName,
    ChannelUpdate,
    NotificationChannel,
    Routing,
)

# Every configuration field that is a secret, whatever the type (snake_case).
SECRET_CONFIGURATION_FIELDS = frozenset(name for names in SECRET_FIELDS.values() for name in names)

DOMAIN = Domain(
    name="notifications",
    mounts=(Mount(routes.router, "/api/v1/monitoring"),),
    messages={MESSAGE_TYPE: deliver},
)

__all__ = [
    "DOMAIN", "MASK", "SECRET_CONFIGURATION_FIELDS", "ChannelCreate", "ChannelName", "ChannelUpdate",
    "NotificationChannel", "Routing", "deliveries_of", "notify",
]  # fmt: skip
