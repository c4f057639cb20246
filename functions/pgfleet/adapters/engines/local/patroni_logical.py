"""Logical replication between two local Patroni clusters, for blue/green major-version
upgrades of a cluster: blue's primary publishes, the leader of a new cluster at the target
version (green) subscribes, and at the cutover green's node directories take blue's place
under blue's cluster id and node ports.

The replication itself is the single-server one (`postgres.logical.LogicalReplication`:
roles with their verifiers, the filtered schema-only dump, one publication, slot and
subscription per database, sequences copied at the end), run on cluster nodes: a "server"
there is one node, `<cluster_id>/<node_id>`. The subscription connects to blue's primary over
that node's private socket as the admin role, as Patroni itself does; no password is stored.

Credentials: green is made with a copy of blue's `secrets.json` (superuser, replication,
rewind and REST API passwords), and blue's roles are copied with their verifiers, so after the
swap every credential the cluster, its clients and its Patroni use is the one it had.

The swap (`swap_clusters`, every node of both clusters stopped): `clusters/<id>` becomes the
kept `clusters/<id>-blue<from>`, `clusters/<id>-green` becomes `clusters/<id>`, every node's
patroni.yml is rewritten for the cluster's id and ports, and the DCS keys of the id are reset
but its dynamic configuration (green's system identifier registers when its leader starts).
`unswap_clusters` undoes it. The kept blue's patroni.yml still names `clusters/<id>/...`:
it is never started where it lies, only after `unswap_clusters` moved it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg

from pgfleet.adapters.engines.local import patroni_config as cfg
from pgfleet.adapters.engines.local import patroni_process as proc
from pgfleet.adapters.engines.local import patroni_rest as rest
from pgfleet.adapters.engines.local import postgres as pg
from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.postgres.logical import COPIED_MARKER, LogicalReplication, slot_of
from pgfleet.adapters.engines.local.postgres.replication import apply_read_only, wal_position
from pgfleet.adapters.engines.local.sql import AdminSocket, SessionLimits, connect, first_line
from pgfleet.core.errors import EngineError
from pgfleet.local import etcd
from pgfleet.ports.cluster_engine import ClusterSpec
from pgfleet.ports.engine import LogicalReadiness, SubscriptionProgress

if TYPE_CHECKING:
    from pgfleet.adapters.engines.local.cgroups import CgroupLimits
    from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine

# The DCS keys of a cluster id kept when another cluster's data takes it over.
KEPT_DCS_KEYS = ("config",)
LEADER_TIMEOUT = 120.0
HEALTHY_TIMEOUT = 180.0
CONNECT_TIMEOUT = 5
CONFIG_TIMEOUT = 30.0
ABSENT = "absent-node"  # a node id no cluster has


class _Nodes(LogicalReplication):
    """LogicalReplication on cluster nodes: a server id is `<cluster_id>/<node_id>`."""

    def __init__(self, engine: LocalPatroniEngine) -> None:
        self._engine = engine
        self._limits: CgroupLimits = engine._limits

    @staticmethod
    def _split(ref: str) -> tuple[str, str]:
        cluster_id, _, node_id = ref.partition("/")
        return cluster_id, node_id

    def paths(self, server_id: str) -> pg.ServerPaths:
        return pg.ServerPaths(self._engine.paths(*self._split(server_id)).root)

    def admin_socket(self, server_id: str) -> AdminSocket:
        return self._engine.admin_socket(*self._split(server_id))

    @contextlib.contextmanager
    def _session(
        self, server_id: str, dbname: str, limits: SessionLimits | None
    ) -> Iterator[psycopg.Connection]:
        try:
            conn = connect(
                self.admin_socket(server_id), dbname, limits=limits, connect_timeout=CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to node {server_id}: {first_line(exc)}") from exc
        with conn:
            yield conn

    @contextlib.contextmanager
    def administer(self, server_id: str, action: str) -> Iterator[psycopg.Connection]:
        with self._session(server_id, "postgres", limits=SessionLimits()) as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise EngineError(f"{action} on {server_id} failed: {first_line(exc)}") from exc

    def _databases(self, server_id: str) -> list[str]:
        with self.administer(server_id, "listing databases") as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def upgrade_space(self, server_id: str) -> tuple[int, int]:
        paths = self.paths(server_id)
        data = sum(f.stat().st_size for f in paths.data.rglob("*") if f.is_file() and not f.is_symlink())
        return data, shutil.disk_usage(paths.root).free


class PatroniLogicalReplication:
    """The ClusterEngine port's blue/green methods of LocalPatroniEngine (a mixin: it uses
    the engine's paths, members, lock, DCS endpoint and node lifecycle)."""

    if TYPE_CHECKING:
        _etcd: str
        _limits: CgroupLimits

        def cluster_dir(self, cluster_id: str) -> os.PathLike[str]: ...

    def _engine(self) -> LocalPatroniEngine:
        return self  # type: ignore[return-value]

    def _nodes_of(self) -> _Nodes:
        return _Nodes(self._engine())

    def _primary_ref(self, cluster_id: str) -> str:
        engine = self._engine()
        primary = next(
            (m.node_id for m in engine.members(cluster_id) if m.role == "primary" and m.running), None
        )
        if primary is None:
            raise EngineError(f"cluster {cluster_id} has no running primary")
        return f"{cluster_id}/{primary}"

    # -- pre-flight and preparation of blue --

    def logical_readiness(self, cluster_id: str, target_version: str) -> LogicalReadiness:
        """What a blue/green upgrade needs, as the cluster's primary shows it now."""
        return self._nodes_of().logical_readiness(self._primary_ref(cluster_id), target_version)

    def enable_logical_decoding(self, spec: ClusterSpec) -> str:
        """wal_level=logical in the cluster's dynamic configuration (Patroni passes wal_level
        on PostgreSQL's command line, so ALTER SYSTEM would not do), then a restart of the
        primary through Patroni, which keeps it the primary. The replicas take it at their
        next restart (a standby does not decode). Idempotent."""
        ref = self._primary_ref(spec.cluster_id)
        node = ref.partition("/")[2]
        nodes = self._nodes_of()
        with nodes.administer(ref, "reading wal_level") as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('wal_level')").fetchone()
        if row and row[0] == "logical":
            return "wal_level is logical already"
        engine = self._engine()
        self._set_dcs_parameter(spec.cluster_id, "wal_level", "logical")
        reason = engine.restart_node(spec, node)
        with nodes.administer(self._primary_ref(spec.cluster_id), "reading wal_level") as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('wal_level')").fetchone()
        if not row or row[0] != "logical":
            raise EngineError(f"wal_level is {row[0] if row else None} on the primary after its restart")
        return f"wal_level=logical in the dynamic configuration; {reason}"

    def _set_dcs_parameter(self, cluster_id: str, name: str, value: str) -> None:
        """PATCH one PostgreSQL parameter into the dynamic configuration, until GET /config
        shows it (Patroni's cached copy may lag an earlier change)."""
        engine = self._engine()
        auth = engine._auth(cluster_id)
        patch = {"postgresql": {"parameters": {name: value}}}
        deadline = time.monotonic() + CONFIG_TIMEOUT
        while True:
            for paths in engine._nodes(cluster_id).values():
                url = engine._rest_url(paths)
                with contextlib.suppress(OSError):
                    resp = rest.call(url, "PATCH", "/config", patch, auth=auth)
                    if resp.status != 409:
                        rest.require_ok(resp, f"the configuration change ({name})")
                    config = rest.call(url, "GET", "/config").body
                    parameters = ((config or {}).get("postgresql") or {}).get("parameters") or {}
                    if str(parameters.get(name)) == value:
                        return
            if time.monotonic() >= deadline:
                raise EngineError(
                    f"{name}={value} did not reach the dynamic configuration of {cluster_id} in time"
                )
            time.sleep(0.2)

    # -- green --

    def provision_logical_copy(self, spec: ClusterSpec, source_cluster_id: str) -> str:
        engine = self._engine()
        root = engine.cluster_dir(spec.cluster_id)
        first = spec.nodes[0]
        # Blue's settings as they are: after the swap the DCS keeps blue's dynamic configuration,
        # and a replica cannot start with a lower max_worker_processes (or the like) than the
        # WAL it replays was written with.
        own = spec
        source = self._primary_ref(source_cluster_id)
        notes: list[str] = []
        started = time.monotonic()
        if not (root / COPIED_MARKER).exists():
            engine.destroy(spec.cluster_id)
            root.mkdir(mode=0o711)
            secrets = engine.cluster_dir(source_cluster_id) / "secrets.json"
            fd = os.open(root / "secrets.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.read_bytes())
            for node in own.nodes:
                engine.provision_node(own, node)
            notes.append(engine.start_leader(own, first.node_id, timeout=LEADER_TIMEOUT))
            nodes = self._nodes_of()
            green = f"{spec.cluster_id}/{first.node_id}"
            roles = nodes._copy_roles(green, source)
            databases = nodes._copy_schema(green, source, spec.version)
            role_settings = nodes._copy_role_settings(green, source)
            process.write_owned_file(root / COPIED_MARKER, "")
            notes.append(
                f"{roles} role(s), {role_settings} role setting(s) and the schema of {len(databases)} "
                f"database(s) copied from {source}"
            )
        else:
            notes.append("already copied")
        for node in own.nodes:
            engine.provision_node(own, node)
            engine.start_node(own, node)
        notes.append(engine.wait_until_healthy(own, timeout=HEALTHY_TIMEOUT))
        return (
            f"PostgreSQL {spec.version} cluster {spec.cluster_id}: "
            + "; ".join(notes)
            + (f" ({time.monotonic() - started:.1f}s)")
        )

    # -- replication --

    def subscribe(self, cluster_id: str, source_cluster_id: str) -> str:
        return self._nodes_of().subscribe(self._primary_ref(cluster_id), self._primary_ref(source_cluster_id))

    def subscription_progress(self, cluster_id: str, source_cluster_id: str) -> SubscriptionProgress:
        nodes = self._nodes_of()
        green, blue = self._primary_ref(cluster_id), self._primary_ref(source_cluster_id)
        progress = nodes.subscription_progress(green, blue)
        # A failover of blue leaves the logical slots on the old primary (PostgreSQL 15 does not
        # carry them over): the replication cannot go on, so say so instead of waiting.
        slots = [slot_of(d) for d in nodes._user_databases(blue)]
        with nodes.administer(blue, "reading the logical slots") as conn:
            found = {
                str(r[0])
                for r in conn.execute(
                    "SELECT slot_name FROM pg_catalog.pg_replication_slots"
                    " WHERE slot_name OPERATOR(pg_catalog.=) ANY (%s)",
                    (slots,),
                ).fetchall()
            }
        if missing := [s for s in slots if s not in found]:
            progress.errors.append(
                f"{len(missing)} logical slot(s) missing on the primary {blue} (did the cluster fail over?)"
            )
        return progress

    def checkpoint(self, cluster_id: str) -> str:
        return self._nodes_of().checkpoint(self._primary_ref(cluster_id))

    def set_read_only(self, cluster_id: str, read_only: bool) -> int:
        ref = self._primary_ref(cluster_id)
        with self._nodes_of().administer(ref, "read-only" if read_only else "read-write") as conn:
            return apply_read_only(conn, read_only)

    def wal_position(self, cluster_id: str) -> int:
        with self._nodes_of().administer(self._primary_ref(cluster_id), "wal_position") as conn:
            return wal_position(conn)

    def schema_differences(self, cluster_id: str, source_cluster_id: str) -> list[str]:
        return self._nodes_of().schema_differences(
            self._primary_ref(cluster_id), self._primary_ref(source_cluster_id)
        )

    def copy_sequences(self, cluster_id: str, source_cluster_id: str) -> str:
        return self._nodes_of().copy_sequences(
            self._primary_ref(cluster_id), self._primary_ref(source_cluster_id)
        )

    def unsubscribe(self, cluster_id: str, source_cluster_id: str) -> str:
        notes: list[str] = []
        nodes = self._nodes_of()
        green = blue = None
        with contextlib.suppress(EngineError):
            green = self._primary_ref(cluster_id)
        with contextlib.suppress(EngineError):
            blue = self._primary_ref(source_cluster_id)
        if green is not None or blue is not None:
            # A side without a running primary is named by a node that does not exist: the
            # single-server code then skips it (a stopped source keeps no slot that could grow).
            notes.append(
                nodes.unsubscribe(green or f"{cluster_id}/{ABSENT}", blue or f"{source_cluster_id}/{ABSENT}")
            )
        return "; ".join(notes) or "nothing to drop (neither cluster has a running primary)"

    # -- the swap --

    def _require_stopped(self, cluster_id: str) -> None:
        engine = self._engine()
        running = [
            n
            for n in engine.node_ids(cluster_id)
            if proc.patroni_pid(node := engine.paths(cluster_id, n)) is not None
            or pg.postmaster.running_pid(pg.ServerPaths(node.root)) is not None
        ]
        if running:
            raise EngineError(f"node(s) {', '.join(running)} of {cluster_id} still run")

    def _reset_dcs(self, cluster_id: str) -> int:
        prefix = f"{cfg.NAMESPACE}{cluster_id}/"
        removed = 0
        for key in etcd.list_keys(self._etcd, prefix):
            if key.removeprefix(prefix).split("/", 1)[0] not in KEPT_DCS_KEYS:
                removed += etcd.delete_key(self._etcd, key)
        return removed

    def _move(self, from_id: str, to_id: str) -> None:
        engine = self._engine()
        old, new = engine.cluster_dir(from_id), engine.cluster_dir(to_id)
        if new.exists():
            raise EngineError(f"cannot move cluster {from_id} to {to_id}: {to_id} exists")
        os.rename(old, new)

    def swap_clusters(self, spec: ClusterSpec, green_cluster_id: str, kept_cluster_id: str) -> str:
        engine = self._engine()
        cluster_id = spec.cluster_id
        for cid in (cluster_id, green_cluster_id):
            self._require_stopped(cid)
        notes = []
        with engine._lock(cluster_id), engine._lock(green_cluster_id), engine._lock(kept_cluster_id):
            if not engine.cluster_dir(kept_cluster_id).exists():
                self._move(cluster_id, kept_cluster_id)
                notes.append(f"{cluster_id} kept as {kept_cluster_id}")
            if engine.cluster_dir(green_cluster_id).exists():
                self._move(green_cluster_id, cluster_id)
                notes.append(f"{green_cluster_id} is {cluster_id}")
            removed = self._reset_dcs(cluster_id)
            etcd.delete_prefix(self._etcd, f"{cfg.NAMESPACE}{green_cluster_id}/")
        for node in spec.nodes:
            engine.provision_node(spec, node)
        return (
            "; ".join(notes) + f"; {removed} DCS key(s) of {cluster_id} reset; nodes configured on its ports"
        )

    def unswap_clusters(self, spec: ClusterSpec, green_cluster_id: str, kept_cluster_id: str) -> str:
        engine = self._engine()
        cluster_id = spec.cluster_id
        if not engine.cluster_dir(kept_cluster_id).exists():
            return "not swapped"
        for cid in (cluster_id, kept_cluster_id):
            self._require_stopped(cid)
        notes = []
        with engine._lock(cluster_id), engine._lock(green_cluster_id), engine._lock(kept_cluster_id):
            if engine.cluster_dir(cluster_id).exists():
                self._move(cluster_id, green_cluster_id)
                notes.append(f"{cluster_id} is {green_cluster_id} again")
            self._move(kept_cluster_id, cluster_id)
            notes.append(f"{kept_cluster_id} is {cluster_id} again")
            removed = self._reset_dcs(cluster_id)
        for node in spec.nodes:
            engine.provision_node(spec, node)
        return "; ".join(notes) + f"; {removed} DCS key(s) reset"

    def cluster_major_version(self, cluster_id: str) -> str | None:
        engine = self._engine()
        for node_id in engine.node_ids(cluster_id):
            data = engine.paths(cluster_id, node_id).data
            if pg.is_data_dir(data):
                return pg.data_dir_version(data)
        return None
