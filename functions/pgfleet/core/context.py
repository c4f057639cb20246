"""What services are given: the ports, never adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pgfleet.core.settings import Settings
    from pgfleet.ports.backup_engine import BackupEngine
    from pgfleet.ports.cluster_engine import ClusterEngine
    from pgfleet.ports.engine import Engine
    from pgfleet.ports.events import EventPush
    from pgfleet.ports.history import HistoryStore
    from pgfleet.ports.metadata import MetadataStore
    from pgfleet.ports.notifier import Notifier
    from pgfleet.ports.object_store import ObjectStore
    from pgfleet.ports.pooler import Pooler
    from pgfleet.ports.queue import Queue
    from pgfleet.ports.rate_limits import RateCounter
    from pgfleet.ports.restore_host import RestoreHost
    from pgfleet.ports.scheduler import Scheduler
    from pgfleet.ports.secrets import Secrets
    from pgfleet.ports.sql import SqlTarget


class Ports(Protocol):
    settings: Settings
    store: MetadataStore
    queue: Queue
    secrets: Secrets
    scheduler: Scheduler
    history: HistoryStore  # captures, metric samples, audit events: time-ordered, expiring

    @property
    def engine(self) -> Engine: ...

    @property
    def cluster_engine(self) -> ClusterEngine: ...

    # --- backups (pgfleet.domains.archive.service, backups, restores) ---
    @property
    def backup_engine(self) -> BackupEngine: ...

    @property
    def restore_host(self) -> RestoreHost: ...

    # --- notification channels (pgfleet.domains.notifications) ---
    @property
    def notifier(self) -> Notifier: ...

    # --- connection poolers in front of servers (pgfleet.domains.performance.pooling) ---
    @property
    def pooler(self) -> Pooler: ...

    # --- the API platform: rate-limit counters (pgfleet.core.rate_limits) ---
    @property
    def rate_counter(self) -> RateCounter: ...

    # --- real-time events: pushes to WebSocket connections (pgfleet.domains.events) ---
    @property
    def events(self) -> EventPush: ...

    # --- documents: compliance reports and evidence (pgfleet.domains.compliance) ---
    @property
    def objects(self) -> ObjectStore: ...

    # --- SQL inside managed servers (privileged sessions; see pgfleet.ports.sql) ---
    @property
    def sql(self) -> SqlTarget: ...


# The handlers say where the ports come from (wiring.dependencies at cold start); domains
# ask for them here, so they never import the wiring or an adapter.
_provider: Callable[[], Ports] | None = None


def provide(provider: Callable[[], Ports]) -> None:
    """Set the function that returns the ports (called once by each handler module)."""
    global _provider
    _provider = provider


def current() -> Ports:
    """The ports of this process. Raises RuntimeError before a handler has provided them."""
    if _provider is None:
        raise RuntimeError("no ports provided: a handler must call pgfleet.core.context.provide()")
    return _provider()
