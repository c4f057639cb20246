"""Platform housekeeping on a schedule: the history expiry sweep.

DynamoDB TTL deletes expired history records in AWS (within about two days); moto never
does, and queries must stay cheap, so the sweep runs every hour everywhere. Expired records
are never returned in between.
"""

from __future__ import annotations

from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.models import utcnow
from pgfleet.ports.scheduler import Schedule

HISTORY_EXPIRY_TASK = "history_expiry"
HISTORY_EXPIRY_SCHEDULE = Schedule(
    name="pgfleet-history-expiry", expression="rate(1 hour)", payload={"task": HISTORY_EXPIRY_TASK}
)


def expire_history(ports: Ports, detail: dict[str, Any]) -> list[str]:
    """Delete the history records past their expiry; say how many."""
    deleted = ports.history.sweep_expired(utcnow())
    return [f"deleted {deleted} expired history records" if deleted else "no expired history records"]
