"""The local HA engine: Patroni clusters whose nodes are processes on this machine.

Layout under the engine's home:

    clusters/<cluster_id>/secrets.json           passwords (0600, control-plane user only)
    clusters/<cluster_id>/<node_id>/data         PGDATA (0700, data-plane user)
    clusters/<cluster_id>/<node_id>/socket       private unix socket directory (0700)
    clusters/<cluster_id>/<node_id>/log          PostgreSQL jsonlog files
    clusters/<cluster_id>/<node_id>/patroni.yml  Patroni configuration (no secrets in it)
    clusters/<cluster_id>/<node_id>/patroni.pid, patroni.log, patroni.out
    locks/patroni-<cluster_id>.lock              serialises changes to one cluster

One Patroni per node, started detached as the data-plane user; Patroni starts and stops
PostgreSQL, bootstraps the first node and clones the others. The engine never decides a
failover: roles, timelines and lag come from Patroni's REST API, and switchovers go through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgfleet.adapters.engines.local import patroni_config as cfg
from pgfleet.adapters.engines.local import patroni_process as proc
from pgfleet.adapters.engines.local import patroni_rest as rest
from pgfleet.adapters.engines.local import postgres as pg
from pgfleet.adapters.engines.local import process, tls
from pgfleet.adapters.engines.local.cgroups import CgroupLimits
from pgfleet.adapters.engines.local.database_admin import AdminServer, LocalDatabaseAdmin
from pgfleet.adapters.engines.local.haproxy import Backend, HAProxyEndpoints
from pgfleet.adapters.engines.local.patroni_logical import PatroniLogicalReplication
from pgfleet.adapters.engines.local.patroni_upgrade import ClusterUpgrade
from pgfleet.adapters.engines.local.postgres.config import read_blocked, write_blocked
from pgfleet.adapters.engines.local.postgres.logs import read_logs
from pgfleet.adapters.engines.local.sql import AdminSocket, connect, first_line
from pgfleet.core.errors import EngineError
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import (
    HEALTHY_LAG_BYTES,
    ClusterEngine,
    ClusterSpec,
    DcsStatus,
    NodeSpec,
    NodeState,
    ReplicaStatus,
    ReplicationStatus,
)
from pgfleet.ports.database_admin import DatabaseAdmin
from pgfleet.ports.engine import LogLine, ServerStats

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
REST_START_TIMEOUT = 60.0
PROMOTION_TIMEOUT = 90.0
CONFIG_TIMEOUT = 30.0
HBA_RELOAD_TIMEOUT = 10.0  # Patroni applies a reloaded patroni.yml within a loop_wait or two
CONNECT_TIMEOUT = 3
# What Patroni runs from postgresql.bin_dir: bootstrap, clone, rewind, and its checks.
PATRONI_PROGRAMS = (
    "postgres",
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "pg_isready",
    "pg_rewind",
)


class LocalPatroniEngine(PatroniLogicalReplication, ClusterEngine):
    """Patroni clusters under `home`, with their DCS in the etcd at `etcd_endpoint`."""

    def __init__(
        self, home: Path, etcd_endpoint: str, host: str = "127.0.0.1", limits: CgroupLimits | None = None
    ) -> None:
        ipaddress.ip_address(host)  # listen addresses and pg_hba need an address, not a name
        self._host = host
        self._limits = limits or CgroupLimits()
        self._etcd = etcd_endpoint.split(",")[0].strip()
        self._etcd_endpoint = etcd_endpoint
        self._home = Path(home).resolve()
        self._home.mkdir(parents=True, exist_ok=True)
        self._home.chmod(self._home.stat().st_mode | 0o711)  # the data-plane user must traverse
        process.ensure_traversable(self._home)
        (self._home / "clusters").mkdir(mode=0o711, exist_ok=True)
        (self._home / "locks").mkdir(mode=0o700, exist_ok=True)

    # -- layout --

    def cluster_dir(self, cluster_id: str) -> Path:
        if not ID_RE.match(cluster_id):
            raise EngineError(f"invalid cluster id {cluster_id!r}")
        return self._home / "clusters" / cluster_id

    def paths(self, cluster_id: str, node_id: str) -> cfg.NodePaths:
        if not ID_RE.match(node_id):
            raise EngineError(f"invalid node id {node_id!r}")
        return cfg.NodePaths(self.cluster_dir(cluster_id) / node_id)

    def node_ids(self, cluster_id: str) -> list[str]:
        """The provisioned nodes of a cluster ([] for an unknown cluster)."""
        return list(self._nodes(cluster_id))

    def admin_socket(self, cluster_id: str, node_id: str) -> AdminSocket:
        """Where the admin role reaches the node's PostgreSQL (its private socket and port)."""
        paths = self.paths(cluster_id, node_id)
        return AdminSocket(paths.socket, cfg.read_ports(paths.config)[0], cfg.SUPERUSER)

    def _nodes(self, cluster_id: str) -> dict[str, cfg.NodePaths]:
        """Provisioned nodes of a cluster, by node id."""
        root = self.cluster_dir(cluster_id)
        if not root.is_dir():
            return {}
        return {p.parent.name: cfg.NodePaths(p.parent) for p in sorted(root.glob("*/patroni.yml"))}

    def _rest_url(self, paths: cfg.NodePaths) -> str:
        return f"http://{self._host}:{cfg.read_ports(paths.config)[1]}"

    def _secrets(self, cluster_id: str) -> cfg.ClusterSecrets:
        return cfg.load_or_create_secrets(self.cluster_dir(cluster_id) / "secrets.json")

    def _auth(self, cluster_id: str) -> tuple[str, str]:
        return cfg.RESTAPI_USER, self._secrets(cluster_id).restapi

    @contextlib.contextmanager
    def _lock(self, cluster_id: str) -> Iterator[None]:
        """An exclusive flock across processes and threads for changes to one cluster."""
        with open(self._home / "locks" / f"patroni-{cluster_id}.lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- port: lifecycle --

    def supported_versions(self) -> list[str]:
        """Installed major versions whose binaries hold every program Patroni runs (pg_rewind
        and pg_isready too, which a single server does without), lowest first."""
        return [
            version
            for version, bin_dir in pg.installed_binaries().items()
            if all(os.access(bin_dir / name, os.X_OK) for name in PATRONI_PROGRAMS)
        ]

    def provision_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        """Write the node's directories and patroni.yml (rewritten every time). Data is left
        to Patroni: the first node bootstraps it, the others clone it. A running Patroni is
        told to reload a changed file (SIGHUP); parameters Patroni keeps in the DCS only
        (max_connections, ...) are not changed by this, only at bootstrap."""
        paths = self.paths(spec.cluster_id, node.node_id)
        cfg.check_socket_path(paths, node.port)
        text = cfg.dump(
            cfg.render(
                spec,
                node,
                paths,
                self._host,
                self._etcd_endpoint,
                tls.ensure(self._home, self._host) if pg.tls_available(spec.version) else None,
                read_blocked(self.cluster_dir(spec.cluster_id)),
            )
        )
        with self._lock(spec.cluster_id):
            cluster_dir = self.cluster_dir(spec.cluster_id)
            cluster_dir.mkdir(mode=0o711, exist_ok=True)
            self._secrets(spec.cluster_id)
            old = paths.config.read_text() if paths.config.exists() else None
            for directory in (paths.root, paths.socket, paths.log):
                process.make_owned_dir(directory)
            if old == text:
                return "already provisioned"
            process.write_owned_file(paths.config, text)
            if old is not None and proc.reload_patroni(paths):
                return "configuration rewritten and reloaded"
        return "provisioned" if old is None else "configuration rewritten"

    def start_node(self, spec: ClusterSpec, node: NodeSpec) -> str:
        """Start the node's Patroni and return once its REST API answers."""
        paths = self.paths(spec.cluster_id, node.node_id)
        if not paths.config.exists():
            raise EngineError(f"node {node.node_id} of {spec.cluster_id} is not provisioned")
        url = f"http://{self._host}:{node.rest_port}"
        with self._lock(spec.cluster_id):
            if proc.patroni_pid(paths) is not None:
                reason = "already running"
            else:
                moved = cfg.with_etcd(paths.config.read_text(), self._etcd_endpoint)
                if moved is not None:  # never let a node look for its leader in another etcd
                    process.write_owned_file(paths.config, moved)
                # A node provisioned by an earlier version gets the logging threat detection reads.
                signalled = cfg.with_signals(paths.config.read_text(), spec.version)
                if signalled is not None:
                    process.write_owned_file(paths.config, signalled)
                proc.clear_orphans(paths)
                proc.spawn_patroni(paths, self._secrets(spec.cluster_id))
                reason = "started" if moved is None else f"started (its DCS is now {self._etcd_endpoint})"
        deadline = time.monotonic() + REST_START_TIMEOUT
        while not rest.answers(url):
            if proc.patroni_pid(paths) is None:
                raise EngineError(f"Patroni of {node.node_id} exited: {proc.tail(paths)}")
            if time.monotonic() > deadline:
                raise EngineError(f"Patroni of {node.node_id} did not answer on {url}: {proc.tail(paths)}")
            time.sleep(0.1)
        # Patroni in the node's cgroup: every PostgreSQL it starts from now on inherits it.
        self._place(spec, node.node_id)
        return reason

    def stop_node(self, cluster_id: str, node_id: str) -> str:
        """SIGTERM to Patroni, which stops PostgreSQL (and hands over leadership if it led)."""
        paths = self.paths(cluster_id, node_id)
        with self._lock(cluster_id):
            reason = proc.stop_node(paths)
            self._limits.release(_group(cluster_id, node_id))  # a stopped node holds no memory
            return reason

    def kill_node(self, cluster_id: str, node_id: str) -> str:
        """Simulate losing the node: kill -9 its Patroni and its postmaster (and whatever else
        runs in its directory). For tests and benchmarks."""
        paths = self.paths(cluster_id, node_id)
        with self._lock(cluster_id):
            return proc.kill_node(paths)

    def remove_node(self, cluster_id: str, node_id: str) -> str:
        """Stop the node, delete its directory, and delete its member key from the DCS."""
        paths = self.paths(cluster_id, node_id)
        with self._lock(cluster_id):
            proc.stop_node(paths)
            pg.remove_tree(paths.root)
            etcd.delete_key(self._etcd, f"{cfg.NAMESPACE}{cluster_id}/members/{node_id}")
            self._limits.release(_group(cluster_id, node_id))
        return "removed"

    def destroy(self, cluster_id: str) -> str:
        """Kill every node (Patroni first, so none restarts PostgreSQL or takes the lead),
        then PostgreSQL, remove the directory, and delete the cluster's DCS keys."""
        root = self.cluster_dir(cluster_id)
        trash = root.with_name(f".{cluster_id}.deleting")
        with self._lock(cluster_id):
            existed = root.exists()
            nodes = list(self._nodes(cluster_id).values())
            for paths in nodes:
                proc.kill_patroni(paths)
            for paths in nodes:
                proc.quit_postmaster(paths)
            for paths in nodes:
                proc.kill_node(paths)
            # Anything else still working in the cluster's directories (pg_basebackup, ...).
            proc.kill_everything_under(root)
            proc.kill_everything_under(trash)
            if existed:
                os.rename(root, trash)  # a half-removed directory never looks like a cluster
            if trash.exists():
                shutil.rmtree(trash)
            etcd.delete_prefix(self._etcd, f"{cfg.NAMESPACE}{cluster_id}/")
            for paths in nodes:
                self._limits.release(_group(cluster_id, paths.root.name))
        return "destroyed" if existed else "already destroyed"

    def wait_until_healthy(self, spec: ClusterSpec, timeout: float = 60) -> str:
        """Wait for a writable primary and every other node of `spec` a healthy replica of it
        (`NodeState.replica_problem`: streaming, on the primary's timeline, lag within
        HEALTHY_LAG_BYTES); in the synchronous modes also for Patroni to have chosen a
        synchronous standby, since until then commits are not protected (or, with
        sync_strict, blocked).

        "streaming" alone is not enough: a node that rejoins after a failover streams the WAL
        of the old timeline up to the promotion point first, and Patroni publishes what a node
        reports only once a loop, so it can show "streaming" on the old timeline for seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            observed, cluster = self._observe(spec.cluster_id)
            members = {m.node_id: m for m in observed}
            primaries = [m for m in members.values() if m.role == "primary" and m.running]
            primary = primaries[0] if len(primaries) == 1 else None
            waiting = []
            if primary is None:
                waiting.append(f"primary ({len(primaries)} found)")
            elif spec.standby_of is None and not self._writable(spec.cluster_id, primary.node_id):
                waiting.append(f"{primary.node_id}: primary not accepting writes")
            for n in spec.nodes:
                m = members.get(n.node_id)
                if m is None:
                    waiting.append(f"{n.node_id}: absent")
                elif primary is None:
                    if m.role != "primary":
                        waiting.append(f"{n.node_id}: {m.role}/{m.state}")
                elif m is not primary and (problem := m.replica_problem(primary)) is not None:
                    waiting.append(f"{n.node_id}: {problem}")
            if spec.replication_mode != "async" and len(spec.nodes) > 1 and not rest.sync_standbys(cluster):
                waiting.append("no synchronous standby chosen yet")
            if not waiting and primary is not None:
                # The same test replication_status applies: the primary itself must see each
                # replica streaming (Patroni's view can run a loop ahead of a new walsender).
                stats = self._streaming_stats(spec.cluster_id, primary.node_id)
                for n in spec.nodes:
                    if n.node_id != primary.node_id and stats.get(n.node_id, ("absent",))[0] != "streaming":
                        waiting.append(f"{n.node_id}: not streaming in the primary's pg_stat_replication")
            if not waiting and primary is not None:
                return (
                    f"healthy: primary {primary.node_id} on timeline {primary.timeline},"
                    f" {len(spec.nodes) - 1} replica(s) streaming on it"
                )
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"cluster {spec.cluster_id} not healthy after {timeout:.0f}s: " + "; ".join(waiting)
                )
            time.sleep(0.25)

    # -- port: observation --

    def dcs_status(self, timeout: float = 2.0) -> DcsStatus:
        """The local etcd every node's Patroni keeps its leader key in (the first endpoint)."""
        healthy, reason = etcd.probe(self._etcd, timeout)
        return DcsStatus(name="etcd", endpoint=self._etcd, healthy=healthy, reason=reason)

    def members(self, cluster_id: str) -> list[NodeState]:
        """Members from GET /cluster, plus provisioned nodes Patroni does not list (stopped).
        A member whose Patroni process is gone here is reported stopped even while its DCS
        key has not expired yet."""
        return self._observe(cluster_id)[0]

    def _observe(self, cluster_id: str) -> tuple[list[NodeState], dict[str, Any]]:
        """(members, the raw GET /cluster answer, empty when no Patroni answers)."""
        nodes = self._nodes(cluster_id)
        live = {nid for nid, p in nodes.items() if proc.patroni_pid(p) is not None}
        cluster = rest.get_cluster([self._rest_url(nodes[nid]) for nid in sorted(live)]) or {"members": []}
        ports = {nid: cfg.read_ports(p.config)[0] for nid, p in nodes.items()}
        return rest.node_states(cluster, ports, live, self._host), cluster

    def switchover(self, cluster_id: str, candidate: str) -> str:
        """POST /switchover when the leader is healthy, else POST /failover; then wait until
        the candidate is the leader and accepts writes.

        In a synchronous mode Patroni switches over only to a member of its /sync key (412
        "candidate name does not match with sync_standby" otherwise), so the candidate is made
        one first (`_make_synchronous`). The leader then demotes itself cleanly and hands over
        only once the candidate has received its shutdown checkpoint: no acknowledged commit
        is lost."""
        nodes = self._nodes(cluster_id)
        if candidate not in nodes:
            raise EngineError(f"node {candidate} is not part of cluster {cluster_id}")
        cluster = rest.get_cluster([self._rest_url(p) for p in nodes.values()])
        if cluster is None:
            raise EngineError(f"no Patroni of cluster {cluster_id} answers")
        leader = rest.leader_of(cluster)
        if leader is not None and leader.get("name") == candidate:
            self._wait_promoted(cluster_id, candidate)
            return f"{candidate} is already the primary"
        leader_name = str(leader.get("name")) if leader else None
        leader_ok = (
            leader is not None
            and leader.get("state") == "running"
            and leader_name in nodes
            and proc.patroni_pid(nodes[leader_name]) is not None
        )
        notes = []
        if leader_ok and leader_name is not None:
            notes = self._make_synchronous(cluster_id, candidate)
            action, body = "switchover", {"leader": leader_name, "candidate": candidate}
            target = self._rest_url(nodes[leader_name])
        else:
            action, body = "failover", {"candidate": candidate}
            target = self._rest_url(nodes[candidate])
        try:
            resp = rest.call(
                target, "POST", f"/{action}", body, auth=self._auth(cluster_id), timeout=rest.ACTION_TIMEOUT
            )
        except OSError as exc:
            raise EngineError(f"{action} to {candidate}: Patroni did not answer: {exc}") from exc
        rest.require_ok(resp, f"{action} to {candidate}")
        self._wait_promoted(cluster_id, candidate)
        return "; ".join([*notes, f"{action} to {candidate} done"])

    def _make_synchronous(self, cluster_id: str, candidate: str) -> list[str]:
        """In a synchronous mode, wait until Patroni counts `candidate` as a synchronous
        standby. A cluster still in Patroni's plain synchronous mode (one synchronous standby:
        how `sync` clusters were configured before quorum commit) is moved to quorum commit
        first, where every streaming replica is one. What was done, for the step's reason."""
        mode = self._dcs_config(cluster_id).get("synchronous_mode")
        if not _synchronous(mode):
            return []
        notes = []
        if str(mode).lower() != cfg.QUORUM:
            self._apply_config(cluster_id, {"synchronous_mode": cfg.QUORUM}, "quorum commit")
            notes.append("synchronous replication moved to quorum commit")
        urls = [self._rest_url(p) for p in self._nodes(cluster_id).values()]
        deadline = time.monotonic() + CONFIG_TIMEOUT
        while True:
            cluster = rest.get_cluster(urls) or {"members": []}
            standbys = rest.sync_standbys(cluster)
            if candidate in standbys:
                return [*notes, f"{candidate} is a synchronous standby"]
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"{candidate} did not become a synchronous standby in time"
                    f" (synchronous standbys: {', '.join(standbys) or 'none'})"
                )
            time.sleep(0.25)

    def set_replication_mode(self, spec: ClusterSpec) -> str:
        """PATCH /config with the synchronous_mode flags of spec.replication_mode, until
        GET /config shows them."""
        self._apply_config(
            spec.cluster_id, cfg.replication_flags(spec.replication_mode), spec.replication_mode
        )
        return f"replication mode {spec.replication_mode}"

    def _apply_config(self, cluster_id: str, values: dict[str, Any], what: str) -> None:
        """PATCH /config with top-level `values` until GET /config shows them.

        Patroni patches its cached copy of the DCS configuration: right after an earlier
        change that copy may be stale, and a PATCH then looks like a no-op (or conflicts,
        409). Checking the result and patching again makes the call reliable.
        """
        auth = self._auth(cluster_id)
        deadline = time.monotonic() + CONFIG_TIMEOUT
        while True:
            for paths in self._nodes(cluster_id).values():
                url = self._rest_url(paths)
                try:
                    resp = rest.call(url, "PATCH", "/config", values, auth=auth)
                    if resp.status != 409:
                        rest.require_ok(resp, f"the configuration change ({what})")
                        if rest.config_shows(url, values):
                            return
                except OSError:
                    continue
                break
            else:
                raise EngineError(f"no Patroni of cluster {cluster_id} answers")
            if time.monotonic() >= deadline:
                raise EngineError(f"configuration change ({what}) was not applied in time")
            time.sleep(0.2)

    # -- port: standby clusters --

    def replication_credentials(self, cluster_id: str) -> tuple[str, str]:
        self.cluster_dir(cluster_id).mkdir(mode=0o711, exist_ok=True)
        return cfg.REPLICATION_USER, self._secrets(cluster_id).replication

    def replay_position(self, cluster_id: str) -> int | None:
        leader = next((m for m in self.members(cluster_id) if m.role == "primary" and m.running), None)
        if leader is None:
            return None
        try:
            with self._connect(cluster_id, leader.node_id) as conn:
                row = conn.execute(
                    "SELECT pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()"
                    " THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END,"
                    " '0/0')::pg_catalog.int8"
                ).fetchone()
        except (EngineError, psycopg.Error):
            return None
        return int(row[0]) if row and row[0] is not None else None

    def promote_standby_cluster(self, cluster_id: str) -> str:
        """PATCH /config {"standby_cluster": null} until GET /config shows it gone, wait for
        the leader to accept writes, then give it the rewind role Patroni creates only when it
        bootstraps a new cluster (pg_rewind of a former primary needs it)."""
        started = time.monotonic()
        if self._dcs_config(cluster_id).get("standby_cluster") is not None:
            self._apply_config(cluster_id, {"standby_cluster": None}, "promotion of the standby cluster")
        deadline = time.monotonic() + PROMOTION_TIMEOUT
        while True:
            leader = next((m for m in self.members(cluster_id) if m.role == "primary" and m.running), None)
            if leader is not None and self._writable(cluster_id, leader.node_id):
                break
            if time.monotonic() >= deadline:
                raise EngineError(f"the leader of {cluster_id} did not accept writes in time after promotion")
            time.sleep(0.25)
        with self._connect(cluster_id, leader.node_id) as conn:
            try:
                _ensure_rewind_role(conn, self._secrets(cluster_id).rewind)
            except psycopg.Error as exc:
                raise EngineError(f"rewind role on {cluster_id} failed: {first_line(exc)}") from exc
        return f"promoted: {leader.node_id} accepts writes after {time.monotonic() - started:.1f}s"

    def _streaming_stats(self, cluster_id: str, primary_node: str) -> dict[str, tuple[str, int, float]]:
        """pg_stat_replication as the primary sees it: application_name -> (state, replay lag
        in bytes, replay lag in seconds); empty when the primary cannot be reached.

        The leader of a standby cluster is in recovery (pg_current_wal_lsn() raises there): its
        replicas' lag is measured from what it has itself, the most of what it received and
        replayed, which is what its walsenders send on."""
        with (
            contextlib.suppress(EngineError, psycopg.Error),
            self._connect(cluster_id, primary_node) as conn,
        ):
            rows = conn.execute(
                "SELECT application_name, state,"
                " coalesce(pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()"
                " THEN GREATEST(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())"
                " ELSE pg_catalog.pg_current_wal_lsn() END, replay_lsn), 0)::pg_catalog.int8,"
                " coalesce(extract(epoch FROM replay_lag), 0)::pg_catalog.float8"
                " FROM pg_catalog.pg_stat_replication"
            ).fetchall()
            return {str(r[0]): (str(r[1]), int(r[2]), float(r[3])) for r in rows}
        return {}

    def replication_status(self, cluster_id: str) -> ReplicationStatus:
        """Replicas from Patroni, with lag and state from pg_stat_replication on the primary."""
        members = self.members(cluster_id)
        primary = next((m for m in members if m.role == "primary" and m.running), None)
        stats = self._streaming_stats(cluster_id, primary.node_id) if primary is not None else {}
        replicas = []
        for m in members:
            if primary is not None and m.node_id == primary.node_id:
                continue
            state, lag_bytes, lag_seconds = stats.get(m.node_id, (m.state, m.lag_bytes or 0, 0.0))
            # Healthy as wait_until_healthy means it, and streaming within the bound as the
            # primary itself sees it.
            healthy = (
                m.node_id in stats
                and state == "streaming"
                and lag_bytes <= HEALTHY_LAG_BYTES
                and m.replica_problem(primary) is None
            )
            replicas.append(ReplicaStatus(m.node_id, lag_bytes, lag_seconds, state, healthy))
        return ReplicationStatus(primary=primary.node_id if primary else None, replicas=replicas)

    def ensure_database(self, cluster_id: str, database: str, username: str, password: str) -> str:
        """Create or update the LOGIN role and its database on the current primary (over its
        socket); replicas get them through replication."""
        for kind, name in (("database", database), ("username", username)):
            if not name or "\0" in name or len(name.encode()) > 63:
                raise EngineError(f"invalid {kind} {name!r}: 1 to 63 bytes, no NUL")
        if not password:
            raise EngineError("password must not be empty")
        primary = next((m for m in self.members(cluster_id) if m.role == "primary" and m.running), None)
        if primary is None:
            raise EngineError(f"cluster {cluster_id} has no running primary")
        with self._connect(cluster_id, primary.node_id) as conn:
            try:
                # Shared with the single-server engine: SCRAM verifier computed client-side,
                # statement logging off, identifiers quoted with psycopg.sql.
                return pg.ensure_role_and_database(conn, database, username, password)
            except psycopg.Error as exc:
                raise EngineError(f"ensure_database on {cluster_id} failed: {first_line(exc)}") from exc

    def node_stats(self, cluster_id: str, node_id: str, database: str) -> ServerStats:
        with self._connect(cluster_id, node_id) as conn:
            try:
                return pg.collect_stats(conn, database)
            except psycopg.Error as exc:
                raise EngineError(f"stats of {node_id} failed: {first_line(exc)}") from exc

    def node_logs(
        self, cluster_id: str, node_id: str, limit: int, since: datetime | None = None
    ) -> list[LogLine]:
        # The node's jsonlog, read as a single server's is.
        return read_logs(self.paths(cluster_id, node_id).log, limit, since)

    def set_blocked_sources(self, cluster_id: str, addresses: list[str]) -> str:
        """Kept in the cluster's directory (every later patroni.yml has them); each node's
        patroni.yml gets the reject lines and its running Patroni is told to reload (it then
        rewrites pg_hba.conf and reloads PostgreSQL), waited for up to HBA_RELOAD_TIMEOUT."""
        nodes = self._nodes(cluster_id)
        if not nodes:
            raise EngineError(f"cluster {cluster_id} has no provisioned node")
        with self._lock(cluster_id):
            write_blocked(self.cluster_dir(cluster_id), addresses)
            blocked = read_blocked(self.cluster_dir(cluster_id))
            reloading = []
            for paths in nodes.values():
                text = cfg.with_blocked(paths.config.read_text(), blocked)
                if text is not None:
                    process.write_owned_file(paths.config, text)
                    if proc.reload_patroni(paths):
                        reloading.append(paths)
        wanted = set(cfg.hba_rejects(blocked))
        deadline = time.monotonic() + HBA_RELOAD_TIMEOUT
        for node_id, paths in nodes.items():
            if paths in reloading:
                self._wait_hba_loaded(cluster_id, node_id, paths, wanted, deadline)
        listed = ", ".join(blocked) or "none"
        return f"client addresses refused on every node of {cluster_id}: {listed}"

    def ensure_tls(self, spec: ClusterSpec) -> str | None:
        """The nodes whose patroni.yml lacks TLS are provisioned again (the file rendered with
        the certificate and hostssl lines) and Patroni reloads them; returns once each runs
        with ssl on and has loaded its new pg_hba.conf (HBA_RELOAD_TIMEOUT)."""
        if not pg.tls_available(spec.version):
            return None
        nodes = self._nodes(spec.cluster_id)
        lacking = [
            n
            for n in spec.nodes
            if n.node_id in nodes and not cfg.has_tls(nodes[n.node_id].config.read_text())
        ]
        if not lacking:
            return None
        for node in lacking:
            self.provision_node(spec, node)
        deadline = time.monotonic() + HBA_RELOAD_TIMEOUT
        for node in lacking:
            self._wait_tls_loaded(spec.cluster_id, node.node_id, nodes[node.node_id], deadline)
        names = ", ".join(n.node_id for n in lacking)
        return f"TLS turned on (ssl = on, hostssl only) on node(s) {names}; Patroni reloaded them"

    def _wait_tls_loaded(self, cluster_id: str, node_id: str, paths: cfg.NodePaths, deadline: float) -> None:
        hba = paths.data / "pg_hba.conf"
        while time.monotonic() < deadline:
            try:
                text, written = hba.read_text(), hba.stat().st_mtime
            except OSError:
                text, written = "", 0.0
            if "hostssl" in text:
                try:
                    with self._connect(cluster_id, node_id) as conn:
                        row = conn.execute(
                            "SELECT pg_catalog.current_setting('ssl'), pg_catalog.pg_conf_load_time()"
                        ).fetchone()
                    if row is not None and row[0] == "on" and row[1].timestamp() >= written:
                        return
                except EngineError:
                    pass  # restarting: try again until the deadline
            time.sleep(0.1)
        raise EngineError(f"node {node_id} of {cluster_id} did not load TLS within {HBA_RELOAD_TIMEOUT} s")

    def _wait_hba_loaded(
        self, cluster_id: str, node_id: str, paths: cfg.NodePaths, wanted: set[str], deadline: float
    ) -> None:
        """Until Patroni has written the node's pg_hba.conf with exactly `wanted` reject lines
        and PostgreSQL has loaded it (its configuration load time is past the file's), or the
        deadline."""
        hba = paths.data / "pg_hba.conf"
        while time.monotonic() < deadline:
            try:
                lines = {" ".join(ln.split()) for ln in hba.read_text().splitlines()}
                written = hba.stat().st_mtime
            except OSError:
                lines, written = set(), 0.0
            if {ln for ln in lines if ln.endswith(" reject")} == wanted:
                try:
                    with self._connect(cluster_id, node_id) as conn:
                        row = conn.execute("SELECT pg_catalog.pg_conf_load_time()").fetchone()
                    if row is not None and row[0].timestamp() >= written:
                        return
                except EngineError:
                    pass  # restarting: try again until the deadline
            time.sleep(0.1)

    # -- port: resources and administration --

    def reconfigure(self, spec: ClusterSpec) -> str:
        """Rewrite and reload every node's patroni.yml, then PATCH /config with the DCS-only
        parameters (never lowering those a standby must not have below its primary) until
        GET /config shows them."""
        reloaded = [f"{n.node_id}: {self.provision_node(spec, n)}" for n in spec.nodes]
        nodes = self._nodes(spec.cluster_id)
        if not nodes:
            raise EngineError(f"cluster {spec.cluster_id} has no provisioned node")
        wanted = cfg.dcs_parameters(spec, next(iter(nodes.values())))
        auth = self._auth(spec.cluster_id)
        deadline = time.monotonic() + CONFIG_TIMEOUT
        while True:
            current = self._dcs_parameters(spec.cluster_id)
            patch = _never_lowered(wanted, current)
            if all(str(current.get(k)) == str(v) for k, v in patch.items()):
                kept = sorted(k for k in wanted if str(patch[k]) != str(wanted[k]))
                note = f"; kept {', '.join(kept)} (a standby may not go below its primary)" if kept else ""
                return "; ".join(reloaded) + f"; DCS parameters applied{note}"
            for paths in nodes.values():
                try:
                    resp = rest.call(
                        self._rest_url(paths),
                        "PATCH",
                        "/config",
                        {"postgresql": {"parameters": patch}},
                        auth=auth,
                    )
                except OSError:
                    continue
                if resp.status != 409:
                    rest.require_ok(resp, "the parameter change")
                break
            else:
                raise EngineError(f"no Patroni of cluster {spec.cluster_id} answers")
            if time.monotonic() >= deadline:
                raise EngineError(f"DCS parameters of {spec.cluster_id} were not applied in time")
            time.sleep(0.2)

    def _dcs_parameters(self, cluster_id: str) -> dict[str, Any]:
        return dict((self._dcs_config(cluster_id).get("postgresql") or {}).get("parameters") or {})

    def _dcs_config(self, cluster_id: str) -> dict[str, Any]:
        """GET /config (the dynamic configuration in the DCS) from the first Patroni that answers."""
        for paths in self._nodes(cluster_id).values():
            try:
                config = rest.call(self._rest_url(paths), "GET", "/config").body
            except OSError:
                continue
            if isinstance(config, dict):
                return config
        raise EngineError(f"no Patroni of cluster {cluster_id} answers")

    def restart_node(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        """Wait until the node is ready (a node that just lost its leadership is still being
        demoted), POST /restart to its Patroni (again while Patroni answers 503: another action
        is in progress), then wait until it streams (a replica) or accepts writes (the primary)."""
        paths = self.paths(spec.cluster_id, node_id)
        started = time.monotonic()
        deadline = started + timeout
        self._wait_ready(spec.cluster_id, node_id, deadline, "before its restart")
        while True:
            try:
                resp = rest.call(
                    self._rest_url(paths), "POST", "/restart", {}, auth=self._auth(spec.cluster_id),
                    timeout=rest.ACTION_TIMEOUT,
                )  # fmt: skip
            except OSError as exc:
                raise EngineError(f"restart of {node_id}: Patroni did not answer: {exc}") from exc
            if resp.status != 503 or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        rest.require_ok(resp, f"the restart of {node_id}")
        role = self._wait_ready(spec.cluster_id, node_id, deadline, "after its restart")
        return f"restarted {node_id} ({role}) in {time.monotonic() - started:.1f}s"

    def _wait_ready(self, cluster_id: str, node_id: str, deadline: float, when: str) -> str:
        """Wait until the node runs as a streaming replica or a writable primary; its role."""
        while True:
            m = next((m for m in self.members(cluster_id) if m.node_id == node_id), None)
            if m is not None and m.running:
                if m.role == "primary" and self._writable(cluster_id, node_id):
                    return "primary"
                if m.role == "replica" and m.state == "streaming":
                    return "replica"
            if time.monotonic() >= deadline:
                seen = f"{m.role}/{m.state}" if m else "absent"
                raise EngineError(f"{node_id} was not ready {when} in time ({seen})")
            time.sleep(0.25)

    def apply_resources(self, spec: ClusterSpec) -> str:
        """Place each running node's Patroni and PostgreSQL in the node's cgroup v1 groups."""
        return "; ".join(f"{n.node_id}: {self._place(spec, n.node_id)}" for n in spec.nodes)

    def release_resources(self, cluster_id: str) -> str:
        return (
            "; ".join(self._limits.release(_group(cluster_id, n)) for n in self._nodes(cluster_id))
            or "no node"
        )

    def database_admin(self, cluster_id: str) -> DatabaseAdmin:
        """The admin of the current primary; running replicas count towards connections."""
        members = [m for m in self.members(cluster_id) if m.running]
        primary = next((m for m in members if m.role == "primary"), None)
        if primary is None:
            raise EngineError(f"cluster {cluster_id} has no running primary")
        others = tuple(self.admin_socket(cluster_id, m.node_id) for m in members if m is not primary)
        return LocalDatabaseAdmin(
            self._admin_server(cluster_id, primary.node_id),
            self._home / "logical-backups" / cluster_id,
            others=others,
            keep_connect=(cfg.REWIND_USER,),
        )

    def _admin_server(self, cluster_id: str, node_id: str) -> AdminServer:
        bin_dir = pg.bin_dir_for(pg.data_dir_version(self.paths(cluster_id, node_id).data))
        return AdminServer(self.admin_socket(cluster_id, node_id), bin_dir)

    def _place(self, spec: ClusterSpec, node_id: str) -> str:
        """Patroni first (what it starts later inherits its group), then everything already
        working in the node's directory (PostgreSQL and its children)."""
        paths = self.paths(spec.cluster_id, node_id)
        patroni = proc.patroni_pid(paths)
        if patroni is None:
            return "not running"
        pids = [patroni, *(p for p in proc.processes_under(paths.root) if p != patroni)]
        outcome = self._limits.place(_group(spec.cluster_id, node_id), spec.memory_mb, spec.cpu, pids)
        return outcome.reason

    # -- internals --

    @contextlib.contextmanager
    def _connect(self, cluster_id: str, node_id: str) -> Iterator[psycopg.Connection]:
        """A privileged session (search_path pg_catalog, pg_temp; lock and statement
        timeouts) over the node's private socket."""
        paths = self.paths(cluster_id, node_id)
        if not paths.config.exists():
            raise EngineError(f"node {node_id} of {cluster_id} does not exist")
        try:
            conn = connect(self.admin_socket(cluster_id, node_id), connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to node {node_id}: {first_line(exc)}") from exc
        with conn:
            yield conn

    def _writable(self, cluster_id: str, node_id: str) -> bool:
        try:
            with self._connect(cluster_id, node_id) as conn:
                row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
                return row is not None and not row[0]
        except (EngineError, psycopg.Error):
            return False

    def _wait_promoted(self, cluster_id: str, candidate: str) -> None:
        deadline = time.monotonic() + PROMOTION_TIMEOUT
        while True:
            members = {m.node_id: m for m in self.members(cluster_id)}
            m = members.get(candidate)
            if m is not None and m.role == "primary" and m.running and self._writable(cluster_id, candidate):
                return
            if time.monotonic() >= deadline:
                seen = f"{m.role}/{m.state}" if m else "absent"
                raise EngineError(f"{candidate} did not become a writable primary in time ({seen})")
            time.sleep(0.25)

    # -- port: forwarded endpoints (added for migrations; see haproxy.py) --

    def _endpoints(self) -> HAProxyEndpoints:
        return HAProxyEndpoints(self._home, self._host)

    def forward_endpoint(self, spec: ClusterSpec, port: int) -> str:
        primary = next(
            (m.node_id for m in self.members(spec.cluster_id) if m.role == "primary" and m.running), None
        )
        nodes = sorted(spec.nodes, key=lambda n: n.node_id != primary)  # the leader first
        backends = [Backend(n.node_id, self._host, n.port, n.rest_port) for n in nodes]
        return self._endpoints().forward(spec.cluster_id, port, backends)

    def stop_forwarding(self, cluster_id: str, port: int) -> str:
        endpoints = self._endpoints()
        owner = endpoints.owner(port)
        if owner is not None and owner != cluster_id:
            return f"{self._host}:{port} forwards to cluster {owner}, not {cluster_id}: left alone"
        return endpoints.stop(port)

    def forwarded_to(self, cluster_id: str, port: int) -> str | None:
        endpoints = self._endpoints()
        if endpoints.owner(port) != cluster_id or endpoints.pid(port) is None:
            return None
        up = endpoints.up_nodes(port)
        return up[0] if len(up) == 1 else None

    # -- port: major-version upgrade in place (see patroni_upgrade.py) --

    def _upgrade(self) -> ClusterUpgrade:
        return ClusterUpgrade(self)

    def upgrade_check(self, cluster_id: str, target_version: str, link: bool) -> list[str]:
        return self._upgrade().check(cluster_id, target_version, link)

    def upgrade_space(self, cluster_id: str) -> tuple[int, int]:
        return self._upgrade().space(cluster_id)

    def prepare_upgrade(self, cluster_id: str, node_id: str, target_version: str) -> str:
        return self._upgrade().prepare(cluster_id, node_id, target_version)

    def upgrade_primary(self, spec: ClusterSpec, node_id: str, link: bool) -> str:
        return self._upgrade().upgrade_primary(spec, node_id, link)

    def start_leader(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        return self._upgrade().start_primary(spec, node_id, timeout)

    def roll_back_upgrade(self, spec: ClusterSpec, node_id: str, target_version: str) -> str:
        return self._upgrade().roll_back(spec, node_id, target_version)

    def finish_upgrade(self, cluster_id: str, target_version: str) -> str:
        return self._upgrade().finish(cluster_id, target_version)

    def after_upgrade(self, cluster_id: str) -> str:
        return self._upgrade().after(cluster_id)

    def node_version(self, cluster_id: str, node_id: str) -> str:
        return self._upgrade().version(cluster_id, node_id)


def _ensure_rewind_role(conn: psycopg.Connection, password: str) -> None:
    """The role pg_rewind connects as, with the grants Patroni gives it (PostgreSQL 11+)."""
    for statement in ("SET log_statement = 'none'", "SET log_min_error_statement = 'panic'"):
        conn.execute(statement)
    user = cfg.REWIND_USER
    verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    ident = sql.Identifier(user)
    conn.execute(
        sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(ident, sql.Literal(verifier.decode()))
    )
    for function in (
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    ):
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + function + " TO {}").format(ident))


def _synchronous(mode: Any) -> bool:
    """Whether a synchronous_mode value of Patroni's configuration turns synchronous
    replication on (quorum, or a boolean as Patroni parses one)."""
    return str(mode).strip().lower() in (cfg.QUORUM, "true", "on", "yes", "1")


def _group(cluster_id: str, node_id: str) -> str:
    """The cgroup name of one node."""
    return f"{cluster_id}.{node_id}"


def _never_lowered(wanted: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`wanted`, except that settings a hot standby must have at least as high as its
    primary keep their current value when that is higher."""
    result = dict(wanted)
    for name in pg.HOT_STANDBY_MINIMUMS:
        if name in wanted and name in current:
            try:
                result[name] = str(max(int(wanted[name]), int(current[name])))
            except (TypeError, ValueError):
                result[name] = current[name]
    return result
