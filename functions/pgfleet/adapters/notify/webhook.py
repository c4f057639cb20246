"""WEBHOOK: the message as JSON, signed: `X-Pgfleet-Signature: sha256=<hex HMAC-SHA256 of the
raw body, keyed with the channel's secret>` and `X-Pgfleet-Timestamp` (Unix seconds, also in
the body, so that a receiver can refuse replays)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from pgfleet.adapters.notify.posting import post, raw_json
from pgfleet.ports.notifier import Message

SIGNATURE_HEADER = "X-Pgfleet-Signature"
TIMESTAMP_HEADER = "X-Pgfleet-Timestamp"
DELIVERY_HEADER = "X-Pgfleet-Delivery"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(message: Message, timestamp: int) -> dict[str, Any]:
    return {
        "event": message.event,
        "delivery_id": message.delivery_id,
        "title": message.title,
        "text": message.text,
        "severity": message.severity,
        "alert": message.alert,
        "timestamp": timestamp,
    }


def send(configuration: dict[str, Any], message: Message) -> str:
    timestamp = int(time.time())
    body = raw_json(payload(message, timestamp))
    headers = {
        **(configuration.get("headers") or {}),
        SIGNATURE_HEADER: signature(configuration["secret"], body),
        TIMESTAMP_HEADER: str(timestamp),
        **({DELIVERY_HEADER: message.delivery_id} if message.delivery_id else {}),
    }
    status = post(configuration["url"], body, headers)
    return f"webhook answered {status}"
