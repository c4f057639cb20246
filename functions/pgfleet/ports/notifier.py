"""The Notifier port: sends one message to one notification channel (EMAIL, SLACK, SMS,
WEBHOOK, PAGERDUTY) now.

The caller passes the channel's whole configuration, its secrets included (an SMTP password,
a Slack webhook URL, a webhook's signing secret, a PagerDuty routing key); the notifier keeps
none of it. A send blocks for at most about ten seconds per network call.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from pgfleet.core.errors import PgfleetError

EVENTS = ("triggered", "resolved")
TEST_EVENT = "test"


class DeliveryFailed(PgfleetError):
    """The channel refused the message or could not be reached. The message is safe to show
    and to store: it never contains a secret of the configuration."""


@dataclass(frozen=True)
class Message:
    """What to tell: a title and a text for people, the alert's severity (LOW, MEDIUM, HIGH,
    CRITICAL), the event ("triggered", "resolved" or "test") and the alert's fields (snake_case:
    id, alert_name, tenant_id, parent_id, category, metric_value, threshold, ...)."""

    title: str
    text: str
    severity: str = "LOW"
    event: str = TEST_EVENT
    alert: dict[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None  # the same on every attempt of one delivery


class Notifier(abc.ABC):
    @abc.abstractmethod
    def send(self, channel_type: str, configuration: dict[str, Any], message: Message) -> str:
        """Deliver `message` through a channel of `channel_type` configured by `configuration`
        (snake_case keys, secrets included). Returns a short line saying what was sent (no
        secret in it). Raises DeliveryFailed when the channel could not be reached or refused
        the message. Not idempotent: every call sends (a webhook receiver can deduplicate on
        `delivery_id`, PagerDuty does on the alert id)."""
