"""The configuration files the engine writes: pgfleet.conf (included last from
postgresql.conf) and pg_hba.conf."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgfleet.adapters.engines.local import process, tuning
from pgfleet.adapters.engines.local.postgres.paths import CONFIG_INCLUDE, ServerPaths
from pgfleet.adapters.engines.local.sql import ADMIN_USER
from pgfleet.adapters.engines.local.tls import TlsFiles
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ServerSpec

INCLUDE_LINE = f"include_if_exists = '{CONFIG_INCLUDE}'"
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
PLAIN_VALUE_RE = re.compile(r"^(-?[0-9]+(\.[0-9]+)?|on|off|true|false)$")

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
# Every lock wait longer than deadlock_timeout is logged, and a deadlock is found (and its
# victim cancelled) after 1 s of waiting: the locks domain reads both from the log. A server's
# own settings may still override them.
LOCK_LOGGING = {"log_lock_waits": "on", "deadlock_timeout": "1s"}
# What threat detection (pgfleet.domains.security) reads from the log: every connection (its
# client address, and whether it was authorized), the statement of every error, and, where
# pgaudit is installed (Debian's postgresql-15-pgaudit), role changes and DDL. Kept modest: a
# connection is two lines, an error one more, DDL is rare.
SIGNAL_LOGGING = {"log_connections": "on", "log_min_error_statement": "error"}
AUDIT_LIBRARY = "pgaudit"
AUDIT_LOGGING = {"pgaudit.log": "role, ddl", "pgaudit.log_catalog": "off"}
# A hot standby refuses to run with any of these below its source's value.
HOT_STANDBY_MINIMUMS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


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


def with_required_preload(libraries: str, audit: bool = False) -> str:
    """shared_preload_libraries keeping pg_stat_statements, which stats and advice need, and
    pgaudit when `audit` (the server's version has it installed)."""
    names = [part.strip() for part in libraries.split(",") if part.strip()]
    if REQUIRED_PRELOAD not in names:
        names.insert(0, REQUIRED_PRELOAD)
    if audit and AUDIT_LIBRARY not in names:
        names.append(AUDIT_LIBRARY)
    return ",".join(names)


def signal_settings(audit: bool) -> dict[str, str]:
    """The logging threat detection reads (SIGNAL_LOGGING, and AUDIT_LOGGING with pgaudit)."""
    return {**SIGNAL_LOGGING, **(AUDIT_LOGGING if audit else {})}


def with_signals(text: str, audit: bool) -> str:
    """pgfleet.conf `text` (as an earlier version wrote it) with the signal settings it lacks
    inserted after its header, where the lines after them (the server's own overrides) still
    win, and pgaudit added to its shared_preload_libraries when `audit`. The text unchanged
    when it has them all: a server provisioned before gets them at its next start."""
    lines = text.splitlines(keepends=True)
    present = {
        line.split("=", 1)[0].strip().lower() for line in lines if "=" in line and not line.startswith("#")
    }
    out: list[str] = []
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip().lower() == "shared_preload_libraries":
            current = value.strip().strip("'").replace("''", "'")
            line = f"shared_preload_libraries = {conf_value(with_required_preload(current, audit))}\n"
        out.append(line)
    missing = [f"{k} = {conf_value(v)}\n" for k, v in signal_settings(audit).items() if k not in present]
    if audit and "shared_preload_libraries" not in present:
        missing.append(f"shared_preload_libraries = {conf_value(with_required_preload('', audit))}\n")
    at = 1 if out and out[0].startswith("#") else 0
    return "".join(out[:at] + missing + out[at:])


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
    spec: ServerSpec,
    paths: ServerPaths,
    host: str,
    standby: StandbySource | None = None,
    tls: TlsFiles | None = None,
    audit: bool = False,
) -> str:
    """The content of pgfleet.conf for `spec`; a standby of `standby` when given; TLS on with
    the engine's certificate when `tls` is given (pg_hba.conf then admits TCP only over it)."""
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
        "shared_preload_libraries": with_required_preload(REQUIRED_PRELOAD, audit),
        "logging_collector": "on",
        "log_destination": "jsonlog",
        "log_directory": str(paths.log),
        "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
        # logs() parses timestamps: keep them in UTC whatever the machine's zone.
        "log_timezone": "UTC",
        "log_rotation_size": "10MB",
        "log_rotation_age": "1d",
        **LOCK_LOGGING,
        **signal_settings(audit),
        **tuned,
    }
    if tls is not None:
        settings.update(ssl_settings(tls))
    overrides = validated_overrides(spec.settings)
    if "shared_preload_libraries" in overrides:
        overrides["shared_preload_libraries"] = with_required_preload(
            overrides["shared_preload_libraries"], audit
        )
    settings.update(overrides)
    if standby is not None:
        settings.update(standby_settings(standby, settings))
    lines = ["# Managed by pgfleet: rewritten on every provision. Do not edit.\n"]
    lines += [f"{name} = {conf_value(value)}\n" for name, value in settings.items()]
    return "".join(lines)


# The role a standby outside this engine (a Patroni standby cluster) replicates with. No server
# has it until `allow_replication` creates it, so its pg_hba.conf line admits nobody before.
REMOTE_STANDBY_ROLE = "replicator"


def ssl_settings(tls: TlsFiles) -> dict[str, str]:
    """TLS on, with the engine host's certificate (pgfleet.adapters.engines.local.tls)."""
    return {
        "ssl": "on",
        "ssl_cert_file": str(tls.server_cert),
        "ssl_key_file": str(tls.server_key),
        "ssl_min_protocol_version": "TLSv1.2",
    }


def render_hba(host: str, ssl: bool = True, blocked: Sequence[str] = ()) -> str:
    """pg_hba.conf: the superuser over the private socket only (standbys of the server
    replicate that way too); everyone else with SCRAM over TCP on the engine host only, and
    only over TLS (`hostssl`: a plaintext TCP connection matches no line and is refused).
    The `blocked` client addresses (threat mitigations) are rejected before the password
    line; `all` matches no replication connection, so standbys keep streaming."""
    prefix = 32 if ipaddress.ip_address(host).version == 4 else 128
    kind = "hostssl" if ssl else "host   "
    rejects = "".join(f"{line}\n" for line in reject_lines(blocked))
    return (
        "# Managed by pgfleet: rewritten on every provision. Do not edit.\n"
        "# TYPE  DATABASE     USER      ADDRESS             METHOD\n"
        f"local   all          {ADMIN_USER}                      trust\n"
        f"local   replication  {ADMIN_USER}                      trust\n"
        f"{kind} replication  {REMOTE_STANDBY_ROLE} {host}/{prefix:<10} scram-sha-256\n"
        f"{rejects}"
        f"{kind} all          all       {host}/{prefix:<10} scram-sha-256\n"
    )


# The client addresses a server refuses (Engine.set_blocked_sources), kept beside its data
# directory so every rewrite of pg_hba.conf (provision, upgrade) keeps them.
BLOCKED_SOURCES_FILE = "blocked-sources.json"


def reject_lines(blocked: Sequence[str]) -> list[str]:
    """pg_hba.conf lines refusing each address (validated: an address, never a name)."""
    lines = []
    for address in sorted({str(ipaddress.ip_address(a)) for a in blocked}):
        prefix = 32 if ipaddress.ip_address(address).version == 4 else 128
        lines.append(f"host    all          all       {address}/{prefix:<10} reject")
    return lines


def read_blocked(root: Path) -> list[str]:
    try:
        value = json.loads((root / BLOCKED_SOURCES_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise EngineError(f"{root / BLOCKED_SOURCES_FILE} is unreadable: {exc}") from exc
    return [str(ipaddress.ip_address(a)) for a in value]


def write_blocked(root: Path, addresses: Sequence[str]) -> None:
    valid = sorted({str(ipaddress.ip_address(a)) for a in addresses})
    process.write_owned_file(root / BLOCKED_SOURCES_FILE, json.dumps(valid))


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
