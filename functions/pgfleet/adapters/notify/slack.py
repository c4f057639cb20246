"""SLACK: an incoming webhook, the message in Block Kit (header, section fields, context) with
`text` as the notification fallback."""

from __future__ import annotations

from typing import Any

from pgfleet.adapters.notify.posting import post, raw_json
from pgfleet.ports.notifier import Message

FIELDS = (
    ("Severity", "severity"), ("Status", "status"), ("Category", "category"), ("Resource", "parent_id"),
    ("Value", "metric_value"), ("Threshold", "threshold"),
)  # fmt: skip


def payload(message: Message) -> dict[str, Any]:
    alert = {**message.alert, "severity": message.severity}
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{alert[key]}"}
        for label, key in FIELDS
        if alert.get(key) not in (None, "")
    ]
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}}
    if fields:
        section["fields"] = fields[:10]
    context = f"pgfleet · {message.event}" + (f" · alert {alert['id']}" if alert.get("id") else "")
    return {
        "text": f"{message.title}: {message.text}"[:3000],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150], "emoji": True}},
            section,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def send(configuration: dict[str, Any], message: Message) -> str:
    status = post(configuration["webhook_url"], raw_json(payload(message)))
    return f"Slack webhook answered {status}"
