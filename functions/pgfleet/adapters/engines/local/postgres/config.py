"""The configuration files the engine writes: pgfleet.conf (included last from
postgresql.conf) and pg_hba.conf."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgfleet.adapters.engines.local import process, tuning
from pgfleet.adapters.engines.local.postgres.paths import CONFIG_INCLUDE, ServerPaths
from pgfleet.adapters.engines.local.sql import ADMIN_USER
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
        **LOCK_LOGGING,
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


# The role a standby outside this engine (a Patroni standby cluster) replicates with. No server
# has it until `allow_replication` creates it, so its pg_hba.conf line admits nobody before.
REMOTE_STANDBY_ROLE = "replicator"


def render_hba(host: str) -> str:
    """pg_hba.conf: the superuser over the private socket only (standbys of the server
    replicate that way too); everyone else with SCRAM over TCP on the engine host only."""
    prefix = 32 if ipaddress.ip_address(host).version == 4 else 128
    return (
        "# Managed by pgfleet: rewritten on every provision. Do not edit.\n"
        "# TYPE  DATABASE     USER      ADDRESS             METHOD\n"
        f"local   all          {ADMIN_USER}                      trust\n"
        f"local   replication  {ADMIN_USER}                      trust\n"
        f"host    replication  {REMOTE_STANDBY_ROLE} {host}/{prefix:<10} scram-sha-256\n"
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
