"""The local engine: real PostgreSQL servers running as processes on this machine.

Layout under the engine's home:

    templates/<version>/        a pristine data directory, made once per major version
    servers/<server_id>/data    PGDATA (0700, owned by the data-plane user)
    servers/<server_id>/socket  the server's private unix socket directory (0700)
    servers/<server_id>/log     jsonlog files from the logging collector, and startup.log
    locks/                      flock files serialising work on one template or server

initdb takes seconds while copying a data directory takes a fraction of one, so a server is
provisioned by copying its version's template and writing `pgfleet.conf` (included from
postgresql.conf) and `pg_hba.conf`. The control plane administers a server over its unix
socket as the `postgres` superuser (trust, but the socket directory is private); clients
reach it over TCP on the engine host with SCRAM passwords only.

A read replica is a server whose data directory is a `pg_basebackup` of its running source,
taken over the source's private socket. It streams WAL from the source over that same socket
through a physical replication slot, so no replication password exists anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import psycopg.sql

from pgfleet.adapters.engines.local import host_capacity, process, tls, tool_versions
from pgfleet.adapters.engines.local.cgroups import CgroupLimits, LimitsOutcome
from pgfleet.adapters.engines.local.database_admin import AdminServer, LocalDatabaseAdmin
from pgfleet.adapters.engines.local.ports import port_is_free
from pgfleet.adapters.engines.local.postgres import logs, postmaster, upgrade
from pgfleet.adapters.engines.local.postgres.binaries import (
    audit_available,
    bin_dir_for,
    installed_binaries,
    missing_programs,
    tls_available,
)
from pgfleet.adapters.engines.local.postgres.commands import (
    PG_CTL_TIMEOUT_S,
    copy_argv,
    initdb_argv,
    pg_basebackup_argv,
    pg_ctl_argv,
)
from pgfleet.adapters.engines.local.postgres.config import (
    REMOTE_STANDBY_ROLE,
    StandbySource,
    configured_port,
    ensure_include,
    read_blocked,
    render_config,
    render_hba,
    with_signals,
    write_blocked,
)
from pgfleet.adapters.engines.local.postgres.logical import LogicalReplication
from pgfleet.adapters.engines.local.postgres.paths import (
    MAX_SOCKET_PATH,
    SERVER_ID_RE,
    ServerPaths,
    data_dir_version,
    is_data_dir,
    read_pidfile,
    remove_tree,
)
from pgfleet.adapters.engines.local.postgres.replication import (
    apply_read_only,
    drop_physical_slot,
    ensure_physical_slot,
    ensure_replication_role,
    hot_standby_minimums,
    replica_lag,
    wal_position,
)
from pgfleet.adapters.engines.local.postgres.roles import ensure_role_and_database
from pgfleet.adapters.engines.local.postgres.stats import collect_stats
from pgfleet.adapters.engines.local.sql import AdminSocket, SessionLimits, connect, first_line
from pgfleet.core.errors import EngineError
from pgfleet.ports.database_admin import DatabaseAdmin
from pgfleet.ports.engine import (
    Engine,
    HostCapacity,
    LogLine,
    ReplicaLag,
    ServerSpec,
    ServerState,
    ServerStats,
    replication_slot_name,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2
BASEBACKUP_TIMEOUT_S = 3600
# A start after a kill -9 is retried this often, this far apart (the kernel may still be
# releasing the old shared memory).
STALE_START_ATTEMPTS = 4
STALE_START_PAUSE_S = 0.5
MAX_IDENTIFIER_BYTES = 63


# --- the engine ------------------------------------------------------------------------------------


class LocalPostgresEngine(LogicalReplication, Engine):
    """PostgreSQL servers as local processes under `home`. See the module docstring."""

    def __init__(self, home: Path, host: str = "127.0.0.1", limits: CgroupLimits | None = None) -> None:
        ipaddress.ip_address(host)  # ValueError early: listen_addresses and pg_hba need an address
        self._host = host
        self._limits = limits or CgroupLimits()
        self._home = Path(home).resolve()
        self._home.mkdir(parents=True, exist_ok=True)
        # The data-plane user must reach templates/ and servers/ below home.
        self._home.chmod(self._home.stat().st_mode | 0o711)
        process.ensure_traversable(self._home)
        process.make_owned_dir(self._home / "templates")
        process.make_owned_dir(self._home / "servers")
        (self._home / "locks").mkdir(mode=0o700, exist_ok=True)

    # -- port: description --

    @property
    def host(self) -> str:
        return self._host

    @property
    def home(self) -> Path:
        """The directory holding templates, servers and locks."""
        return self._home

    def port_available(self, port: int) -> bool:
        return port_is_free(self._host, port)

    def host_capacity(self, cpu: bool = False) -> HostCapacity:
        """Free memory of this host and free disk under `home` (every server's data)."""
        return host_capacity.measure(self._home, cpu=cpu)

    def supported_versions(self) -> list[str]:
        """Major versions with binaries installed here, lowest first."""
        return sorted(installed_binaries(), key=int)

    def missing_tools(self) -> list[str]:
        return missing_programs()

    def tls_versions(self) -> frozenset[str]:
        return frozenset(v for v in installed_binaries() if tls_available(v))

    def tls_ca_certificate(self) -> str | None:
        return self.tls_files().ca_cert.read_text()

    def ensure_tls(self, spec: ServerSpec) -> str | None:
        paths = self.paths(spec.server_id)
        if not tls_available(spec.version):
            return None
        try:
            config, hba = paths.config.read_text(), (paths.data / "pg_hba.conf").read_text()
        except OSError:
            return None  # not provisioned: its provision writes both
        plaintext = [line for line in hba.splitlines() if line.split()[:1] == ["host"]]
        if "ssl_cert_file" in config and not plaintext:
            return None
        self.provision(spec)  # rewrites pgfleet.conf and pg_hba.conf; the data stays
        with self.administer(spec.server_id, "turning TLS on") as conn:
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        return "TLS turned on (ssl = on, hostssl only) and the configuration reloaded"

    def _hba(self, paths: ServerPaths) -> str:
        """The server's pg_hba.conf: hostssl where its build has TLS, its blocked addresses."""
        try:
            version = (paths.data / "PG_VERSION").read_text().strip()
        except OSError:
            version = ""
        return render_hba(self._host, ssl=tls_available(version), blocked=read_blocked(paths.root))

    def _tls_for(self, version: str) -> tls.TlsFiles | None:
        """The certificates when `version`'s build has TLS, else None (no ssl, host lines)."""
        return self.tls_files() if tls_available(version) else None

    def tls_files(self) -> tls.TlsFiles:
        """The CA and the host's server certificate every server presents (made once)."""
        return tls.ensure(self._home, self._host)

    def paths(self, server_id: str) -> ServerPaths:
        """Where the files of `server_id` live (whether or not it exists)."""
        if not SERVER_ID_RE.match(server_id):
            raise EngineError(f"invalid server id {server_id!r}")
        return ServerPaths(self._home / "servers" / server_id)

    # -- port: lifecycle --

    def provision(self, spec: ServerSpec) -> str:
        """Create the data directory from the version's template (once) and (re)write the
        configuration from `spec`. Does not start or reload the server."""
        bin_dir_for(spec.version)
        config = render_config(
            spec,
            self.paths(spec.server_id),
            self._host,
            tls=self._tls_for(spec.version),
            audit=audit_available(spec.version),
        )
        return self._provision(spec, config, lambda paths: self._copy_template(spec.version, paths))

    def start(self, spec: ServerSpec) -> str:
        """Start the server and wait until it accepts connections; recover a stale
        postmaster.pid left by a killed server."""
        paths = self.paths(spec.server_id)
        with self._lock(f"server-{spec.server_id}"):
            reason = self._start(paths, spec.version)
            # Every start (reconcile's too) puts the server back inside its memory/CPU limits.
            self._place(spec)
            return reason

    def stop(self, server_id: str) -> str:
        """Fast shutdown, waiting until the server is down. Stopped or missing is fine. A
        stopped server holds no memory: its cgroups go too (the next start makes them again)."""
        paths = self.paths(server_id)
        with self._lock(f"server-{server_id}"):
            if not is_data_dir(paths.data):
                return "not provisioned"
            if not postmaster.running_pid(paths):
                self._limits.release(server_id)
                return "already stopped"
            self._pg_ctl_stop(paths, "fast")
            self._limits.release(server_id)
            return "stopped"

    def restart(self, spec: ServerSpec) -> str:
        """Restart (fast shutdown) and wait until the server accepts connections again; a
        stopped server is simply started."""
        paths = self.paths(spec.server_id)
        with self._lock(f"server-{spec.server_id}"):
            bin_dir = self._bin_for(paths, spec.version)
            if not postmaster.running_pid(paths):
                reason = self._start(paths, spec.version) + " (was not running)"
            else:
                self._refresh_signals(paths)
                argv = pg_ctl_argv(bin_dir, "restart", paths.data, log_file=paths.startup_log, mode="fast")
                proc = process.run(argv, timeout=3 * PG_CTL_TIMEOUT_S, check=False)
                if proc.returncode != 0:
                    raise EngineError(
                        f"restart of {spec.server_id} failed: {self._startup_failure(paths, proc)}"
                    )
                reason = "restarted"
            self._place(spec)  # the new postmaster starts outside the server's cgroup
            return reason

    def destroy(self, server_id: str) -> str:
        """Stop the server (immediately if a fast shutdown fails) and remove its directory."""
        paths = self.paths(server_id)
        trash = paths.root.with_name(f".{server_id}.deleting")
        with self._lock(f"server-{server_id}"):
            # A crash while removing leaves the trash directory behind: finish that first.
            remove_tree(trash)
            if not paths.root.exists():
                return "already destroyed"
            self._stop_for_destroy(paths)
            # Rename first, so a half-removed directory never looks like a server.
            os.rename(paths.root, trash)
            remove_tree(trash)
            self._limits.release(server_id)
        return "destroyed"

    # -- port: resources and administration --

    def apply_resources(self, spec: ServerSpec) -> str:
        """Place the running server in its cgroup v1 groups with spec's limits (or say that
        only the settings limit it here)."""
        paths = self.paths(spec.server_id)
        with self._lock(f"server-{spec.server_id}"):
            if not postmaster.running_pid(paths):
                raise EngineError(f"server {spec.server_id} is not running")
            return self._place(spec).reason

    def release_resources(self, server_id: str) -> str:
        """Remove the server's cgroups (its processes, if any are left, lose their limits)."""
        self.paths(server_id)  # validates the id
        return self._limits.release(server_id)

    def limit_backend(
        self, server_id: str, pid: int, cpu_percent: float | None, io_mbps: float | None
    ) -> tuple[list[str], list[str]]:
        paths = self.paths(server_id)
        if pid not in postmaster.postgres_processes_in(paths.data):
            return [], [f"process {pid} is not a backend of {server_id}"]
        return self._limits.place_backend(server_id, pid, cpu_percent, io_mbps, paths.data)

    def release_backend(self, server_id: str, pid: int) -> None:
        self.paths(server_id)
        self._limits.release_backend(server_id, pid)

    def database_admin(self, server_id: str) -> DatabaseAdmin:
        """Tenants, quotas and usage of the server, over its private socket; logical dumps go
        to `<home>/logical-backups/<server_id>/`."""
        paths = self.paths(server_id)
        if not is_data_dir(paths.data):
            raise EngineError(f"server {server_id} is not provisioned")
        server = AdminServer(self.admin_socket(server_id), bin_dir_for(data_dir_version(paths.data)))
        return LocalDatabaseAdmin(server, self._home / "logical-backups" / server_id)

    def _place(self, spec: ServerSpec) -> LimitsOutcome:
        """Move the postmaster, then the processes it already forked, into the server's groups."""
        paths = self.paths(spec.server_id)
        postmaster_pid = postmaster.running_pid(paths)
        if postmaster_pid is None:
            return LimitsOutcome(False, "not running")
        children = [pid for pid in postmaster.postgres_processes_in(paths.data) if pid != postmaster_pid]
        return self._limits.place(spec.server_id, spec.memory_mb, spec.cpu, [postmaster_pid, *children])

    # -- port: observation --

    def state(self, server_id: str) -> ServerState:
        """Observe the server: data directory, live postmaster, and a real connection."""
        try:
            paths = self.paths(server_id)
        except EngineError as exc:
            return ServerState(exists=False, running=False, accepting_connections=False, reason=str(exc))
        if not is_data_dir(paths.data):
            return ServerState(
                exists=False, running=False, accepting_connections=False, reason="not provisioned"
            )
        pidfile = read_pidfile(paths.pidfile)
        if pidfile is None:
            return ServerState(exists=True, running=False, accepting_connections=False, reason="stopped")
        if not postmaster.is_postgres_in(pidfile.pid, paths.data):
            return ServerState(
                exists=True,
                running=False,
                accepting_connections=False,
                reason=f"not running (stale postmaster.pid: pid {pidfile.pid} is gone)",
            )
        error = self._connect_error(paths)
        return ServerState(
            exists=True,
            running=True,
            accepting_connections=error is None,
            pid=pidfile.pid,
            reason="accepting connections"
            if error is None
            else f"running ({pidfile.status or 'starting'}), not accepting connections: {error}",
        )

    def is_provisioned(self, server_id: str) -> bool:
        """Whether `server_id` has a complete data directory here. Raises EngineError for an
        invalid id."""
        return is_data_dir(self.paths(server_id).data)

    def is_running(self, server_id: str) -> bool:
        """Whether a live postmaster runs in the server's data directory."""
        return postmaster.running_pid(self.paths(server_id)) is not None

    def admin_socket(self, server_id: str) -> AdminSocket:
        """Where the admin role reaches the server (its private socket and its port)."""
        paths = self.paths(server_id)
        return AdminSocket(paths.socket, self._port(paths))

    @contextlib.contextmanager
    def connect(self, server_id: str, dbname: str = "postgres") -> Iterator[psycopg.Connection]:
        """A raw autocommit superuser connection over the server's private unix socket, for
        tools and tests (no pinned search_path, no timeouts): the platform's own SQL goes
        through `administer` or the SqlTarget port.

        Raises EngineError when the server cannot be reached.
        """
        with self._session(server_id, dbname, limits=None) as conn:
            yield conn

    @contextlib.contextmanager
    def administer(self, server_id: str, action: str) -> Iterator[psycopg.Connection]:
        """A privileged session (search_path pg_catalog, pg_temp; lock and statement
        timeouts), with SQL errors raised as EngineError saying which `action` failed."""
        with self._session(server_id, "postgres", limits=SessionLimits()) as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise EngineError(f"{action} on {server_id} failed: {first_line(exc)}") from exc

    @contextlib.contextmanager
    def _session(
        self, server_id: str, dbname: str, limits: SessionLimits | None
    ) -> Iterator[psycopg.Connection]:
        try:
            conn = connect(
                self.admin_socket(server_id), dbname, limits=limits, connect_timeout=CONNECT_TIMEOUT_S + 3
            )
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to server {server_id}: {first_line(exc)}") from exc
        with conn:
            yield conn

    def ensure_database(self, server_id: str, database: str, username: str, password: str) -> str:
        """Create or update the LOGIN role (SCRAM) and create the database it owns.

        The SCRAM verifier is computed client-side, so the password itself never reaches the
        server, and the session turns off statement logging and utility-statement tracking
        so not even the verifier is written to logs or pg_stat_statements.
        """
        _check_identifier("database", database)
        _check_identifier("username", username)
        if not password:
            raise EngineError("password must not be empty")
        with self.administer(server_id, "ensure_database") as conn:
            return ensure_role_and_database(conn, database, username, password)

    def stats(self, server_id: str, database: str) -> ServerStats:
        """Connections, size, uptime, transactions and cache hits of the running server."""
        with self.administer(server_id, "stats") as conn:
            return collect_stats(conn, database)

    def logs(self, server_id: str, limit: int, since: datetime | None = None) -> list[LogLine]:
        """The newest `limit` jsonlog lines (at or after `since`), oldest first."""
        return logs.read_logs(self.paths(server_id).log, limit, since)

    # -- port: read replicas --

    def provision_replica(self, spec: ServerSpec, source_server_id: str) -> str:
        """A hot standby of the running `source_server_id`: its slot on the source, a
        pg_basebackup over the source's private socket (once), then its own configuration.
        Does not start it."""
        source = self.paths(source_server_id)
        bin_dir = self._bin_for(source, spec.version)
        if not postmaster.running_pid(source):
            raise EngineError(f"source server {source_server_id} is not running")
        self._allow_replication(source)
        slot = replication_slot_name(spec.server_id)
        with self.administer(source_server_id, "preparing a replica") as conn:
            slot_reason = ensure_physical_slot(conn, slot)
            minimums = hot_standby_minimums(conn)
        standby = StandbySource(source.socket, self._port(source), slot, spec.server_id, minimums)
        config = render_config(
            spec,
            self.paths(spec.server_id),
            self._host,
            standby,
            tls=self._tls_for(spec.version),
            audit=audit_available(spec.version),
        )
        reason = self._provision(spec, config, lambda paths: self._base_backup(bin_dir, standby, paths))
        return f"{reason}; {slot_reason}"

    def replica_status(self, source_server_id: str) -> list[ReplicaLag]:
        """Standbys of the source from pg_stat_replication and pg_replication_slots."""
        with self.administer(source_server_id, "replica_status") as conn:
            return replica_lag(conn)

    def allow_replication(self, server_id: str, username: str, password: str, slot: str) -> str:
        """The role (only REMOTE_STANDBY_ROLE: pg_hba.conf admits that one over TCP), the rule
        and the slot a standby cluster copies and follows the server through."""
        if username != REMOTE_STANDBY_ROLE:
            raise EngineError(
                f"standbys outside this engine replicate as {REMOTE_STANDBY_ROLE}, not {username!r}"
            )
        _check_identifier("slot", slot)
        paths = self.paths(server_id)
        if not postmaster.running_pid(paths):
            raise EngineError(f"server {server_id} is not running")
        self._allow_replication(paths)
        with self.administer(server_id, "allowing a standby cluster") as conn:
            role = ensure_replication_role(conn, username, password)
            return f"{role}; {ensure_physical_slot(conn, slot)}"

    def wal_position(self, server_id: str) -> int:
        with self.administer(server_id, "wal_position") as conn:
            return wal_position(conn)

    def set_read_only(self, server_id: str, read_only: bool) -> int:
        with self.administer(server_id, "read-only" if read_only else "read-write") as conn:
            return apply_read_only(conn, read_only)

    def drop_replication_slot(self, source_server_id: str, slot: str) -> str:
        """Drop the slot, terminating a walsender that still holds it."""
        _check_identifier("slot", slot)
        with self.administer(source_server_id, "drop_replication_slot") as conn:
            return drop_physical_slot(conn, slot)

    # -- port: major-version upgrade in place --

    def _upgrade_dirs(self, server_id: str, target_version: str) -> upgrade.UpgradeDirs:
        bin_dir_for(target_version)
        return upgrade.UpgradeDirs(self.paths(server_id), target_version)

    def _databases(self, server_id: str) -> list[str]:
        with self.administer(server_id, "listing databases") as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def _session_in(
        self, server_id: str, dbname: str
    ) -> contextlib.AbstractContextManager[psycopg.Connection]:
        return self._session(server_id, dbname, limits=SessionLimits())

    def server_version(self, server_id: str) -> str:
        with self.administer(server_id, "reading the server version") as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()
        return str(row[0]).split()[0] if row else ""

    def component_versions(self) -> dict[str, str]:
        return tool_versions.installed()

    def upgrade_check(self, server_id: str, target_version: str, link: bool) -> list[str]:
        """pg_upgrade --check (live against the running server) and the extensions in use
        that the target version does not ship."""
        dirs = self._upgrade_dirs(server_id, target_version)
        paths = dirs.paths
        if not is_data_dir(paths.data):
            raise EngineError(f"server {server_id} is not provisioned")
        findings: list[str] = []
        running = postmaster.running_pid(paths) is not None
        if running:
            available = upgrade.available_extensions(bin_dir_for(target_version))
            for dbname in self._databases(server_id):
                with self._session_in(server_id, dbname) as conn:
                    rows = conn.execute(
                        "SELECT extname FROM pg_catalog.pg_extension ORDER BY extname"
                    ).fetchall()
                missing = [str(r[0]) for r in rows if str(r[0]) not in available]
                if missing:
                    findings.append(
                        f"database {dbname}: extension(s) {', '.join(missing)} not available in "
                        f"PostgreSQL {target_version}"
                    )
        with self._lock(f"upgrade-{server_id}"):
            findings += upgrade.check(dirs, self._port(paths), link=link, running=running)
        return findings

    def upgrade_space(self, server_id: str) -> tuple[int, int]:
        paths = self.paths(server_id)
        return upgrade.data_bytes(paths.data), shutil.disk_usage(paths.root).free

    def prepare_upgrade(self, server_id: str, target_version: str) -> str:
        dirs = self._upgrade_dirs(server_id, target_version)
        with self._lock(f"upgrade-{server_id}"):
            return upgrade.prepare(dirs)

    def upgrade_data(self, spec: ServerSpec, link: bool) -> str:
        dirs = self._upgrade_dirs(spec.server_id, spec.version)
        with self._lock(f"server-{spec.server_id}"):
            if postmaster.running_pid(dirs.paths):
                raise EngineError(f"server {spec.server_id} must be stopped for pg_upgrade")
            port = self._port(dirs.paths)
            reason = upgrade.run(dirs, port, link=link)
        self.provision(spec)  # the new data directory gets pgfleet.conf, the include and pg_hba
        return reason

    def roll_back_upgrade(self, server_id: str, target_version: str) -> str:
        dirs = self._upgrade_dirs(server_id, target_version)
        self.stop(server_id)
        with self._lock(f"server-{server_id}"):
            return upgrade.roll_back(dirs)

    def finish_upgrade(self, server_id: str, target_version: str) -> str:
        dirs = self._upgrade_dirs(server_id, target_version)
        with self._lock(f"server-{server_id}"):
            return upgrade.finish(dirs)

    def after_upgrade(self, server_id: str) -> str:
        paths = self.paths(server_id)
        return upgrade.update_extensions_and_analyze(
            self.admin_socket(server_id),
            self._databases(server_id),
            bin_dir_for(data_dir_version(paths.data)),
        )

    # -- internals: provisioning --

    def _provision(self, spec: ServerSpec, config: str, create: Callable[[ServerPaths], str]) -> str:
        """Make the data directory with `create` unless it is complete already, then write
        the configuration files. Returns why."""
        paths = self.paths(spec.server_id)
        self._check_socket_path(paths, spec.port)
        with self._lock(f"server-{spec.server_id}"):
            for directory in (paths.root, paths.socket, paths.log):
                process.make_owned_dir(directory)
            if is_data_dir(paths.data):
                self._check_version(paths, spec.version)
                reason = "already provisioned (configuration rewritten)"
            else:
                if paths.data.exists():
                    raise EngineError(f"{paths.data} exists but is not a complete data directory")
                reason = create(paths)
            ensure_include(paths.data)
            process.write_owned_file(paths.config, config)
            process.write_owned_file(paths.data / "pg_hba.conf", self._hba(paths))
        return reason

    def _base_backup(self, bin_dir: Path, source: StandbySource, paths: ServerPaths) -> str:
        started = time.monotonic()
        copying = paths.root / "data.basebackup"
        remove_tree(copying)
        process.run(
            pg_basebackup_argv(bin_dir, copying, source.socket, source.port, source.slot),
            timeout=BASEBACKUP_TIMEOUT_S,
        )
        # What -R of pg_basebackup writes: start as a standby. Written before the rename so the
        # data directory never appears without it (it would start as a second primary).
        process.write_owned_file(copying / "standby.signal", "")
        os.rename(copying, paths.data)
        return f"copied the source with pg_basebackup in {time.monotonic() - started:.1f}s"

    def _allow_replication(self, source: ServerPaths) -> None:
        """Give a server provisioned before it could have standbys the pg_hba.conf rule they
        replicate through, and wait until the postmaster has loaded it."""
        hba = source.data / "pg_hba.conf"
        wanted = self._hba(source)
        with self._lock(f"server-{source.root.name}"):
            if hba.read_text() == wanted:
                return
            process.write_owned_file(hba, wanted)
        query = "SELECT pg_catalog.pg_conf_load_time()"
        with self.administer(source.root.name, "reloading pg_hba.conf") as conn:
            loaded = conn.execute(query).fetchone()
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        # New sessions inherit the postmaster's load time: a later one means the rule is live.
        while time.monotonic() < deadline:
            with self.administer(source.root.name, "reloading pg_hba.conf") as conn:
                if conn.execute(query).fetchone() != loaded:
                    return
            time.sleep(0.05)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """An exclusive flock, held across processes and threads (each open is its own lock
        owner). Lock files are never removed: removing one while another waits on it would
        let two holders in."""
        with open(self._home / "locks" / f"{name}.lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _ensure_template(self, version: str) -> Path:
        """The pristine data directory of `version`, made by initdb the first time."""
        template = self._home / "templates" / version
        if is_data_dir(template):
            return template
        with self._lock(f"template-{version}"):
            if is_data_dir(template):  # another process made it while we waited
                return template
            started = time.monotonic()
            building = template.with_name(f"{version}.building")
            remove_tree(building)
            self._initdb(bin_dir_for(version), building)
            ensure_include(building)
            process.write_owned_file(
                building / "pg_hba.conf", render_hba(self._host, ssl=tls_available(version))
            )
            os.rename(building, template)
            log.info("made PostgreSQL %s template in %.1fs", version, time.monotonic() - started)
        return template

    def _initdb(self, bin_dir: Path, target: Path) -> None:
        # C.UTF-8 sorts like C but knows UTF-8 character classes; fall back to C where the
        # C library lacks it.
        try:
            process.run(initdb_argv(bin_dir, target, "C.UTF-8"), timeout=300)
        except EngineError as exc:
            log.warning("initdb with locale C.UTF-8 failed (%s); retrying with locale C", exc)
            remove_tree(target)
            process.run(initdb_argv(bin_dir, target, "C"), timeout=300)

    def _copy_template(self, version: str, paths: ServerPaths) -> str:
        template = self._ensure_template(version)
        copying = paths.root / "data.copying"
        remove_tree(copying)
        process.run(copy_argv(template, copying), timeout=300)
        # The copy appears whole or not at all: a crash mid-copy leaves only data.copying.
        os.rename(copying, paths.data)
        return "created data directory from template"

    def _check_socket_path(self, paths: ServerPaths, port: int) -> None:
        socket_file = paths.socket / f".s.PGSQL.{port}"
        if len(os.fsencode(socket_file)) > MAX_SOCKET_PATH:
            raise EngineError(
                f"unix socket path {socket_file} is longer than {MAX_SOCKET_PATH} bytes: use a shorter home"
            )

    def _check_version(self, paths: ServerPaths, version: str) -> None:
        found = data_dir_version(paths.data)
        if found != version:
            raise EngineError(f"data directory {paths.data} is PostgreSQL {found}, not {version}")

    def _bin_for(self, paths: ServerPaths, version: str) -> Path:
        if not is_data_dir(paths.data):
            raise EngineError(f"server {paths.root.name} is not provisioned")
        self._check_version(paths, version)
        return bin_dir_for(version)

    # -- internals: running --

    def _start(self, paths: ServerPaths, version: str) -> str:
        bin_dir = self._bin_for(paths, version)
        if postmaster.running_pid(paths):
            self._wait_accepting(paths)
            return "already running"
        self._refresh_signals(paths)
        stale = paths.pidfile.exists()
        if stale:
            postmaster.clear_stale_postmaster(paths)
        postmaster.clear_stale_socket_locks(paths.socket)
        attempts = STALE_START_ATTEMPTS if stale else 1
        argv = pg_ctl_argv(bin_dir, "start", paths.data, log_file=paths.startup_log)
        for attempt in range(1, attempts + 1):
            proc = process.run(argv, timeout=2 * PG_CTL_TIMEOUT_S, check=False)
            if proc.returncode == 0:
                return "started after unclean shutdown (stale postmaster.pid)" if stale else "started"
            if attempt < attempts and not postmaster.running_pid(paths):
                # After a kill -9, the kernel may still be releasing the old shared memory.
                log.info("start of %s failed (attempt %d), retrying", paths.root.name, attempt)
                time.sleep(STALE_START_PAUSE_S)
                continue
            break
        raise EngineError(f"start of {paths.root.name} failed: {self._startup_failure(paths, proc)}")

    @staticmethod
    def _refresh_signals(paths: ServerPaths) -> None:
        """Give a server provisioned by an earlier version the logging threat detection reads
        (config.with_signals) before it starts: its next start is when preload libraries load."""
        try:
            text = paths.config.read_text()
        except FileNotFoundError:
            return
        wanted = with_signals(text, audit_available(data_dir_version(paths.data)))
        if wanted != text:
            process.write_owned_file(paths.config, wanted)

    def set_blocked_sources(self, server_id: str, addresses: list[str]) -> str:
        """Write the addresses beside the data directory (so every later pg_hba.conf keeps
        them), rewrite pg_hba.conf and, when the server runs, reload it and wait until the
        postmaster has loaded it."""
        paths = self.paths(server_id)
        if not is_data_dir(paths.data):
            raise EngineError(f"server {server_id} is not provisioned")
        with self._lock(f"server-{server_id}"):
            write_blocked(paths.root, addresses)
        running = postmaster.running_pid(paths)
        if running:
            self._allow_replication(paths)  # rewrites pg_hba.conf from the file, and reloads
        else:
            with self._lock(f"server-{server_id}"):
                process.write_owned_file(paths.data / "pg_hba.conf", self._hba(paths))
        listed = ", ".join(sorted(set(addresses))) or "none"
        return f"client addresses refused on {server_id}: {listed}" + ("" if running else " (server stopped)")

    def _pg_ctl_stop(self, paths: ServerPaths, mode: str) -> None:
        bin_dir = bin_dir_for(data_dir_version(paths.data))
        proc = process.run(pg_ctl_argv(bin_dir, "stop", paths.data, mode=mode), timeout=90, check=False)
        if proc.returncode != 0 and postmaster.running_pid(paths):
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise EngineError(f"{mode} shutdown of {paths.root.name} failed: {' '.join(detail)}")

    def _stop_for_destroy(self, paths: ServerPaths) -> None:
        if is_data_dir(paths.data) and postmaster.running_pid(paths):
            try:
                self._pg_ctl_stop(paths, "fast")
            except EngineError as exc:
                log.warning("%s; trying an immediate shutdown", exc)
                self._pg_ctl_stop(paths, "immediate")
        # A killed postmaster's orphans would keep writing into files about to be removed.
        if orphans := postmaster.postgres_processes_in(paths.data):
            postmaster.kill(orphans)

    def _wait_accepting(self, paths: ServerPaths) -> None:
        """Wait for a running server (perhaps still recovering) to accept connections."""
        deadline = time.monotonic() + PG_CTL_TIMEOUT_S
        while (error := self._connect_error(paths)) is not None:
            if time.monotonic() >= deadline or not postmaster.running_pid(paths):
                raise EngineError(
                    f"server {paths.root.name} is running but not accepting connections: {error}"
                )
            time.sleep(0.1)

    @staticmethod
    def _startup_failure(paths: ServerPaths, proc: subprocess.CompletedProcess[str]) -> str:
        """Why a start failed: pg_ctl itself mostly says "examine the log output", so the
        end of the startup log (where a postmaster that dies early writes) is added."""
        said = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        try:
            tail = paths.startup_log.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        return " | ".join([*said, *tail]) or f"pg_ctl exited with {proc.returncode}"

    # -- internals: SQL --

    def _port(self, paths: ServerPaths) -> int:
        """The port a server listens on: the running postmaster's, else the configured one."""
        pidfile = read_pidfile(paths.pidfile)
        port = pidfile.port if pidfile and pidfile.port else configured_port(paths.config)
        if port is None:
            raise EngineError(f"server {paths.root.name} has no known port (not provisioned?)")
        return port

    def _connect_error(self, paths: ServerPaths) -> str | None:
        """None when the server accepts a connection now, else why not."""
        try:
            with connect(AdminSocket(paths.socket, self._port(paths)), connect_timeout=CONNECT_TIMEOUT_S):
                return None
        except (psycopg.Error, EngineError) as exc:
            return first_line(exc)


def _check_identifier(kind: str, name: str) -> None:
    # PostgreSQL silently truncates longer names, which would break the existence checks.
    if not name or "\0" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise EngineError(f"invalid {kind} {name!r}: 1 to {MAX_IDENTIFIER_BYTES} bytes, no NUL")
