"""Alerts to channels: `notify` stores one `notification_delivery` per channel that takes the
alert and queues it; the worker's `notification.deliver` handler sends it, retrying with
backoff, and records each failing delivery on the alert (`notification_failures`: one entry
per delivery with its channel, event, attempts, last error, and `final` once it failed for
good)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.errors import Conflict
from pgfleet.core.models import new_id, utcnow_iso
from pgfleet.domains.notifications import service
from pgfleet.domains.notifications.models import EVENTS, SEVERITIES
from pgfleet.ports.notifier import Message

log = logging.getLogger("pgfleet.notifications")

KIND = "notification_delivery"
ALERT_KIND = "alert"
MESSAGE_TYPE = "notification.deliver"
ID_PREFIX = "ntd"
MAX_ATTEMPTS = 5
MAX_DELAY_SECONDS = 900  # SQS's longest delay
FAILURES_KEPT = 50  # on an alert: the latest failures
ALERT_FIELDS = (
    "id", "tenant_id", "parent_id", "alert_name", "severity", "status", "category", "description",
    "triggered_at", "resolved_at", "metric_value", "threshold", "resource_type",
)  # fmt: skip


def backoff_seconds(attempts: int) -> int:
    """How long to wait before the next attempt, after `attempts` failed ones."""
    return int(min(MAX_DELAY_SECONDS, 5 * 2**attempts))


def accepts(channel: dict[str, Any], severity: str, event: str) -> bool:
    routing = channel.get("routing") or {}
    return (
        bool(channel.get("is_enabled"))
        and severity in (routing.get("severities") or SEVERITIES)
        and event in (routing.get("events") or EVENTS)
    )


def notify(ports: Ports, alert: dict[str, Any], event: str, only: Collection[str] | None = None) -> list[str]:
    """Queue one delivery of `alert` ("triggered" or "resolved") to every enabled channel of its
    tenant, and every platform channel, whose routing takes its severity and the event (of the
    channels `only` names, when given: a maintenance task's recipients). Returns
    a line per delivery queued (or not). Never raises: a channel problem is logged and recorded,
    so that evaluating alerts never stops for a notification."""
    lines: list[str] = []
    alert_id = str(alert.get("id") or "")
    severity = str(alert.get("severity") or "").upper()
    try:
        if event not in EVENTS:
            raise ValueError(f"event {event!r} is not one of {', '.join(EVENTS)}")
        channels = service.channels_for_tenant(ports, str(alert.get("tenant_id") or ""))
    except Exception as exc:
        log.exception("alert %s: could not find its notification channels", alert_id)
        return [f"alert {alert_id}: no notification sent ({service.short_error(exc)})"]
    snapshot = {k: alert.get(k) for k in ALERT_FIELDS if alert.get(k) is not None}
    for channel in channels:
        if (only is not None and channel["id"] not in only) or not accepts(channel, severity, event):
            continue
        delivery_id = new_id(ID_PREFIX)
        try:
            ports.store.create(
                KIND,
                {
                    "id": delivery_id,
                    "tenant_id": alert.get("tenant_id"),
                    "parent_id": alert_id,
                    "channel_id": channel["id"],
                    "channel_type": channel["type"],
                    "event": event,
                    "status": "PENDING",
                    "attempts": 0,
                    "last_error": None,
                    "alert": snapshot,
                    "created_at": utcnow_iso(),
                    "delivered_at": None,
                },
            )
            ports.queue.send({"type": MESSAGE_TYPE, "delivery_id": delivery_id})
            lines.append(
                f"alert {alert_id} {event}: delivery {delivery_id} to {channel['type']} {channel['id']} queued"
            )
        except Exception as exc:
            log.exception("alert %s: could not queue its delivery to channel %s", alert_id, channel["id"])
            lines.append(
                f"alert {alert_id} {event}: channel {channel['id']} not queued ({service.short_error(exc)})"
            )
    return lines


def message_of(delivery: dict[str, Any]) -> Message:
    alert = delivery.get("alert") or {}
    severity = str(alert.get("severity") or "LOW").upper()
    name = alert.get("alert_name") or alert.get("id") or "alert"
    event = delivery["event"]
    title = f"[{severity}] {name}" + (" resolved" if event == "resolved" else "")
    parts = [str(alert.get("description") or name)]
    if alert.get("metric_value") is not None:
        parts.append(f"value {alert['metric_value']}" + (
            f" (threshold {alert['threshold']})" if alert.get("threshold") is not None else ""
        ))  # fmt: skip
    if alert.get("parent_id"):
        parts.append(f"on {alert['parent_id']}")
    return Message(
        title=title,
        text="; ".join(parts),
        severity=severity,
        event=event,
        alert=alert,
        delivery_id=delivery["id"],
    )


def deliver(ports: Ports, message: dict[str, Any]) -> str:
    """The `notification.deliver` message: send one delivery. Idempotent on a delivered one;
    a failure schedules the next attempt (5 s * 2^attempts, at most 15 min) up to
    MAX_ATTEMPTS; each failure is recorded on the alert. Never raises for the channel's sake."""
    delivery_id = str(message.get("delivery_id") or "")
    delivery = ports.store.get(KIND, delivery_id)
    if delivery is None:
        return f"delivery {delivery_id} not found: dropped"
    if delivery["status"] in ("DELIVERED", "FAILED"):
        return f"delivery {delivery_id} already {delivery['status']}"
    channel = ports.store.get(service.KIND, delivery["channel_id"])
    attempts = int(delivery.get("attempts") or 0) + 1
    final = False
    try:
        if channel is None or not channel.get("is_enabled"):
            final = True  # nothing to retry: it was deleted or disabled after the alert
            raise LookupError("the channel was " + ("deleted" if channel is None else "disabled"))
        result = ports.notifier.send(
            channel["type"], service.full_configuration(ports, channel), message_of(delivery)
        )
    except Exception as exc:
        error = service.short_error(exc) if not isinstance(exc, LookupError) else str(exc)
        return _failed(ports, delivery, attempts, error, final=final or attempts >= MAX_ATTEMPTS)
    ports.store.update(
        KIND,
        delivery_id,
        {"status": "DELIVERED", "attempts": attempts, "delivered_at": utcnow_iso(), "last_error": None},
    )
    return f"delivery {delivery_id} to {delivery['channel_type']} {delivery['channel_id']}: {result}"


def _failed(ports: Ports, delivery: dict[str, Any], attempts: int, error: str, *, final: bool) -> str:
    delivery_id = delivery["id"]
    changes: dict[str, Any] = {"attempts": attempts, "last_error": error, "last_attempt_at": utcnow_iso()}
    if final:
        changes["status"] = "FAILED"
    else:
        delay = backoff_seconds(attempts)
        changes["next_attempt_in_seconds"] = delay
    try:
        ports.store.update(KIND, delivery_id, changes, expected_revision=delivery["revision"])
    except Conflict:
        return f"delivery {delivery_id}: changed by another worker, left to it"
    _record_on_alert(ports, delivery, attempts, error, final=final)
    log.warning(
        "delivery %s to channel %s failed (attempt %d): %s",
        delivery_id,
        delivery["channel_id"],
        attempts,
        error,
    )
    if final:
        return f"delivery {delivery_id} FAILED after {attempts} attempt(s): {error}"
    ports.queue.send({"type": MESSAGE_TYPE, "delivery_id": delivery_id}, delay_seconds=delay)
    return f"delivery {delivery_id} failed (attempt {attempts}), retry in {delay} s: {error}"


def _record_on_alert(
    ports: Ports, delivery: dict[str, Any], attempts: int, error: str, *, final: bool
) -> None:
    """One entry per failing delivery, updated at each attempt (`final`: no more retries)."""
    entry = {
        "delivery_id": delivery["id"],
        "channel_id": delivery["channel_id"],
        "channel_type": delivery["channel_type"],
        "event": delivery["event"],
        "attempts": attempts,
        "error": error,
        "at": utcnow_iso(),
        "final": final,
    }
    for _ in range(5):
        alert = ports.store.get(ALERT_KIND, delivery["parent_id"])
        if alert is None:
            return
        earlier = [
            f for f in alert.get("notification_failures") or [] if f.get("delivery_id") != delivery["id"]
        ]
        failures = [*earlier, entry][-FAILURES_KEPT:]
        try:
            ports.store.update(
                ALERT_KIND,
                alert["id"],
                {"notification_failures": failures},
                expected_revision=alert["revision"],
            )
            return
        except Conflict:
            continue
        except Exception:
            log.exception("could not record a notification failure on alert %s", alert["id"])
            return
    log.warning(
        "could not record a notification failure on alert %s: it kept changing", delivery["parent_id"]
    )


def public_delivery(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "delivery_id": record["id"],
        "alert_id": record.get("parent_id"),
        "channel_id": record.get("channel_id"),
        "channel_type": record.get("channel_type"),
        "event": record.get("event"),
        "status": record.get("status"),
        "attempts": record.get("attempts", 0),
        "last_error": record.get("last_error"),
        "created_at": record.get("created_at"),
        "delivered_at": record.get("delivered_at"),
    }


def deliveries_of(ports: Ports, alert_id: str) -> list[dict[str, Any]]:
    """The deliveries of one alert, oldest first, as they may be shown (no secret in them)."""
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page, token = ports.store.list(KIND, parent_id=alert_id, limit=100, next_token=token)
        found.extend(public_delivery(r) for r in page)
        if not token:
            return found
