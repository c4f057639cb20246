"""The MetadataStore port: durable records of what users asked for and what exists.

Records are JSON-compatible dicts of one `kind` ("instance", "operation", ...) with at least
`id`, and usually `tenant_id` and `created_at`. The store adds and checks `revision`: every
update is conditional on the revision the caller read, so two writers never silently overwrite
each other (optimistic concurrency). Implementations must make `create` atomic with its unique
claims: either the record and all its unique keys exist afterwards, or none do.
"""

from __future__ import annotations

import abc
from typing import Any

Record = dict[str, Any]


class MetadataStore(abc.ABC):
    @abc.abstractmethod
    def create(self, kind: str, record: Record, unique_keys: tuple[str, ...] = ()) -> Record:
        """Store a new record (revision 1) and claim each of `unique_keys` for it, atomically.

        Raises AlreadyExists when a record of that kind and id exists or a unique key is
        already claimed (the message names which). Returns the stored record.
        """

    @abc.abstractmethod
    def get(self, kind: str, record_id: str) -> Record | None:
        """The record, read consistently, or None."""

    @abc.abstractmethod
    def update(
        self, kind: str, record_id: str, changes: Record, expected_revision: int | None = None
    ) -> Record:
        """Merge `changes` into the record and increment its revision.

        With `expected_revision`, the write happens only if the stored revision still equals
        it; otherwise raises Conflict (the caller re-reads and decides). Raises NotFound for a
        missing record. Returns the record as stored.
        """

    @abc.abstractmethod
    def delete(self, kind: str, record_id: str, unique_keys: tuple[str, ...] = ()) -> None:
        """Remove the record and release `unique_keys`, atomically. Idempotent."""

    @abc.abstractmethod
    def list(
        self,
        kind: str,
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[Record], str | None]:
        """Records of a kind, oldest first, optionally only one tenant's or one parent's.

        Returns a page and an opaque token for the next page (None at the end).
        """

    @abc.abstractmethod
    def claim(self, key: str, owner: str, value: Record | None = None) -> bool:
        """Claim a unique key (a TCP port, an idempotency key) for `owner`, atomically.

        Returns True if this call claimed it or `owner` already holds it, False if someone
        else holds it.
        """

    @abc.abstractmethod
    def claimed(self, key: str) -> Record | None:
        """The claim on `key` ({"owner", "value"}) or None."""

    @abc.abstractmethod
    def release(self, key: str, owner: str | None = None) -> None:
        """Release a claim (only if held by `owner`, when given). Idempotent."""
