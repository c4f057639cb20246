"""The HistoryStore port: time-ordered records that expire.

Captures go here: lock captures, metric samples, capacity measurements, API metrics, audit
events. Each record belongs to one `stream` ("locks", "metrics", "capacity", "api_metrics",
"audit"), usually to one target (an instance `pgi-...` or a cluster `pgc-...`) and one
tenant, and carries its time `at` and a snake_case `data` document.

The contract every implementation keeps:
- A query reads only the records it may return: one target's query never reads another
  target's records, one tenant's never another tenant's (the `scanned_count` of a page says
  how many records the backend read to answer it).
- A record past its expiry (`at + ttl_seconds`) is never returned, whether or not it has been
  deleted yet; `sweep_expired` deletes them (DynamoDB TTL also does, within about two days).
- Records are never updated: appending a record whose (stream, target_id, at, id) exists
  replaces it with the same content, so retrying an append is harmless.
"""

from __future__ import annotations

import abc
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

DEFAULT_TTL_SECONDS = 30 * 86400
STREAM_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def new_record_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class HistoryRecord:
    """One record. `at` must be timezone-aware; `ttl_seconds=None` keeps it forever."""

    stream: str
    target_id: str | None
    tenant_id: str | None
    at: datetime
    data: dict[str, Any]
    ttl_seconds: int | None = DEFAULT_TTL_SECONDS
    id: str = field(default_factory=new_record_id)

    @property
    def expires_at(self) -> int | None:
        """Epoch seconds after which the record is gone (the DynamoDB TTL attribute)."""
        if self.ttl_seconds is None:
            return None
        return int(self.at.timestamp()) + self.ttl_seconds

    def expired(self, now: datetime) -> bool:
        expires = self.expires_at
        return expires is not None and expires <= now.timestamp()

    def matches(self, filters: dict[str, Any] | None) -> bool:
        """Whether `data` has every filter's value (a list, tuple or set: any of them)."""
        for key, wanted in (filters or {}).items():
            value = self.data.get(key)
            if isinstance(wanted, list | tuple | set | frozenset):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True


@dataclass(frozen=True)
class HistoryPage:
    """One page of a query, and how many records match it in all (`total_items`).
    `scanned_count` is how many records the backend read to answer it: with no filters and
    nothing expired it equals `total_items`."""

    items: list[HistoryRecord]
    total_items: int
    scanned_count: int


def check_stream(stream: str) -> None:
    """Raise ValueError unless `stream` is a lowercase name (it becomes part of keys)."""
    if not STREAM_PATTERN.match(stream):
        raise ValueError(f"stream {stream!r} is not a lowercase name of letters, digits and '_'")


def check_query(start: datetime, end: datetime, page: int, page_size: int) -> None:
    """The argument checks every implementation's `query` makes."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if page < 1 or page_size < 1:
        raise ValueError("page and page_size start at 1")


class HistoryStore(abc.ABC):
    @abc.abstractmethod
    def append(self, stream: str, records: Sequence[HistoryRecord]) -> None:
        """Store `records`, all of `stream`, in one call (any number; the implementation
        batches). Idempotent per record (same stream, target_id, at and id).

        Raises ValueError when a record is of another stream, has a naive `at`, or the stream
        is not a lowercase name; StoreError when the backend fails (some records of the batch
        may then be stored: retry the whole batch).
        """

    def append_all(self, records: Sequence[HistoryRecord]) -> None:
        """Store records of several streams in one call where the backend can (an API call's
        audit event and its metrics record: one write). Same guarantees as `append`."""
        streams: dict[str, list[HistoryRecord]] = {}
        for record in records:
            streams.setdefault(record.stream, []).append(record)
        for stream, batch in streams.items():
            self.append(stream, batch)

    @abc.abstractmethod
    def query(
        self,
        stream: str,
        *,
        start: datetime,
        end: datetime,
        target_id: str | None = None,
        tenant_id: str | None = None,
        filters: dict[str, Any] | None = None,
        page: int = 1,
        page_size: int = 50,
        newest_first: bool = True,
        visit: Callable[[HistoryRecord], None] | None = None,
    ) -> HistoryPage:
        """The records of `stream` with `start <= at < end` that have not expired, ordered by
        `at` (newest first unless `newest_first=False`; ties by id), page `page` of
        `page_size` items.

        Scope: `target_id` reads that target's records only; `tenant_id` alone reads that
        tenant's records only; both read the target's records and keep those of the tenant
        (another tenant's target yields nothing); neither reads the whole stream.
        `filters` keeps records whose `data[key]` equals the value (or is one of a list's).
        `visit`, when given, is called with every matching record, on the page or not, in
        order: a summary of the whole range costs no second read.

        Raises ValueError for naive datetimes or `page`/`page_size` below 1; StoreError when
        the backend fails. A page past the end is empty, with the right `total_items`.
        """

    @abc.abstractmethod
    def purge(
        self, stream: str, before: datetime, *, tenant_id: str | None = None, dry_run: bool = False
    ) -> tuple[int, int]:
        """Delete the records of `stream` with `at < before` (of `tenant_id` only, when given),
        expired or not; with `dry_run` delete nothing. Returns (how many, their stored size in
        bytes): a dry run and the run after it count alike. Raises ValueError for a naive
        `before`, StoreError when the backend fails (part may be deleted: run it again)."""

    @abc.abstractmethod
    def sweep_expired(self, now: datetime) -> int:
        """Delete the records whose expiry is at or before `now`; return how many. Idempotent,
        safe to run concurrently with appends and queries. Raises StoreError."""
