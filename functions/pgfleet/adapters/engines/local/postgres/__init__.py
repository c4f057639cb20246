"""The local single-server engine (real PostgreSQL processes), split along its seams:

    binaries     which major versions are installed, and where
    commands     every data-plane command line (initdb, pg_ctl, pg_basebackup, cp)
    paths        where a server's files live; data directory and postmaster.pid
    config       pgfleet.conf, pg_hba.conf, standby settings
    postmaster   the server's processes as /proc shows them; stale-postmaster recovery
    roles        an application's role and database (shared with the Patroni engine)
    stats        live statistics (shared with the Patroni engine)
    replication  slots, standbys and their lag
    logs         reading the jsonlog files
    engine       LocalPostgresEngine, which puts them together

The names other modules use are re-exported here.
"""

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.postgres import postmaster
from pgfleet.adapters.engines.local.postgres.binaries import (
    DEBIAN_PG_ROOT,
    audit_available,
    bin_dir_for,
    installed_binaries,
    tls_available,
)
from pgfleet.adapters.engines.local.postgres.commands import PG_CTL_TIMEOUT_S
from pgfleet.adapters.engines.local.postgres.config import (
    HOT_STANDBY_MINIMUMS,
    MANAGED_SETTINGS,
    REQUIRED_PRELOAD,
    StandbySource,
    conf_value,
    render_config,
    render_hba,
    ssl_settings,
    validated_overrides,
    with_required_preload,
)
from pgfleet.adapters.engines.local.postgres.engine import LocalPostgresEngine
from pgfleet.adapters.engines.local.postgres.logs import parse_log_line, parse_log_time, reverse_lines
from pgfleet.adapters.engines.local.postgres.paths import (
    CONFIG_INCLUDE,
    SERVER_ID_RE,
    PidFile,
    ServerPaths,
    data_dir_version,
    is_data_dir,
    read_pidfile,
    remove_tree,
)
from pgfleet.adapters.engines.local.postgres.postmaster import clear_stale_socket_locks, postgres_processes_in
from pgfleet.adapters.engines.local.postgres.replication import replica_lag
from pgfleet.adapters.engines.local.postgres.roles import ensure_role_and_database
from pgfleet.adapters.engines.local.postgres.stats import collect_stats
from pgfleet.adapters.engines.local.sql import ADMIN_USER

__all__ = [
    "clear_stale_socket_locks",
    "ADMIN_USER",
    "CONFIG_INCLUDE",
    "DEBIAN_PG_ROOT",
    "HOT_STANDBY_MINIMUMS",
    "MANAGED_SETTINGS",
    "PG_CTL_TIMEOUT_S",
    "REQUIRED_PRELOAD",
    "SERVER_ID_RE",
    "LocalPostgresEngine",
    "PidFile",
    "ServerPaths",
    "StandbySource",
    "audit_available",
    "bin_dir_for",
    "collect_stats",
    "conf_value",
    "data_dir_version",
    "ensure_role_and_database",
    "installed_binaries",
    "is_data_dir",
    "parse_log_line",
    "parse_log_time",
    "postgres_processes_in",
    "postmaster",
    "process",
    "read_pidfile",
    "remove_tree",
    "render_config",
    "render_hba",
    "ssl_settings",
    "tls_available",
    "replica_lag",
    "reverse_lines",
    "validated_overrides",
    "with_required_preload",
]
