"""The RateCounter port: request counters per caller and window, shared by every API process.

A counter counts the requests of one key (a tenant's user) in one hour, and within it per
minute. Every implementation increments atomically (two API processes never lose a count) and
forgets a window after it ends (a TTL), so counters hold across Lambda instances and restarts.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowCounts:
    """The counts of one key after an increment: in its hour, and in its minute of that hour."""

    hour: int
    minute: int


class RateCounter(abc.ABC):
    @abc.abstractmethod
    def hit(self, key: str, hour_start: int, minute: int, expires_at: int) -> WindowCounts:
        """Count one request of `key` in the hour starting at `hour_start` (epoch seconds) and
        in its `minute` (0-59); the window may be forgotten from `expires_at` (epoch seconds).
        Returns the counts including this request. Raises StoreError when the backend fails."""

    @abc.abstractmethod
    def sweep_expired(self, now: int, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete the windows whose `expires_at` is at or before `now` (epoch seconds); with
        `dry_run` delete nothing. Returns (how many, their stored size in bytes). Idempotent.
        Raises StoreError when the backend fails."""
