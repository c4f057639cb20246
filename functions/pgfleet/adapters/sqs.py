"""Queue on Amazon SQS."""

from __future__ import annotations

import functools
import json
from typing import Any

from pgfleet.adapters.aws import client
from pgfleet.core.errors import StoreError
from pgfleet.ports.queue import Queue, QueueDepth


class SQSQueue(Queue):
    def __init__(self, queue_name: str) -> None:
        self._name = queue_name

    @functools.cached_property
    def url(self) -> str:
        return str(client("sqs").get_queue_url(QueueName=self._name)["QueueUrl"])

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        try:
            client("sqs").send_message(
                QueueUrl=self.url, MessageBody=json.dumps(message), DelaySeconds=delay_seconds
            )
        except Exception as exc:
            raise StoreError(f"could not enqueue: {exc}") from exc

    def depth(self) -> QueueDepth:
        names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed")  # fmt: skip
        try:
            attributes = client("sqs").get_queue_attributes(QueueUrl=self.url, AttributeNames=list(names))
        except Exception as exc:
            raise StoreError(f"could not read the queue's depth: {exc}") from exc
        waiting, in_flight, delayed = (int(attributes["Attributes"].get(n, 0)) for n in names)
        return QueueDepth(waiting=waiting, in_flight=in_flight, delayed=delayed)
