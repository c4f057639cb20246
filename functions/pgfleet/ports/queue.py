"""The Queue port: hands Operations to the worker."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueueDepth:
    """How many messages the queue holds, as its backend counts them (SQS's counts are
    approximate: they may lag a send or a receive by a few seconds)."""

    waiting: int  # visible: no worker has received them yet
    in_flight: int  # received by a worker, neither deleted nor visible again yet
    delayed: int  # sent with a delay that has not passed


class Queue(abc.ABC):
    @abc.abstractmethod
    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        """Enqueue a JSON message. Delivery is at least once: consumers must be idempotent."""

    @abc.abstractmethod
    def depth(self) -> QueueDepth:
        """The queue's message counts now: one request to the backend, no message received or
        changed. Raises StoreError when the queue cannot be reached."""
