"""The senders of notifications, one module per channel type, behind the Notifier port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgfleet.adapters.notify import pagerduty, slack, sms, smtp, webhook
from pgfleet.ports.notifier import DeliveryFailed, Message, Notifier

Sender = Callable[[dict[str, Any], Message], str]

SENDERS: dict[str, Sender] = {
    "EMAIL": smtp.send,
    "SLACK": slack.send,
    "WEBHOOK": webhook.send,
    "PAGERDUTY": pagerduty.send,
    "SMS": sms.send,
}


class ChannelNotifier(Notifier):
    def send(self, channel_type: str, configuration: dict[str, Any], message: Message) -> str:
        sender = SENDERS.get(channel_type)
        if sender is None:
            raise DeliveryFailed(f"no sender for channel type {channel_type!r}")
        return sender(configuration, message)


__all__ = ["SENDERS", "ChannelNotifier"]
