"""Major-version upgrade in place of a local Patroni cluster: pg_upgrade of the primary's data
directory, the replicas cloned again from it.

A node's directory has the layout of a single server's (`data`, `socket`, `log` under one
root), so the single-server machinery (`postgres/upgrade.py`) runs on it unchanged: during an
upgrade to version N the primary node holds

    data                 the live data directory (the old version until the swap)
    data.upgrade-N       the new cluster, filled by pg_upgrade
    data.before-N        the old data directory, kept after the swap as the way back

and every other node's old data directory is set aside as `data.before-N` by a rename (no
copy): Patroni finds an empty data directory there and clones the upgraded primary, while
the old one stays until `finish` for the way back.

pg_upgrade gives the cluster a new system identifier, which Patroni refuses to run against the
old `initialize` key ("system ID mismatch"). So the cluster's DCS state is reset, except its
dynamic configuration: with no initialize key, the first Patroni to take the leader key
registers the system identifier of the data directory it has (Patroni's "bootstrap with a
non-empty data directory"), and the others clone it. The same reset lets a rolled-back
cluster start again on its old identifier.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING

import psycopg

from pgfleet.adapters.engines.local import patroni_process as proc
from pgfleet.adapters.engines.local import postgres as pg
from pgfleet.adapters.engines.local.patroni_config import NAMESPACE, NodePaths
from pgfleet.adapters.engines.local.postgres import upgrade
from pgfleet.adapters.engines.local.sql import SessionLimits, connect, first_line
from pgfleet.core.errors import EngineError
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec

if TYPE_CHECKING:
    from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine

# The one DCS key of a cluster that survives the reset: its dynamic configuration (DCS-only
# parameters, replication mode, ttl), which does not depend on the system identifier.
KEPT_DCS_KEYS = ("config",)
ANALYZE_TIMEOUT_S = 3600
CHECKPOINT_LIMITS = SessionLimits(statement_timeout_ms=600_000)


def _server_paths(node: NodePaths) -> pg.ServerPaths:
    return pg.ServerPaths(node.root)


def _dirs(node: NodePaths, target: str) -> upgrade.UpgradeDirs:
    pg.bin_dir_for(target)  # EngineError for a version not installed
    return upgrade.UpgradeDirs(_server_paths(node), target)


class ClusterUpgrade:
    """The upgrade steps of `LocalPatroniEngine`, which delegates its port methods here (a
    part of the same adapter: it uses the engine's lock, sessions and DCS endpoint)."""

    def __init__(self, engine: LocalPatroniEngine) -> None:
        self._engine = engine

    # -- pre-flight --

    def _primary(self, cluster_id: str) -> str:
        primary = next(
            (m.node_id for m in self._engine.members(cluster_id) if m.role == "primary" and m.running), None
        )
        if primary is None:
            raise EngineError(f"cluster {cluster_id} has no running primary")
        return primary

    def _databases(self, cluster_id: str, node_id: str) -> list[str]:
        with self._engine._connect(cluster_id, node_id) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def check(self, cluster_id: str, target: str, link: bool) -> list[str]:
        """Extensions in use that `target` lacks, then pg_upgrade --check live against the
        primary (a scratch new cluster on a free port)."""
        primary = self._primary(cluster_id)
        node = self._engine.paths(cluster_id, primary)
        dirs = _dirs(node, target)
        available = upgrade.available_extensions(pg.bin_dir_for(target))
        findings: list[str] = []
        address = self._engine.admin_socket(cluster_id, primary)
        try:
            for dbname in self._databases(cluster_id, primary):
                with connect(address, dbname) as conn:
                    rows = conn.execute(
                        "SELECT extname FROM pg_catalog.pg_extension ORDER BY extname"
                    ).fetchall()
                missing = [str(r[0]) for r in rows if str(r[0]) not in available]
                if missing:
                    findings.append(
                        f"database {dbname}: extension(s) {', '.join(missing)} not available in "
                        f"PostgreSQL {target}"
                    )
        except psycopg.Error as exc:
            raise EngineError(f"reading the extensions of {primary} failed: {first_line(exc)}") from exc
        with self._engine._lock(cluster_id):
            findings += upgrade.check(dirs, address.port, link=link, running=True)
        return [f"{primary} (primary): {f}" for f in findings]

    def space(self, cluster_id: str) -> tuple[int, int]:
        node = self._engine.paths(cluster_id, self._primary(cluster_id))
        return upgrade.data_bytes(node.data), shutil.disk_usage(node.root).free

    # -- the upgrade --

    def prepare(self, cluster_id: str, node_id: str, target: str) -> str:
        """The new cluster made while the node runs, then a checkpoint there: its shutdown
        checkpoint, which the downtime waits for, has little left to write."""
        dirs = _dirs(self._engine.paths(cluster_id, node_id), target)
        with self._engine._lock(cluster_id):
            prepared = upgrade.prepare(dirs)
        started = time.monotonic()
        try:
            with connect(self._engine.admin_socket(cluster_id, node_id), limits=CHECKPOINT_LIMITS) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.Error as exc:
            raise EngineError(f"the checkpoint on {node_id} failed: {first_line(exc)}") from exc
        return f"{node_id}: {prepared}; checkpoint in {time.monotonic() - started:.1f}s"

    def _require_stopped(self, spec: ClusterSpec) -> None:
        running = [
            n.node_id
            for n in spec.nodes
            if proc.patroni_pid(node := self._engine.paths(spec.cluster_id, n.node_id)) is not None
            or pg.postmaster.running_pid(_server_paths(node)) is not None
        ]
        if running:
            raise EngineError(f"node(s) {', '.join(running)} still run: stop every node before pg_upgrade")

    def _reset_dcs(self, cluster_id: str) -> int:
        """Delete the cluster's DCS keys but its dynamic configuration. Returns how many."""
        prefix = f"{NAMESPACE}{cluster_id}/"
        removed = 0
        for key in etcd.list_keys(self._engine._etcd, prefix):
            if key.removeprefix(prefix).split("/", 1)[0] not in KEPT_DCS_KEYS:
                removed += etcd.delete_key(self._engine._etcd, key)
        return removed

    def upgrade_primary(self, spec: ClusterSpec, node_id: str, link: bool) -> str:
        self._require_stopped(spec)
        primary = self._engine.paths(spec.cluster_id, node_id)
        dirs = _dirs(primary, spec.version)
        port = self._engine.admin_socket(spec.cluster_id, node_id).port
        with self._engine._lock(spec.cluster_id):
            upgraded = upgrade.run(dirs, port, link=link)
            aside = []
            for n in spec.nodes:
                if n.node_id == node_id:
                    continue
                replica = _dirs(self._engine.paths(spec.cluster_id, n.node_id), spec.version)
                pg.remove_tree(replica.new)  # prepared while it was the primary, before a failover
                if pg.is_data_dir(replica.paths.data) and not replica.kept.exists():
                    os.rename(replica.paths.data, replica.kept)
                    aside.append(n.node_id)
                elif replica.paths.data.exists() and replica.kept.exists():
                    pg.remove_tree(replica.paths.data)  # a half-made clone of a failed earlier try
            removed = self._reset_dcs(spec.cluster_id)
        configured = {self._engine.provision_node(spec, n) for n in spec.nodes}
        kept = f"; old data of {', '.join(aside)} set aside, to be cloned again" if aside else ""
        return (
            f"{node_id}: {upgraded}{kept}; {removed} DCS key(s) reset (the new system identifier "
            f"registers when {node_id} starts); configuration for PostgreSQL {spec.version}: "
            + ", ".join(sorted(configured))
        )

    def start_primary(self, spec: ClusterSpec, node_id: str, timeout: float) -> str:
        started = time.monotonic()
        reason = self._engine.start_node(spec, spec.node(node_id))
        deadline = started + timeout
        while True:
            m = next((m for m in self._engine.members(spec.cluster_id) if m.node_id == node_id), None)
            if (
                m is not None
                and m.role == "primary"
                and m.running
                and self._engine._writable(spec.cluster_id, node_id)
            ):
                return f"{node_id} {reason}: the leader, accepting writes after {time.monotonic() - started:.1f}s"
            if proc.patroni_pid(self._engine.paths(spec.cluster_id, node_id)) is None:
                raise EngineError(
                    f"Patroni of {node_id} exited: {proc.tail(self._engine.paths(spec.cluster_id, node_id))}"
                )
            if time.monotonic() >= deadline:
                seen = f"{m.role}/{m.state}" if m else "absent"
                raise EngineError(f"{node_id} did not become a writable leader in {timeout:.0f}s ({seen})")
            time.sleep(0.25)

    # -- the way back, and the end --

    def roll_back(self, spec: ClusterSpec, node_id: str, target: str) -> str:
        for n in spec.nodes:
            self._engine.stop_node(spec.cluster_id, n.node_id)
        done = []
        with self._engine._lock(spec.cluster_id):
            put_back = upgrade.roll_back(_dirs(self._engine.paths(spec.cluster_id, node_id), target))
            done.append(f"{node_id}: {put_back}")
            for n in spec.nodes:
                if n.node_id == node_id:
                    continue
                replica = _dirs(self._engine.paths(spec.cluster_id, n.node_id), target)
                if replica.kept.exists():
                    pg.remove_tree(replica.paths.data)  # a clone of the new primary, if any
                    os.rename(replica.kept, replica.paths.data)
                    done.append(f"{n.node_id}: old data directory put back")
            removed = self._reset_dcs(spec.cluster_id)
        for n in spec.nodes:
            self._engine.provision_node(spec, n)
        return "; ".join(done) + f"; {removed} DCS key(s) reset; configuration for PostgreSQL {spec.version}"

    def finish(self, cluster_id: str, target: str) -> str:
        removed = []
        with self._engine._lock(cluster_id):
            for node_id in self._engine.node_ids(cluster_id):
                dirs = _dirs(self._engine.paths(cluster_id, node_id), target)
                if dirs.kept.exists():
                    upgrade.finish(dirs)
                    removed.append(node_id)
        return (
            f"removed the data directories kept before the upgrade to {target} ({', '.join(removed)})"
            if removed
            else "no old data directory left"
        )

    def after(self, cluster_id: str) -> str:
        """Extensions updated where the new version ships newer ones, then the statistics
        rebuilt, on the primary (the replicas get both through replication)."""
        primary = self._primary(cluster_id)
        address = self._engine.admin_socket(cluster_id, primary)
        node = self._engine.paths(cluster_id, primary)
        bin_dir = pg.bin_dir_for(pg.data_dir_version(node.data))
        reason = upgrade.update_extensions_and_analyze(address, self._databases(cluster_id, primary), bin_dir)
        return f"{reason} on {primary}"

    def version(self, cluster_id: str, node_id: str) -> str:
        try:
            with self._engine._connect(cluster_id, node_id) as conn:
                row = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()
        except psycopg.Error as exc:
            raise EngineError(f"reading the version of {node_id} failed: {first_line(exc)}") from exc
        return str(row[0]).split()[0] if row else ""
