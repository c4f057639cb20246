"""PAGERDUTY: Events API v2. A triggered alert is a `trigger`, a resolved one a `resolve`, both
with the alert id as `dedup_key`, so PagerDuty keeps one incident per alert."""

from __future__ import annotations

from typing import Any

from pgfleet.adapters.notify.posting import post, raw_json
from pgfleet.ports.notifier import TEST_EVENT, Message

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = {"CRITICAL": "critical", "HIGH": "error", "MEDIUM": "warning", "LOW": "info"}


def events(message: Message) -> list[dict[str, Any]]:
    """The Events API v2 events of a message: a test triggers and at once resolves its own
    incident, so that it pages no one for long."""
    alert = message.alert
    dedup_key = str(alert.get("id") or "pgfleet-test")
    trigger = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": f"{message.title}: {message.text}"[:1024],
            "source": str(alert.get("parent_id") or "pgfleet"),
            "severity": SEVERITIES.get(message.severity, "info"),
            "component": str(alert.get("resource_type") or "postgres"),
            "group": str(alert.get("tenant_id") or "pgfleet"),
            "class": str(alert.get("category") or alert.get("alert_name") or "alert"),
            "custom_details": {k: v for k, v in alert.items() if v is not None},
        },
        "client": "pgfleet",
    }
    resolve = {"event_action": "resolve", "dedup_key": dedup_key}
    if message.event == "resolved":
        return [resolve]
    return [trigger, resolve] if message.event == TEST_EVENT else [trigger]


def send(configuration: dict[str, Any], message: Message) -> str:
    url = configuration.get("events_url") or DEFAULT_EVENTS_URL
    actions = []
    for event in events(message):
        post(url, raw_json({"routing_key": configuration["routing_key"], **event}))
        actions.append(event["event_action"])
    return f"PagerDuty events sent: {', '.join(actions)}"
