"""What the current request (or operation step) is, for the code below it: who asks, and how
much database work it has cost so far.

The api handler opens a `scope` per request; operations read `current_user()` to record who
asked for them; the SQL seam and the metadata store call `count_database(seconds)` for every
statement or call, so each request's API-metrics record has real `database_queries` and
`database_time_ms`. contextvars keep concurrent requests (threads of the local gateway) apart.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class DatabaseWork:
    queries: int = 0
    seconds: float = 0.0


@dataclass
class RequestScope:
    user_id: str | None = None
    tenant_id: str | None = None
    request_id: str | None = None
    database: DatabaseWork | None = None


_scope: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar("pgfleet_request", default=None)


@contextmanager
def scope(request_id: str | None = None) -> Iterator[RequestScope]:
    """A fresh scope for one request; the caller fills in `user_id`/`tenant_id` once known and
    sets `database` to a DatabaseWork around the part whose queries it counts."""
    current = RequestScope(request_id=request_id)
    token = _scope.set(current)
    try:
        yield current
    finally:
        _scope.reset(token)


def current_user() -> str | None:
    current = _scope.get()
    return current.user_id if current else None


def count_database(seconds: float) -> None:
    """One statement or store call of `seconds`, charged to the current request if any."""
    current = _scope.get()
    if current is not None and current.database is not None:
        current.database.queries += 1
        current.database.seconds += seconds
