"""The Pooler port: a connection pooler (PgBouncer) in front of one managed server.

One pooler per server (an instance, or a cluster's primary), named by the server's id. It
listens on the engine host only, on a port the caller reserved, and serves the server's
application database. Clients authenticate with SCRAM; the pooler looks their secret up on
the server through `auth_user` and `auth_query` (a SECURITY DEFINER function that never
returns a superuser), so it keeps no password of theirs.

Every method is idempotent and may be retried after a crash at any point. Methods raise
`EngineError` with a readable message when the pooler cannot be started or refuses its
configuration; they never raise backend-specific exceptions.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from pgfleet.core.errors import EngineError

POOL_MODES = ("session", "transaction", "statement")


@dataclass(frozen=True)
class PoolerSpec:
    """What one pooler should look like. `port` is reserved by the caller; the backend is
    where the server accepts TCP connections (for a cluster: its current primary)."""

    server_id: str
    port: int
    backend_host: str
    backend_port: int
    database: str
    pool_mode: str
    default_pool_size: int
    max_client_connections: int
    reserve_pool_size: int
    auth_user: str
    auth_password: str  # kept by the pooler only in a file its OS user alone can read
    auth_query: str

    def __post_init__(self) -> None:
        if self.pool_mode not in POOL_MODES:
            raise EngineError(f"pool mode {self.pool_mode!r} is not one of {', '.join(POOL_MODES)}")
        if self.default_pool_size > self.max_client_connections:
            raise EngineError("the pool cannot be larger than the number of clients it serves")


@dataclass(frozen=True)
class PoolerState:
    """What the pooler of one server is right now."""

    exists: bool  # configured on this host
    running: bool  # its process is alive and it accepts connections
    pid: int | None = None
    port: int | None = None
    reason: str = ""


class Pooler(abc.ABC):
    @property
    @abc.abstractmethod
    def host(self) -> str:
        """The host poolers listen on (the engine host)."""

    @abc.abstractmethod
    def configure(self, spec: PoolerSpec) -> str:
        """Make the pooler of `spec.server_id` look like `spec` and run. A running pooler with
        this configuration is left alone; a changed one is reloaded (restarted when its port
        changed); a stopped one is started. Returns once it accepts connections (a few
        seconds at most), saying what it did. Raises EngineError when it cannot listen (the
        port is taken) or exits."""

    @abc.abstractmethod
    def start(self, server_id: str) -> str:
        """Start the configured pooler of `server_id` again (reconcile: after a crash or a
        host restart). A running one is left alone. Raises EngineError when none is
        configured or it cannot start."""

    @abc.abstractmethod
    def stop(self, server_id: str, remove: bool = False) -> str:
        """Stop the pooler (its client sessions end) and, with `remove`, delete its
        configuration and files. Nothing to stop is not an error."""

    @abc.abstractmethod
    def state(self, server_id: str) -> PoolerState:
        """Observe the pooler of `server_id`; never raises for a missing one."""

    @abc.abstractmethod
    def server_ids(self) -> list[str]:
        """Every server with a pooler configured on this host."""
