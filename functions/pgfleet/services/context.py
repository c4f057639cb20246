"""What services are given: the ports, never adapters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pgfleet.ports.backup_engine import BackupEngine
    from pgfleet.ports.cluster_engine import ClusterEngine
    from pgfleet.ports.engine import Engine
    from pgfleet.ports.metadata import MetadataStore
    from pgfleet.ports.queue import Queue
    from pgfleet.ports.restore_host import RestoreHost
    from pgfleet.ports.scheduler import Scheduler
    from pgfleet.ports.secrets import Secrets
    from pgfleet.settings import Settings


class Ports(Protocol):
    settings: Settings
    store: MetadataStore
    queue: Queue
    secrets: Secrets
    scheduler: Scheduler

    @property
    def engine(self) -> Engine: ...

    @property
    def cluster_engine(self) -> ClusterEngine: ...

    # --- backups (pgfleet.services.archiving, backups, restores) ---
    @property
    def backup_engine(self) -> BackupEngine: ...

    @property
    def restore_host(self) -> RestoreHost: ...
