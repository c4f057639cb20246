"""Subscriptions of WebSocket connections, and the fan-out of events to them.

A connection is a record of kind `event_subscription` (id: the connection's id) made when the
WebSocket API's `$connect` route accepts a token: its tenant (the token's; `*` for a platform
token), the events it may and wants to see, and when its token expires. An event of tenant T
goes to T's subscribers and to platform subscribers, never to another tenant's. A connection
whose token has expired is closed at the next event instead of receiving it; one the gateway
reports gone is forgotten.

The events and the permission that sees them: the seed's `CapacityEvents`, `capacity:read`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pgfleet.core.auth import PLATFORM, Principal
from pgfleet.core.context import Ports
from pgfleet.core.errors import Forbidden, ValidationFailed
from pgfleet.core.models import utcnow_iso

log = logging.getLogger("pgfleet.events")

KIND = "event_subscription"
CAPACITY_EVENTS = (
    "capacity:threshold_exceeded",
    "capacity:forecast_updated",
    "capacity:utilization_spike",
    "capacity:capacity_warning",
)
PERMISSION = {name: "capacity:read" for name in CAPACITY_EVENTS}
MAX_MESSAGE_BYTES = 4096  # what a subscriber may send: a subscribe or a ping


def _wanted(requested: list[str] | str | None) -> list[str] | None:
    if requested is None:
        return None
    items = requested.split(",") if isinstance(requested, str) else requested
    if not isinstance(items, list) or not all(isinstance(n, str) for n in items):
        raise ValidationFailed(
            "events is a list of event names (or one comma-separated string)", details={"field": "events"}
        )
    names = [n.strip() for n in items]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(PERMISSION))
    if unknown or not names:
        raise ValidationFailed(
            f"unknown event(s) {', '.join(unknown) or '(none named)'}; known: {', '.join(PERMISSION)}",
            details={"field": "events", "allowed": list(PERMISSION)},
        )
    return list(dict.fromkeys(names))


def _allowed(caller: Principal, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(what the caller may see, what it will receive)."""
    mine = [name for name, permission in PERMISSION.items() if caller.can(permission)]
    if not mine:
        raise Forbidden(
            f"role(s) {', '.join(caller.roles)} may see no event", details={"required": "capacity:read"}
        )
    if requested is None:
        return mine, mine
    denied = [n for n in requested if n not in mine]
    if denied:
        raise Forbidden(
            f"role(s) {', '.join(caller.roles)} may not see {', '.join(denied)}",
            details={"required": sorted({PERMISSION[n] for n in denied})},
        )
    return mine, requested


def connect(
    ports: Ports, caller: Principal, connection_id: str, requested: list[str] | str | None, expires_at: float
) -> dict[str, Any]:
    """Accept a connection (the `$connect` route): what it will receive."""
    allowed, events = _allowed(caller, _wanted(requested))
    now = utcnow_iso()
    record = {
        "id": connection_id, "tenant_id": caller.tenant_id, "subject": caller.sub, "events": events, "allowed": allowed,
        "expires_at": float(expires_at), "connected_at": now, "created_at": now,
    }  # fmt: skip
    ports.store.create(KIND, record)
    return record


def disconnect(ports: Ports, connection_id: str) -> None:
    if ports.store.get(KIND, connection_id) is not None:
        ports.store.delete(KIND, connection_id)


def message(ports: Ports, connection_id: str, body: str | None) -> dict[str, Any]:
    """A message from a subscriber (the `$default` route): `{"action": "ping"}`, or
    `{"action": "subscribe", "events": [...]}` to change what it receives. The answer goes back
    on the connection."""
    record = ports.store.get(KIND, connection_id)
    if record is None:
        return {"event": "error", "message": "this connection is not subscribed"}
    if body is not None and len(body.encode()) > MAX_MESSAGE_BYTES:
        return {"event": "error", "message": f"a message is at most {MAX_MESSAGE_BYTES} bytes"}
    try:
        parsed = json.loads(body or "")
    except ValueError:
        return {
            "event": "error",
            "message": 'send JSON: {"action": "ping"} or {"action": "subscribe", "events": [...]}',
        }
    action = parsed.get("action") if isinstance(parsed, dict) else None
    if action == "ping":
        return {"event": "pong", "events": record["events"]}
    if action == "subscribe":
        try:
            wanted = _wanted(parsed.get("events"))
        except ValidationFailed as exc:
            return {"event": "error", "message": exc.message}
        # What the token allowed at connect time bounds what it may subscribe to later.
        refused = [n for n in wanted or [] if n not in record["allowed"]]
        if refused:
            return {"event": "error", "message": f"not allowed: {', '.join(refused)}"}
        events = wanted or record["allowed"]
        ports.store.update(KIND, connection_id, {"events": events}, record["revision"])
        return {"event": "subscribed", "events": events}
    return {"event": "error", "message": f"unknown action {action!r}: ping or subscribe"}


def publish(ports: Ports, tenant_id: str, event: str, data: dict[str, Any]) -> int:
    """Push one event of `tenant_id` to its subscribers and the platform's; the number it
    reached. Never raises: a subscriber that cannot be reached costs the event nothing else."""
    if event not in PERMISSION:
        raise ValueError(f"unknown event {event!r}")
    text = json.dumps(
        {"event": event, "tenantId": tenant_id, "timestamp": utcnow_iso(), "data": data}, default=str
    ).encode()
    try:
        found = ports.store.every(KIND, tenant_id=tenant_id)
        if tenant_id != PLATFORM:
            found += ports.store.every(KIND, tenant_id=PLATFORM)
    except Exception:  # noqa: BLE001  (the store's failure is logged; the caller's work goes on)
        log.exception("event %s: subscribers could not be read", event)
        return 0
    sent = 0
    now = time.time()
    for subscriber in found:
        if event not in subscriber.get("events", ()):
            continue
        try:
            if float(subscriber.get("expires_at", 0)) <= now:
                ports.events.close(subscriber["id"])
                disconnect(ports, subscriber["id"])
            elif ports.events.post(subscriber["id"], text):
                sent += 1
            else:
                disconnect(ports, subscriber["id"])
        except Exception:  # noqa: BLE001
            log.warning(
                "event %s: a subscriber of tenant %s could not be reached", event, tenant_id, exc_info=True
            )
    return sent
