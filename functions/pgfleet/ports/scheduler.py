"""The Scheduler port: recurring and one-off invocations of the scheduled handler.

A schedule has a unique name, an expression (`rate(1 minute)`, `cron(0 3 * * ? *)`,
`at(2026-01-01T00:00:00)`, as EventBridge Scheduler writes them) and a JSON payload that the
scheduled handler receives as the event's `detail`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    payload: dict[str, Any]
    enabled: bool = True


class Scheduler(abc.ABC):
    @abc.abstractmethod
    def put(self, schedule: Schedule) -> None:
        """Create or replace the schedule `schedule.name`. Idempotent."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the schedule. Idempotent."""

    @abc.abstractmethod
    def get(self, name: str) -> Schedule | None:
        """The schedule `name`, or None when there is none (one read: no listing)."""
