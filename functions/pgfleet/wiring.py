"""Chooses adapters from settings, once per process (at the first request, not at import).

The only module that imports adapters: handlers ask here for their dependencies, services
receive ports.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgfleet.core.settings import Settings, get_settings

if TYPE_CHECKING:
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


@dataclass
class Dependencies:
    settings: Settings
    store: MetadataStore
    queue: Queue
    secrets: Secrets
    scheduler: Scheduler
    history: HistoryStore

    @functools.cached_property
    def engine(self) -> Engine:
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine

            return LocalPostgresEngine(self.settings.data_dir)
        raise ValueError(f"unknown engine {self.settings.engine!r}")

    @functools.cached_property
    def cluster_engine(self) -> ClusterEngine:
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine

            return LocalPatroniEngine(self.settings.data_dir, self.settings.etcd_endpoint)
        raise ValueError(f"unknown engine {self.settings.engine!r}")

    @functools.cached_property
    def events(self) -> EventPush:
        from pgfleet.adapters.websocket_events import ManagementApiEventPush

        return ManagementApiEventPush(self.settings.events_endpoint_url, self.settings.region)

    @functools.cached_property
    def objects(self) -> ObjectStore:
        """The reports bucket (compliance reports, evidence packages, attested evidence)."""
        from pgfleet.adapters.s3 import S3ObjectStore

        return S3ObjectStore(self.settings.reports_bucket)

    @functools.cached_property
    def notifier(self) -> Notifier:
        from pgfleet.adapters.notify import ChannelNotifier

        return ChannelNotifier()

    @functools.cached_property
    def pooler(self) -> Pooler:
        """PgBouncer in front of a server (pgfleet.domains.performance.pooling)."""
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.pgbouncer import LocalPgBouncer

            return LocalPgBouncer(self.settings.data_dir, self.engine.host)
        raise ValueError(f"unknown engine {self.settings.engine!r}")

    @functools.cached_property
    def rate_counter(self) -> RateCounter:
        from pgfleet.adapters.rate_limits import DynamoDBRateCounter

        return DynamoDBRateCounter(self.settings.rate_limit_table_name)

    # --- backups -----------------------------------------------------------------------------
    @functools.cached_property
    def backup_engine(self) -> BackupEngine:
        """Each stanza by its server's major version: pgBackRest with the repository of
        `PGFLEET_BACKUP_REPO_TYPE` (posix under PGFLEET_HOME, or s3), each stanza encrypted
        with its passphrase from Secrets; Barman (posix under PGFLEET_HOME) for PostgreSQL 18."""
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.backup_router import BackupRouter
            from pgfleet.adapters.engines.local.barman import LocalBarman
            from pgfleet.adapters.engines.local.pgbackrest import LocalPgBackRest
            from pgfleet.domains import archive

            pgbackrest = LocalPgBackRest(
                self.settings.home,
                cipher_passphrase_for=lambda stanza: archive.service.cipher_passphrase(self.secrets, stanza),
                repo_type=os.environ.get("PGFLEET_BACKUP_REPO_TYPE", "posix"),
            )
            return BackupRouter(self.settings.home, pgbackrest, LocalBarman(self.settings.home))
        raise ValueError(f"unknown engine {self.settings.engine!r}")

    @functools.cached_property
    def restore_host(self) -> RestoreHost:
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
            from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
            from pgfleet.adapters.engines.local.restore_host import LocalRestoreHost

            engine, cluster_engine = self.engine, self.cluster_engine
            assert isinstance(engine, LocalPostgresEngine) and isinstance(cluster_engine, LocalPatroniEngine)
            return LocalRestoreHost(self.settings.home, engine, cluster_engine, self.settings.etcd_endpoint)
        raise ValueError(f"unknown engine {self.settings.engine!r}")

    @functools.cached_property
    def sql(self) -> SqlTarget:
        """Privileged sessions on instances, replicas and cluster nodes (pgfleet.ports.sql)."""
        if self.settings.engine == "local":
            from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
            from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
            from pgfleet.adapters.engines.local.sql import LocalSqlTarget

            engine, cluster_engine = self.engine, self.cluster_engine
            assert isinstance(engine, LocalPostgresEngine) and isinstance(cluster_engine, LocalPatroniEngine)
            return LocalSqlTarget(engine, cluster_engine)
        raise ValueError(f"unknown engine {self.settings.engine!r}")


_override: Any = None


def override(ports: Any) -> None:
    """Use `ports` instead of the adapters from settings (tests of the layers above ports)."""
    global _override
    _override = ports


_building = threading.Lock()


def cold_start() -> None:
    """Read the settings once when a handler module loads (Lambda's init): a bad setting, such
    as an engine this build does not have, fails the init with its message instead of every
    request."""
    get_settings()


def dependencies() -> Dependencies:
    if _override is not None:
        return _override  # type: ignore[no-any-return]
    with _building:  # the first requests of a process may arrive on several threads at once
        return _from_settings()


@functools.cache
def _from_settings() -> Dependencies:
    from pgfleet.adapters.dynamodb import DynamoDBMetadataStore
    from pgfleet.adapters.history import DynamoDBHistoryStore
    from pgfleet.adapters.scheduler import EventBridgeScheduler
    from pgfleet.adapters.secrets import SecretsManagerSecrets
    from pgfleet.adapters.sqs import SQSQueue

    settings = get_settings()
    return Dependencies(
        settings=settings,
        store=DynamoDBMetadataStore(settings.table_name),
        queue=SQSQueue(settings.queue_name),
        secrets=SecretsManagerSecrets(),
        scheduler=EventBridgeScheduler(
            settings.schedule_group, settings.scheduled_function_arn, settings.scheduler_role_arn
        ),
        history=DynamoDBHistoryStore(settings.history_table_name),
    )
