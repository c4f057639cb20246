"""The Queue port: hands Operations to the worker."""

from __future__ import annotations

import abc
from typing import Any


class Queue(abc.ABC):
    @abc.abstractmethod
    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        """Enqueue a JSON message. Delivery is at least once: consumers must be idempotent."""
