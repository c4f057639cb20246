"""The Engine port: where PostgreSQL servers actually run.

An engine turns a desired server (a `ServerSpec`) into a real, running PostgreSQL server and
reports what it observes. Services call it from Operation steps and from reconcile, both of
which may be retried after a crash at any point, so every method that changes something is
idempotent: calling it twice has the effect of calling it once.

Engines raise `EngineError` (from `pgfleet.core.errors`) with a readable message when the backend
refuses or fails; they never raise backend-specific exceptions.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime

from pgfleet.core.errors import EngineError
from pgfleet.ports.database_admin import DatabaseAdmin


@dataclass(frozen=True)
class ServerSpec:
    """What one PostgreSQL server should look like.

    `server_id` names the server on the engine (data directory, processes). `port` is already
    reserved by the caller; the engine listens on it on the loopback/endpoint host only.
    """

    server_id: str
    version: str
    port: int
    cpu: float = 1
    memory_mb: int = 1024
    storage_gb: int = 10
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerState:
    """What the engine observes of one server right now."""

    exists: bool
    running: bool
    accepting_connections: bool
    pid: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class ServerStats:
    connections_active: int
    connections_idle: int
    connections_total: int
    connections_max: int
    database_size_bytes: int
    uptime_seconds: float
    commits: int
    rollbacks: int
    cache_hit_ratio: float
    deadlocks: int
    collected_at: datetime


@dataclass(frozen=True)
class LogLine:
    """One entry of a server's log. The optional fields are those of PostgreSQL's jsonlog
    entry; None where the entry (or the engine's log) does not carry them."""

    timestamp: datetime
    severity: str
    message: str
    pid: int | None = None  # the backend that wrote it
    user: str | None = None
    database: str | None = None
    application_name: str | None = None
    sqlstate: str | None = None  # e.g. "40P01" (deadlock detected), "55P03" (lock not available)
    detail: str | None = None
    hint: str | None = None
    context: str | None = None
    query: str | None = None  # the statement the entry is about
    session_id: str | None = None
    line_num: int | None = None  # the entry's number within its session: (session_id, line_num) is unique
    remote_host: str | None = None  # the client's address (None: a local socket, or a background process)


@dataclass(frozen=True)
class ReplicaLag:
    """One standby streaming from a server, as that server (its source) sees it."""

    slot: str | None  # the physical replication slot it streams from (None: a standby without one)
    application_name: str  # what the standby calls itself; "" while it is not connected
    state: str  # pg_stat_replication's state ("streaming", "catchup", "backup"), else "disconnected"
    lag_bytes: int  # WAL the standby has not replayed yet (the WAL its slot holds while disconnected)
    lag_seconds: float | None  # replay lag measured by the source; None while not connected


@dataclass(frozen=True)
class HostCapacity:
    """What the host that runs an engine's servers has free right now."""

    memory_total_mb: int
    memory_available_mb: int  # what new processes can use without swapping (MemAvailable)
    disk_total_gb: float
    disk_free_gb: float  # on the filesystem that holds the servers' data directories
    cpu_count: int | None = None
    cpu_busy_percent: float | None = None  # of every CPU, over a short sample; None: not measured


def replication_slot_name(server_id: str) -> str:
    """The physical replication slot a standby named `server_id` streams from.

    Slot names allow only lowercase letters, digits and underscores, so a server id such as
    "pgr-1a2b" becomes "pgr_1a2b". Engines name slots with this and callers find them with it.
    """
    return re.sub(r"[^a-z0-9_]", "_", server_id.lower())[:63]


class Engine(abc.ABC):
    """Runs PostgreSQL servers. See the module docstring for the idempotency contract."""

    @property
    @abc.abstractmethod
    def host(self) -> str:
        """The host clients use to reach servers of this engine (e.g. "127.0.0.1")."""

    def port_available(self, port: int) -> bool:
        """Whether nothing else on the engine's host listens on `port`. Engines whose servers
        do not share a host (RDS) keep this default."""
        return True

    def host_capacity(self, cpu: bool = False) -> HostCapacity | None:
        """Free memory and disk of the host every server of this engine shares, measured now
        (cheap: no server is contacted; `cpu` adds how busy its CPUs are, over a 0.2 s sample). None for engines whose servers do not share a host
        (RDS): admission then checks only the tenant's limits."""
        return None

    def missing_tools(self) -> list[str]:
        """The programs this engine runs on its host that are not there (their paths), [] when
        every one is. Cheap: the filesystem is looked at, nothing is run. Engines that run no
        program themselves (RDS) keep this default."""
        return []

    @abc.abstractmethod
    def supported_versions(self) -> list[str]:
        """Major versions this engine can run, e.g. ["15"]."""

    @abc.abstractmethod
    def provision(self, spec: ServerSpec) -> str:
        """Create the server's storage and configuration, without starting it.

        Idempotent: when the data directory already exists and is complete, only the
        configuration is rewritten from `spec`. Returns a short reason ("created data
        directory from template", "already provisioned").
        """

    @abc.abstractmethod
    def start(self, spec: ServerSpec) -> str:
        """Start the server and wait until it accepts connections (at most ~60 s).

        Idempotent: a running server is left alone. Recovers from a stale postmaster.pid
        left by a killed server. Raises EngineError when the server cannot start.
        """

    @abc.abstractmethod
    def stop(self, server_id: str) -> str:
        """Stop the server (fast shutdown) and wait until it is down. A stopped or missing
        server is not an error."""

    @abc.abstractmethod
    def restart(self, spec: ServerSpec) -> str:
        """Restart the server and wait until it accepts connections again."""

    @abc.abstractmethod
    def destroy(self, server_id: str) -> str:
        """Stop the server and remove its data directory, sockets and logs. Idempotent."""

    @abc.abstractmethod
    def state(self, server_id: str) -> ServerState:
        """Observe the server without changing it. Never raises for a missing server."""

    @abc.abstractmethod
    def ensure_database(self, server_id: str, database: str, username: str, password: str) -> str:
        """Create (or update) a LOGIN role with this password (scram-sha-256) and a database
        owned by it. Idempotent; identifiers are quoted, never formatted into SQL."""

    @abc.abstractmethod
    def stats(self, server_id: str, database: str) -> ServerStats:
        """Read live statistics from the running server. Raises EngineError if it is down."""

    @abc.abstractmethod
    def logs(self, server_id: str, limit: int, since: datetime | None = None) -> list[LogLine]:
        """The server's most recent log lines, oldest first, at most `limit`, only those at or
        after `since` when given."""

    def tls_versions(self) -> frozenset[str]:
        """The majors whose servers this engine runs with TLS (clients admitted over TLS only):
        their connection URIs demand `sslmode=verify-full` against the platform's CA. Default:
        none."""
        return frozenset()

    def tls_ca_certificate(self) -> str | None:
        """The CA (PEM) that signs the certificates of the servers it runs with TLS (made if it
        does not exist yet); None for an engine without one."""
        return None

    def set_blocked_sources(self, server_id: str, addresses: list[str]) -> str:
        """Refuse every TCP client connection from these addresses (IPv4 or IPv6, one host
        each) to the server, before any password is asked for, and admit again any address
        not listed: the list REPLACES the previous one. Kept across provisions and restarts;
        effective for new connections when this returns (sessions already open stay). The
        platform's own sessions (a local socket) are never refused. Idempotent. Raises
        EngineError when the server is not provisioned, or for an engine that cannot (the
        default)."""
        raise EngineError(f"{type(self).__name__} cannot refuse client addresses")

    @abc.abstractmethod
    def provision_replica(self, spec: ServerSpec, source_server_id: str) -> str:
        """Create a streaming standby of the running server `source_server_id`, without
        starting it.

        The standby copies the source's data (its roles and databases included), streams WAL
        from it through the physical replication slot `replication_slot_name(spec.server_id)`
        (created on the source), and serves read-only queries on `spec.port` once started with
        `start(spec)`. Its settings come from `spec`, raised where a standby must match its
        source (max_connections and the like).

        Idempotent: when the standby's data directory exists, only its configuration is
        rewritten. Raises EngineError when the source is not running or the copy fails; a
        failed copy leaves nothing behind but the slot, which `drop_replication_slot` removes.
        May block for as long as copying the source's data takes.
        """

    @abc.abstractmethod
    def replica_status(self, source_server_id: str) -> list[ReplicaLag]:
        """The standbys of `source_server_id` as it sees them: one entry per physical slot
        (connected or not) and per connected standby without a slot. Raises EngineError when
        the source is not running."""

    @abc.abstractmethod
    def allow_replication(self, server_id: str, username: str, password: str, slot: str) -> str:
        """Let a standby outside this engine (a standby cluster) copy and follow the running
        server: a REPLICATION LOGIN role `username` with `password` (created or updated), the
        access rule it connects through over TCP, and the physical slot `slot` that keeps WAL
        for it. Idempotent. Raises EngineError when the server is not running."""

    @abc.abstractmethod
    def wal_position(self, server_id: str) -> int:
        """The server's current WAL write position in bytes from 0/0 (pg_current_wal_lsn)."""

    @abc.abstractmethod
    def set_read_only(self, server_id: str, read_only: bool) -> int:
        """Refuse (or accept again) writes on the running server: default_transaction_read_only
        set persistently (ALTER SYSTEM, which is not replicated) and reloaded; when refusing,
        every client session is terminated too, so no transaction begun before keeps writing.
        Returns the WAL position after that (`wal_position`): every commit acknowledged before
        the call is below it. Idempotent."""

    @abc.abstractmethod
    def drop_replication_slot(self, source_server_id: str, slot: str) -> str:
        """Drop the physical replication slot `slot` on the running server `source_server_id`,
        disconnecting a standby still streaming from it, so the source stops keeping WAL for it.
        Idempotent: a missing slot is not an error. Raises EngineError when the source is not
        running."""

    # --- resources and administration (tenants, quotas, resize, pause) ---

    @abc.abstractmethod
    def apply_resources(self, spec: ServerSpec) -> str:
        """Enforce `spec.memory_mb` and `spec.cpu` on the running server where the host
        allows it (local: a cgroup v1 group its processes move into; processes it starts later
        inherit it), on top of the PostgreSQL settings derived from them. Idempotent; never
        raises because the host cannot enforce limits: the returned reason says whether the
        limits are enforced or settings only. Raises EngineError when the server is not running."""

    def limit_backend(
        self, server_id: str, pid: int, cpu_percent: float | None, io_mbps: float | None
    ) -> tuple[list[str], list[str]]:
        """Limit ONE backend of the running server (a maintenance statement's) where the host
        allows it: CPU to `cpu_percent` of one core, storage reads and writes to `io_mbps` MB/s.
        Returns (what was applied, why the rest was not), sentences for users. Never raises for
        a host that cannot; the default (an engine without host access) applies nothing."""
        asked = [n for n, v in (("CPU", cpu_percent), ("I/O", io_mbps)) if v is not None]
        return [], [
            f"{' and '.join(asked)} limits need host access, which this engine does not have"
        ] if asked else []

    def release_backend(self, server_id: str, pid: int) -> None:
        """Undo `limit_backend` (the backend ended, or its work did). Idempotent; the default
        has nothing to undo."""
        return None

    @abc.abstractmethod
    def release_resources(self, server_id: str) -> str:
        """Give back what `apply_resources` reserved for a server that is stopped (pause,
        delete). Idempotent; a server without reserved resources is not an error."""

    @abc.abstractmethod
    def database_admin(self, server_id: str) -> DatabaseAdmin:
        """Administration of the running server's roles, tenants and usage (see
        `pgfleet.ports.database_admin`). Raises EngineError when the server is not provisioned."""

    # --- major-version upgrade in place (pg_upgrade) ---

    @abc.abstractmethod
    def server_version(self, server_id: str) -> str:
        """The running server's version as it reports it (SHOW server_version, e.g. "18.6")."""

    def ensure_tls(self, spec: ServerSpec) -> str | None:
        """Give a running server made before TLS was on its certificate, `ssl = on` and TCP
        over TLS only, and reload it; what was done, or None when it had them already (or the
        engine's servers always have them, as RDS's)."""
        return None

    def component_versions(self) -> dict[str, str]:
        """The versions of the satellite programs this engine runs servers with, as installed
        on its host: {"pgbouncer": "1.18.0", "pgbackrest": "2.45", "patroni": "4.1.5"}. A
        program that is not installed (or an engine that runs none, such as RDS) is absent.
        Reads the installed programs (a second at most); changes nothing."""
        return {}

    @abc.abstractmethod
    def upgrade_check(self, server_id: str, target_version: str, link: bool) -> list[str]:
        """Findings that would make an in-place upgrade of the server to `target_version` fail
        (pg_upgrade --check against the server, live when it runs; extensions the target
        lacks), one sentence each; empty when it would pass. Changes nothing."""

    @abc.abstractmethod
    def upgrade_space(self, server_id: str) -> tuple[int, int]:
        """(bytes of the server's data directory, bytes free on the volume holding it)."""

    @abc.abstractmethod
    def prepare_upgrade(self, server_id: str, target_version: str) -> str:
        """Initialise the new version's empty cluster beside the running server (initdb with
        its checksum setting), so the downtime of `upgrade_data` does not include it. Idempotent."""

    @abc.abstractmethod
    def upgrade_data(self, spec: ServerSpec, link: bool) -> str:
        """pg_upgrade the stopped server's data directory to `spec.version` (with hard links
        when `link`) and rewrite its configuration from `spec`; the old data directory is kept
        as the way back until `finish_upgrade`. Idempotent. Does not start the server."""

    @abc.abstractmethod
    def roll_back_upgrade(self, server_id: str, target_version: str) -> str:
        """Stop the server if it runs and put back the data directory kept by `upgrade_data`.
        Idempotent. Raises EngineError when the old version cannot be put back (link mode after
        the new server ran)."""

    @abc.abstractmethod
    def finish_upgrade(self, server_id: str, target_version: str) -> str:
        """Remove the data directory kept by `upgrade_data` (the upgraded server is verified)."""

    @abc.abstractmethod
    def after_upgrade(self, server_id: str) -> str:
        """On the running upgraded server: update every extension to the target's version in
        every database, then refresh planner statistics (vacuumdb --analyze-in-stages)."""

    # --- logical replication (blue/green upgrades) ---
    # Engines that cannot run a second server beside the first (RDS, whose own blue/green
    # deployments are another API) keep these defaults, which refuse.

    def logical_readiness(self, server_id: str, target_version: str) -> LogicalReadiness:
        """What a blue/green upgrade of the running server to `target_version` needs, as the
        server shows it now (see LogicalReadiness). Changes nothing. Raises EngineError when
        the server is not running."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def enable_logical_decoding(self, spec: ServerSpec) -> str:
        """wal_level=logical on the running server, persistently; restarts it (a moment
        without connections) only when the level was lower. Idempotent."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def provision_logical_copy(self, spec: ServerSpec, source_server_id: str) -> str:
        """Create and start the server `spec` (a new server id, its own port, any supported
        version) holding the roles (with their passwords), databases and schema of the
        running `source_server_id`, and no rows. Idempotent: a complete copy is only started;
        one interrupted half way is made again. May block for as long as the schema takes."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def subscribe(self, server_id: str, source_server_id: str) -> str:
        """Native logical replication of every table of every database of the running source
        into the running server made by `provision_logical_copy`: a publication on the source,
        a subscription on the server that copies the tables and then streams their changes.
        Returns at once (the copy runs in the servers). Idempotent."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def subscription_progress(self, server_id: str, source_server_id: str) -> SubscriptionProgress:
        """How far the server's subscriptions have come (see SubscriptionProgress). Both
        servers must run."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def checkpoint(self, server_id: str) -> str:
        """A checkpoint on the running server, so its next shutdown is quick."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def copy_sequences(self, server_id: str, source_server_id: str) -> str:
        """Set every sequence of the server to the running source's value (sequences are not
        replicated). Meant for a source that refuses writes. Idempotent."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def schema_differences(self, server_id: str, source_server_id: str) -> list[str]:
        """What differs between the tables and columns of the two running servers, one line
        each; empty when they match (DDL is not replicated: a table or column made on the
        source after the copy shows here). Changes nothing."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def unsubscribe(self, server_id: str, source_server_id: str) -> str:
        """Stop the replication `subscribe` set up: the server's subscriptions, then the
        source's slots and publications, each where its server runs. Idempotent."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def rename_server(self, server_id: str, new_server_id: str) -> str:
        """Give the stopped server `server_id` the id `new_server_id` (its data, logs and
        configuration move with it; its port stays until it is provisioned again). Raises
        EngineError when it runs or `new_server_id` exists. Idempotent."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")

    def server_major_version(self, server_id: str) -> str | None:
        """The major version of the server's data, without contacting it; None when the
        server does not exist."""
        raise EngineError(f"{type(self).__name__} does not offer blue/green upgrades")


@dataclass(frozen=True)
class LogicalReadiness:
    """A server's logical replication prerequisites, as `logical_readiness` reads them."""

    wal_level: str  # "logical" lets a publication decode; lower needs a restart first
    databases: list[str]  # the databases replicated (every one that allows connections)
    tables_without_key: list[str]  # "db: schema.table" with neither primary key nor replica identity
    unlogged_tables: list[str]  # "db: schema.table": logical replication skips them
    large_objects: list[str]  # "db: count": logical replication skips large objects
    missing_extensions: list[str]  # "db: extension" the target version does not ship
    ddl_in_flight: list[str]  # "db: schema.table" a session holds or awaits an ACCESS EXCLUSIVE lock on
    free_slots: int  # replication slots left (one per database is needed)
    free_wal_senders: int
    prepared_transactions: int  # a prepared transaction holds up the slots' creation
    data_bytes: int  # of the data directory: what the copy will need
    free_bytes: int  # on the volume that holds the copy


@dataclass(frozen=True)
class SubscriptionProgress:
    """Where a subscriber stands, as `subscription_progress` reads it."""

    tables_total: int
    tables_ready: int  # copied and streaming
    # The lowest WAL position of the source every subscription has applied; None: one is not connected.
    confirmed_position: int | None
    lag_bytes: int | None  # the source's WAL position minus confirmed_position
    errors: list[str]  # apply or copy errors, missing subscriptions; empty when healthy
