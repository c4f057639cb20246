"""The Secrets port: passwords and passphrases, never stored in metadata or logs."""

from __future__ import annotations

import abc


class Secrets(abc.ABC):
    @abc.abstractmethod
    def put(self, name: str, value: str) -> None:
        """Create or overwrite the secret `name`. Idempotent."""

    @abc.abstractmethod
    def get(self, name: str) -> str | None:
        """The secret's current value, or None when it does not exist."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the secret immediately. Idempotent."""
