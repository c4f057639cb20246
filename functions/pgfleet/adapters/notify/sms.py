"""SMS: Amazon SNS `Publish` to a phone number (moto's SNS locally)."""

from __future__ import annotations

from typing import Any

from pgfleet.adapters.aws import client, error_code
from pgfleet.ports.notifier import DeliveryFailed, Message

MAX_BYTES = 1600


def text_of(message: Message) -> str:
    text = f"{message.title}: {message.text}"
    return text.encode()[:MAX_BYTES].decode("utf-8", "ignore")


def send(configuration: dict[str, Any], message: Message) -> str:
    try:
        answer = client("sns").publish(PhoneNumber=configuration["phone_number"], Message=text_of(message))
    except Exception as exc:
        raise DeliveryFailed(f"SNS refused the SMS: {error_code(exc) or type(exc).__name__}") from None
    return f"SMS published ({answer.get('MessageId', '')})"
