"""Real-time events pushed to WebSocket subscribers (seed 003, "Real-time Monitoring
Integration"): who is subscribed to what, and the fan-out of one event to the subscribers of
its tenant."""

from pgfleet.core.domain import Domain
from pgfleet.domains.events.service import (
    CAPACITY_EVENTS,
    KIND,
    connect,
    disconnect,
    message,
    publish,
)

# No routes of the HTTP API: subscribers come through the WebSocket API (pgfleet.handlers.events).
DOMAIN = Domain(name="events")

__all__ = ["CAPACITY_EVENTS", "DOMAIN", "KIND", "connect", "disconnect", "message", "publish"]
