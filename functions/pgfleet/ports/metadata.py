"""The MetadataStore port: durable records of what users asked for and what exists.

Records are JSON-compatible dicts of one `kind` ("instance", "operation", ...) with at least
`id`, and usually `tenant_id` and `created_at`. The store adds and checks `revision`: every
update is conditional on the revision the caller read, so two writers never silently overwrite
each other (optimistic concurrency). Implementations must make `create` atomic with its unique
claims: either the record and all its unique keys exist afterwards, or none do.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class Range:
    """A filter value: `low <= field <= high` (either bound may be None). Strings compare as
    strings, so ISO 8601 UTC timestamps of one format compare as moments."""

    low: Any = None
    high: Any = None


Filters = Mapping[str, Any]


@dataclass(frozen=True)
class Create:
    """One write of `MetadataStore.transact`: `create(kind, record, unique_keys)`."""

    kind: str
    record: Record
    unique_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Update:
    """One write of `MetadataStore.transact`: `update(kind, record_id, changes, expected_revision)`."""

    kind: str
    record_id: str
    changes: Record
    expected_revision: int | None = None


Write = Create | Update

# Longer strings are not indexed for filtering (see `MetadataStore.page`).
FILTERABLE_STRING_LENGTH = 256


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
    def transact(self, writes: Sequence[Write]) -> builtins.list[Record]:
        """Apply several creates and updates as one: either every write happens or none does.

        Each write means what `create` or `update` means alone, with the same checks: a
        record or unique key that exists raises AlreadyExists, a revision that moved raises
        Conflict, a missing record to update raises NotFound, and then nothing was written.
        At most 10 writes, each on a different record. Returns the records as stored, in the
        order of `writes`. Use it where a crash between two writes would strand a record (a
        resource and its first operation).
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

    def every(
        self, kind: str, *, tenant_id: str | None = None, parent_id: str | None = None
    ) -> builtins.list[Record]:
        """Every record of a kind in the scope of `list`, oldest first: all its pages read."""
        found: builtins.list[Record] = []
        token = None
        while True:
            page, token = self.list(
                kind, tenant_id=tenant_id, parent_id=parent_id, limit=100, next_token=token
            )
            found.extend(page)
            if not token:
                return found

    @abc.abstractmethod
    def page(
        self,
        kind: str,
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
        page: int,
        page_size: int,
        newest_first: bool = True,
    ) -> tuple[builtins.list[Record], int]:
        """One numbered page (from 1) of the records of a kind that match, and how many match.

        Scope as `list` (`parent_id` first, then `tenant_id`, else every tenant's). Order: by
        `created_at`, then `id`; newest first unless `newest_first` is False. `filters` maps a
        top-level field of the record to what it must hold, all of them at once:
        - a scalar (str, int, float, bool): equal to it;
        - a list, tuple, set or frozenset: equal to one of its values (an empty one matches
          nothing);
        - a `Range`: within its bounds, inclusive;
        - None: the field is missing or null.
        Only top-level scalar fields can be filtered on: strings of at most
        `FILTERABLE_STRING_LENGTH` characters, numbers and booleans.

        A page past the end is empty (with the true total). Cost: the matches are counted, and
        earlier pages skipped, in the store by reading keys only; only the page's records are
        read in full. Both are proportional to the size of the scope, not of the page.
        """

    @abc.abstractmethod
    def tally(
        self,
        kind: str,
        fields: tuple[str, ...],
        *,
        tenant_id: str | None = None,
        parent_id: str | None = None,
        filters: Filters | None = None,
    ) -> dict[str, dict[Any, int]]:
        """How many matching records (scope and filters as `page`) hold each value of each of
        `fields` (top-level scalar fields): {field: {value: count}}; a missing field counts
        under None. Reads only those fields of each record, in one pass over the scope."""

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
