"""The ClusterEngine port: highly available PostgreSQL clusters.

HA comes from Patroni with a DCS (etcd): the engine configures and runs one Patroni per node
and asks Patroni (its REST API) for the truth about roles, timelines and lag. It never decides
a failover itself. Like `Engine`, every mutating method is idempotent and raises `EngineError`
with a readable message on failure.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime

from pgfleet.core.errors import EngineError
from pgfleet.ports.database_admin import DatabaseAdmin
from pgfleet.ports.engine import LogicalReadiness, LogLine, ServerStats, SubscriptionProgress

REPLICATION_MODES = ("async", "sync", "sync_strict")

# How far behind its primary (bytes of WAL, as Patroni reports it) a healthy replica may be.
# The local engine gives Patroni the same maximum_lag_on_failover: a replica further behind
# is never promoted, so it cannot be counted on to take over.
HEALTHY_LAG_BYTES = 1024 * 1024


@dataclass(frozen=True)
class NodeSpec:
    node_id: str  # stable id, also the Patroni member name
    port: int  # PostgreSQL port
    rest_port: int  # Patroni REST API port


@dataclass(frozen=True)
class Upstream:
    """A server outside the cluster that a standby cluster follows (Patroni's standby_cluster):
    the cluster's leader is a standby of it, its other nodes standbys of that leader."""

    host: str
    port: int
    slot: str  # the physical replication slot on the upstream that keeps its WAL for the cluster


@dataclass(frozen=True)
class ClusterSpec:
    cluster_id: str  # also the Patroni scope / DCS namespace key
    version: str
    nodes: tuple[NodeSpec, ...]
    replication_mode: str = "async"
    cpu: float = 1
    memory_mb: int = 1024
    storage_gb: int = 10
    settings: dict[str, str] = field(default_factory=dict)
    # A standby cluster: it copies and follows `standby_of` until `promote_standby_cluster`.
    standby_of: Upstream | None = None

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)


@dataclass(frozen=True)
class NodeState:
    node_id: str
    role: str  # "primary" | "replica" | "unknown"
    state: str  # Patroni's state: "running", "streaming", "stopped", "starting", ...
    host: str
    port: int
    timeline: int | None
    lag_bytes: int | None
    running: bool

    def replica_problem(
        self, primary: NodeState | None, max_lag_bytes: int = HEALTHY_LAG_BYTES
    ) -> str | None:
        """Why this node is not a healthy replica of `primary`, or None when it is one.

        Healthy means: running, streaming, on the primary's timeline (a node that streams
        the WAL of an older timeline has not followed the last promotion yet), and at most
        `max_lag_bytes` behind. This is what `wait_until_healthy` waits for and what a
        promotion candidate must be."""
        if primary is None or not primary.running:
            return "the cluster has no running primary"
        if self.node_id == primary.node_id:
            return "it is the primary"
        if not self.running:
            return f"not running ({self.state})"
        if self.role != "replica":
            return f"not a replica ({self.role})"
        if self.state != "streaming":
            return f"not streaming ({self.state})"
        if self.timeline is None or self.timeline != primary.timeline:
            return f"on timeline {self.timeline}, the primary on {primary.timeline}"
        if self.lag_bytes is None:
            return "its replication lag is unknown"
        if self.lag_bytes > max_lag_bytes:
            return f"{self.lag_bytes} bytes behind the primary (at most {max_lag_bytes})"
        return None


@dataclass(frozen=True)
class ReplicaStatus:
    node_name: str
    lag_bytes: int
    lag_seconds: float
    state: str
    is_healthy: bool


@dataclass(frozen=True)
class ReplicationStatus:
    primary: str | None
    replicas: list[ReplicaStatus]


@dataclass(frozen=True)
class DcsStatus:
    """Whether the DCS holding every cluster's leader keys answers: while it does not, no
    leader key is renewed, so Patroni demotes the primaries (a DCS outage stops writes)."""

    name: str  # what it is, e.g. "etcd"
    endpoint: str
    healthy: bool
    reason: str  # what it answered, or why it did not


class ClusterEngine(abc.ABC):
    """Runs Patroni clusters. See the module docstring for the contract."""

    @abc.abstractmethod
    def supported_versions(self) -> list[str]:
        """Major versions this engine can run clusters of, lowest first (a version a single
        server runs may lack what HA needs, e.g. pg_rewind). Cheap: nothing is run."""

    @abc.abstractmethod
    def provision_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        """Write the node's Patroni configuration and directories. Idempotent."""

    @abc.abstractmethod
    def start_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        """Start the node's Patroni (which starts PostgreSQL: bootstrap for the first node,
        a basebackup clone for the others). Returns once Patroni answers on its REST port;
        does not wait for replication. A running node is left alone."""

    @abc.abstractmethod
    def stop_node(self, cluster_id: str, node_id: str) -> str:
        """Stop the node's Patroni and its PostgreSQL. A stopped node is not an error."""

    @abc.abstractmethod
    def remove_node(self, cluster_id: str, node_id: str) -> str:
        """Stop the node, delete its data, and remove its member key from the DCS."""

    @abc.abstractmethod
    def destroy(self, cluster_id: str) -> str:
        """Stop every node, delete every directory and every DCS key of the cluster."""

    @abc.abstractmethod
    def wait_until_healthy(self, spec: ClusterSpec, timeout: float = 60) -> str:
        """Block until the cluster is healthy: one primary accepting writes, every other node
        of `spec` a healthy replica of it (`NodeState.replica_problem`: streaming, on the
        primary's timeline, at most HEALTHY_LAG_BYTES behind), and in the synchronous modes a
        synchronous standby chosen. What it checks is what `members` shows right after it
        returns. Raises EngineError on timeout, naming each node that is not ready and why."""

    def dcs_status(self, timeout: float = 2.0) -> DcsStatus | None:
        """Ask the DCS of this engine's clusters whether it is healthy, waiting at most
        `timeout` seconds. Never raises: an unreachable DCS is `healthy=False` with the reason.
        None for engines without a DCS of their own (a managed service keeps its own quorum)."""
        return None

    @abc.abstractmethod
    def members(self, cluster_id: str) -> list[NodeState]:
        """The nodes as Patroni sees them now. Never raises for a stopped cluster (returns
        nodes with running=False)."""

    @abc.abstractmethod
    def switchover(self, cluster_id: str, candidate: str) -> str:
        """Make `candidate` the primary. A switchover when the primary is healthy (in the
        synchronous modes the candidate is made a synchronous standby first, so any healthy
        replica may be named and no acknowledged commit is lost), a failover when it is not.
        Returns when the candidate accepts writes."""

    @abc.abstractmethod
    def set_replication_mode(self, spec: ClusterSpec) -> str:
        """Apply spec.replication_mode to the running cluster's dynamic configuration."""

    # --- standby clusters (a migration into a cluster) ---

    @abc.abstractmethod
    def replication_credentials(self, cluster_id: str) -> tuple[str, str]:
        """(role, password) the cluster's nodes replicate with, created once for the cluster.
        The upstream of a standby cluster must let this role in (`Engine.allow_replication`);
        the copied role then serves the cluster's own replication. Never log the password."""

    @abc.abstractmethod
    def replay_position(self, cluster_id: str) -> int | None:
        """How far the cluster's leader has replayed WAL, in bytes from 0/0 (for a standby
        cluster: how far it has followed its upstream; compare with
        `Engine.wal_position`). None when no leader answers. Never raises for that."""

    @abc.abstractmethod
    def promote_standby_cluster(self, cluster_id: str) -> str:
        """Stop following the upstream: remove standby_cluster from the dynamic configuration
        so the standby leader promotes itself, and return once it accepts writes (the other
        nodes keep following it). Idempotent: a promoted cluster is left alone."""

    @abc.abstractmethod
    def replication_status(self, cluster_id: str) -> ReplicationStatus:
        """Live replication state from Patroni and pg_stat_replication on the primary."""

    @abc.abstractmethod
    def ensure_database(self, cluster_id: str, database: str, username: str, password: str) -> str:
        """Create (or update) the LOGIN role and its database on the primary. Idempotent."""

    @abc.abstractmethod
    def node_stats(self, cluster_id: str, node_id: str, database: str) -> ServerStats:
        """Live statistics of one node. Raises EngineError if that node is down."""

    @abc.abstractmethod
    def node_logs(
        self, cluster_id: str, node_id: str, limit: int, since: datetime | None = None
    ) -> list[LogLine]:
        """Most recent PostgreSQL log lines of one node, oldest first, at most `limit`, only
        those at or after `since` when given (as `Engine.logs`)."""

    def ensure_tls(self, spec: ClusterSpec) -> str | None:
        """Give every node of a running cluster made before TLS was on its certificate,
        `ssl = on` and TCP over TLS only (`hostssl`), reloaded without a restart; what was
        done, or None when every node had them (or the engine's servers always do)."""
        return None

    def set_blocked_sources(self, cluster_id: str, addresses: list[str]) -> str:
        """Refuse TCP client connections from these addresses on every node of the cluster,
        as `Engine.set_blocked_sources` (the list replaces the previous one; kept across
        restarts; idempotent). Raises EngineError for an engine that cannot (the default)."""
        raise EngineError(f"{type(self).__name__} cannot refuse client addresses")

    # --- resources and administration (tenants, quotas, resize, pause) ---

    @abc.abstractmethod
    def reconfigure(self, spec: ClusterSpec) -> str:
        """Apply the settings derived from spec (memory, CPU, overrides) to the running
        cluster without restarting anything: every node's configuration is rewritten and
        reloaded, and parameters Patroni keeps in the DCS only are patched there. Settings that
        need a restart take effect at each node's next `restart_node`. DCS-only parameters that
        a standby may not have below its primary (max_connections, ...) are never lowered
        here, so a rolling restart cannot leave a standby unable to start. Returns what changed."""

    @abc.abstractmethod
    def restart_node(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        """Restart PostgreSQL on one node (through Patroni, which keeps its role) and return
        once it runs again: a replica streaming, a primary accepting writes. A primary's
        restart interrupts writes; switch over first to avoid that. Raises EngineError on
        timeout."""

    @abc.abstractmethod
    def apply_resources(self, spec: ClusterSpec) -> str:
        """Enforce memory and CPU of `spec` on every running node, like
        `Engine.apply_resources` (each node's Patroni and PostgreSQL share the node's limits,
        so a PostgreSQL that Patroni restarts stays inside them). Returns why, per node."""

    @abc.abstractmethod
    def release_resources(self, cluster_id: str) -> str:
        """Give back what `apply_resources` reserved for every node of a stopped cluster."""

    @abc.abstractmethod
    def database_admin(self, cluster_id: str) -> DatabaseAdmin:
        """Administration of the cluster through its current primary (connection usage is
        counted on every running node). Raises EngineError when there is no running primary."""

    # --- forwarded endpoints (added for migrations: a migrated instance's old host:port keeps
    # reaching the cluster that replaced it) ---

    @abc.abstractmethod
    def forward_endpoint(self, spec: ClusterSpec, port: int) -> str:
        """Make `port` on the engine's host reach the cluster's current primary, and keep it
        following the leader through switchovers and failovers (locally: HAProxy checking
        each node's Patroni REST `GET /primary`). The port must be free (the server that had
        it stopped). Idempotent: a forwarding already in place is left alone, or updated to
        `spec.nodes` without closing the port. Returns once the port forwards to the primary.
        Raises EngineError when the port is taken or nothing forwards within ~15 s."""

    @abc.abstractmethod
    def stop_forwarding(self, cluster_id: str, port: int) -> str:
        """Stop forwarding `port` to the cluster and remove what `forward_endpoint` made
        (sessions through it end). Idempotent; a port forwarding to another cluster is left
        alone."""

    @abc.abstractmethod
    def forwarded_to(self, cluster_id: str, port: int) -> str | None:
        """The node `port` forwards to now (the primary), or None when it does not forward
        to this cluster (stopped, removed, or no node passing the check). Never raises."""

    # --- major-version upgrade in place ---
    # Not abstract: an engine that cannot upgrade a cluster in place says so (EngineError), and
    # the pre-flight check turns that into a finding.

    def upgrade_check(self, cluster_id: str, target_version: str, link: bool) -> list[str]:
        """Pre-flight of an in-place upgrade of the running cluster to `target_version`, on
        its primary: `pg_upgrade --check` live against it (with hard links when `link`), and
        the extensions in use that the target does not ship. One sentence per finding; empty
        when it may go ahead. Changes nothing (a scratch new cluster is made and removed).
        Raises EngineError when there is no running primary."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def upgrade_space(self, cluster_id: str) -> tuple[int, int]:
        """(bytes of data in the primary's data directory, free bytes on its volume): what
        chooses between a copy and hard links."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def prepare_upgrade(self, cluster_id: str, node_id: str, target_version: str) -> str:
        """Make the new, empty cluster of `target_version` that `upgrade_primary` fills for
        node `node_id`, while the node still runs (initdb is downtime saved), and run a
        checkpoint on it, so that stopping it is quick (call it again right before the stop).
        Idempotent: a prepared cluster is kept. Raises EngineError when the node does not
        answer."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def upgrade_primary(self, spec: ClusterSpec, node_id: str, link: bool) -> str:
        """With every node stopped: `pg_upgrade` node `node_id`'s data directory to
        `spec.version` (the old directory kept beside it as the way back), set every other
        node's data directory aside (kept too; those nodes are cloned again from the new
        primary), rewrite every node's configuration for `spec`, and reset the cluster's DCS
        state except its dynamic configuration (leader, members, history, the initialize key:
        pg_upgrade gives a new system identifier, which the upgraded primary registers when it
        starts). Idempotent: an upgrade already done returns at once; one that failed half
        way starts again. Raises EngineError when a node still runs, or when pg_upgrade fails
        (the old data directory is then intact). May block for as long as pg_upgrade takes."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def start_leader(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        """Start `node_id` alone and return once it is the cluster's leader and accepts
        writes: after `upgrade_primary` (the upgraded node) or `roll_back_upgrade` (the old
        primary), when the DCS has no leader and the first node to start must be the one with
        the newest data. The other nodes stay stopped. Raises EngineError on timeout."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def roll_back_upgrade(self, spec: ClusterSpec, node_id: str, target_version: str) -> str:
        """Undo `upgrade_primary` (`spec` is the cluster at its old version): stop every node,
        put the kept data directories back (node `node_id`'s from pg_upgrade; the others' set
        aside), rewrite every node's configuration for `spec` and reset the DCS state again,
        so that starting the nodes brings the old cluster back as it was. Nodes stay stopped.
        Raises EngineError when the old version cannot be put back (hard links shared with a
        new server that has run: restore the backup taken before)."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def finish_upgrade(self, cluster_id: str, target_version: str) -> str:
        """Remove what `upgrade_primary` kept (the old data directories of every node): the
        upgraded cluster is verified. Idempotent."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def after_upgrade(self, cluster_id: str) -> str:
        """On the upgraded primary: `ALTER EXTENSION ... UPDATE` where the new version ships
        a newer one, and statistics rebuilt (`vacuumdb --analyze-in-stages`; pg_upgrade does
        not carry them). May take long on a big database. Returns what was done."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    def node_version(self, cluster_id: str, node_id: str) -> str:
        """The server version one running node reports (`server_version`, e.g. "18.1").
        Raises EngineError when the node does not answer."""
        raise EngineError("this engine cannot upgrade a cluster in place")

    # --- major-version upgrade blue/green: logical replication from one cluster to another ---
    # Not abstract: an engine that cannot says so (EngineError), which the pre-flight check turns
    # into a finding. "The primary" is the node that is the primary when the method runs.

    def logical_readiness(self, cluster_id: str, target_version: str) -> LogicalReadiness:
        """The logical replication prerequisites of the cluster, read on its primary (as
        `Engine.logical_readiness`). Changes nothing. Raises EngineError without a primary."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def enable_logical_decoding(self, spec: ClusterSpec) -> str:
        """wal_level=logical on the primary, restarting it once (it stays the primary) when it
        was lower. Idempotent."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def provision_logical_copy(self, spec: ClusterSpec, source_cluster_id: str) -> str:
        """Make and start the cluster `spec` (new, at its version, on its own ports) with the
        running source cluster's internal credentials, roles, databases and schema, no rows,
        and return once it is healthy. Idempotent: a complete copy is only started; an
        interrupted one is destroyed and made again. May block for minutes."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def subscribe(self, cluster_id: str, source_cluster_id: str) -> str:
        """A publication in each database of the source's primary and the subscription of the
        cluster's primary to it (copying the tables, then streaming). Idempotent."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def subscription_progress(self, cluster_id: str, source_cluster_id: str) -> SubscriptionProgress:
        """Where the subscriptions of the cluster stand against the source's primary. A
        failover of the source (its slots left behind) is reported in `errors`."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def checkpoint(self, cluster_id: str) -> str:
        """A CHECKPOINT on the primary, so its next shutdown is quick."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def set_read_only(self, cluster_id: str, read_only: bool) -> int:
        """As `Engine.set_read_only`, on the primary: default_transaction_read_only on (its
        client sessions ended) or reset. Returns the primary's WAL position after."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def wal_position(self, cluster_id: str) -> int:
        """The primary's current WAL position, in bytes from 0/0."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def schema_differences(self, cluster_id: str, source_cluster_id: str) -> list[str]:
        """Tables and columns that differ between the two primaries (as `Engine.schema_differences`)."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def copy_sequences(self, cluster_id: str, source_cluster_id: str) -> str:
        """The source primary's sequence values set on the cluster's primary. Idempotent."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def unsubscribe(self, cluster_id: str, source_cluster_id: str) -> str:
        """Drop the subscriptions, and the source's slots and publications, on whichever side
        has a running primary. Idempotent."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def swap_clusters(self, spec: ClusterSpec, green_cluster_id: str, kept_cluster_id: str) -> str:
        """With every node of both clusters stopped: the cluster `spec.cluster_id` is kept as
        `kept_cluster_id`, and `green_cluster_id` (same node ids) takes its id and its node
        ports (`spec`, at the green version); the DCS state of the id is reset but its dynamic
        configuration, so the nodes stay stopped until the green leader starts alone
        (`start_leader`). Idempotent. Raises EngineError when a node runs."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def unswap_clusters(self, spec: ClusterSpec, green_cluster_id: str, kept_cluster_id: str) -> str:
        """Undo `swap_clusters` (`spec` the cluster at its old version): every node stopped,
        the kept cluster takes its id back, green its own; the DCS state reset again, so the
        old primary starts first (`start_leader`). Idempotent: "not swapped" when it was not."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")

    def cluster_major_version(self, cluster_id: str) -> str | None:
        """The major version in the cluster's data directories; None when it has none."""
        raise EngineError("this engine cannot upgrade a cluster blue/green")
