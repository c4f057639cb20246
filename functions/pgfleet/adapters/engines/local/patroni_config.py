"""Patroni configuration for one node of a local HA cluster: paths, secrets, and patroni.yml.

Pure rendering plus two small file helpers; the engine (`patroni.py`) decides when to call
them. Secrets never appear in patroni.yml: Patroni reads them from PATRONI_* environment
variables that the engine passes when it starts the node (see `ClusterSecrets.env`), so
the configuration file can be shown and diffed freely, and nothing lands on a command line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pgfleet.adapters.engines.local import postgres as pg
from pgfleet.adapters.engines.local import tuning
from pgfleet.adapters.engines.local.postgres.binaries import audit_available
from pgfleet.adapters.engines.local.postgres.config import LOCK_LOGGING, reject_lines, signal_settings
from pgfleet.adapters.engines.local.tls import TlsFiles
from pgfleet.core.errors import EngineError
from pgfleet.ports.cluster_engine import HEALTHY_LAG_BYTES, REPLICATION_MODES, ClusterSpec, NodeSpec

NAMESPACE = "/pgfleet/"

# Patroni requires loop_wait + 2 * retry_timeout <= ttl, and ttl below 20 is refused by its
# validator. ttl bounds node-loss failover time (the dead leader's key must expire first);
# loop_wait bounds how quickly a switchover or a new replica is acted upon.
TTL = 20
LOOP_WAIT = 2
RETRY_TIMEOUT = (TTL - LOOP_WAIT) // 2
MAXIMUM_LAG_ON_FAILOVER = HEALTHY_LAG_BYTES  # bytes: a replica further behind is never promoted

SUPERUSER = pg.ADMIN_USER
REPLICATION_USER = "replicator"
REWIND_USER = "rewinder"
RESTAPI_USER = "pgfleet"

# Parameters Patroni takes from the DCS only (the same on every node); a local value would be
# ignored, so these go into bootstrap.dcs instead (see Patroni's CMDLINE_OPTIONS).
DCS_ONLY_PARAMETERS = frozenset(
    {
        "max_connections",
        "max_locks_per_transaction",
        "max_worker_processes",
        "max_prepared_transactions",
        "track_commit_timestamp",
        "max_wal_senders",
        "max_replication_slots",
        "wal_keep_size",
        "wal_log_hints",
    }
)
# Parameters Patroni manages itself; a user value would be silently overwritten.
PATRONI_MANAGED = frozenset(
    {"synchronous_standby_names", "primary_conninfo", "primary_slot_name", "cluster_name", "hot_standby"}
)
PATRONI_MIN_MAX_CONNECTIONS = 25  # Patroni's validator refuses fewer

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes including the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class NodePaths:
    """Where one node's files live: `home/clusters/<cluster_id>/<node_id>/`."""

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
    def config(self) -> Path:
        return self.root / "patroni.yml"

    @property
    def pid_file(self) -> Path:
        return self.root / "patroni.pid"

    @property
    def output(self) -> Path:
        """Patroni's stdout/stderr (early crashes; the regular log is patroni.log)."""
        return self.root / "patroni.out"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"


@dataclass(frozen=True)
class ClusterSecrets:
    """Passwords of one cluster: generated once, kept in a 0600 file under the cluster dir."""

    superuser: str
    replication: str
    rewind: str
    restapi: str

    @classmethod
    def generate(cls) -> ClusterSecrets:
        # URL-safe, so they can appear in a libpq URI or .pgpass without escaping.
        return cls(*(secrets.token_urlsafe(24) for _ in range(4)))

    def env(self) -> dict[str, str]:
        """The PATRONI_* variables Patroni reads its credentials from."""
        return {
            "PATRONI_SUPERUSER_USERNAME": SUPERUSER,
            "PATRONI_SUPERUSER_PASSWORD": self.superuser,
            "PATRONI_REPLICATION_USERNAME": REPLICATION_USER,
            "PATRONI_REPLICATION_PASSWORD": self.replication,
            "PATRONI_REWIND_USERNAME": REWIND_USER,
            "PATRONI_REWIND_PASSWORD": self.rewind,
            "PATRONI_RESTAPI_USERNAME": RESTAPI_USER,
            "PATRONI_RESTAPI_PASSWORD": self.restapi,
        }

    def __repr__(self) -> str:  # never let a password reach a log line through repr()
        return "ClusterSecrets(****)"


def load_or_create_secrets(path: Path) -> ClusterSecrets:
    """The cluster's secrets from `path`, generating and storing them (0600, owned by the
    control plane, not the data-plane user) the first time."""
    if path.exists():
        try:
            return ClusterSecrets(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise EngineError(f"cluster secrets file {path} is unreadable: {type(exc).__name__}") from exc
    created = ClusterSecrets.generate()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(created), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return created


# The synchronous modes are Patroni's quorum commit (synchronous_mode: quorum): a commit waits
# for any one of the streaming replicas (ANY 1 (...)), all of them are synchronous standbys,
# and any of them may be promoted; a failover still picks one that has every acknowledged
# commit (it asks the others). Patroni's plain synchronous mode (true) has one synchronous
# standby and refuses a switchover to any other replica.
QUORUM = "quorum"


def replication_flags(mode: str) -> dict[str, bool | str]:
    """Patroni's dynamic settings for a replication mode of the API."""
    if mode not in REPLICATION_MODES:
        raise EngineError(
            f"unknown replication mode {mode!r} (expected one of {', '.join(REPLICATION_MODES)})"
        )
    return {
        "synchronous_mode": QUORUM if mode != "async" else False,
        "synchronous_mode_strict": mode == "sync_strict",
    }


def etcd_hosts(endpoint: str) -> tuple[str, list[str]]:
    """("http", ["127.0.0.1:2379"]) from "http://127.0.0.1:2379" (comma-separated allowed)."""
    protocol = "http"
    hosts = []
    for part in endpoint.split(","):
        url = urlsplit(part.strip() if "//" in part else "http://" + part.strip())
        protocol = url.scheme or "http"
        if not url.hostname or not url.port:
            raise EngineError(f"etcd endpoint {part!r} needs a host and a port")
        hosts.append(f"{url.hostname}:{url.port}")
    return protocol, hosts


def check_socket_path(paths: NodePaths, port: int) -> None:
    socket_file = paths.socket / f".s.PGSQL.{port}"
    if len(os.fsencode(socket_file)) > MAX_SOCKET_PATH:
        raise EngineError(f"unix socket path {socket_file} is longer than {MAX_SOCKET_PATH} bytes")


def dcs_parameters(spec: ClusterSpec, paths: NodePaths) -> dict[str, Any]:
    """The parameters of `spec` that Patroni takes from the DCS only (what a resize patches)."""
    return _split_parameters(spec, paths)[1]


def _split_parameters(spec: ClusterSpec, paths: NodePaths) -> tuple[dict[str, str], dict[str, Any]]:
    """(local parameters, DCS parameters) for `spec`: engine-managed settings, then the
    memory/CPU tuning, then the user's overrides (which may not touch managed settings)."""
    try:
        tuned: dict[str, Any] = dict(tuning.settings_for(spec.memory_mb, spec.cpu))
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    overrides = pg.validated_overrides(spec.settings)
    for name in overrides:
        if name in PATRONI_MANAGED:
            raise EngineError(f"setting {name!r} is managed by Patroni and cannot be overridden")
    audit = audit_available(spec.version)
    if "shared_preload_libraries" in overrides:
        overrides["shared_preload_libraries"] = pg.with_required_preload(
            overrides["shared_preload_libraries"], audit
        )
    merged: dict[str, Any] = {
        "unix_socket_directories": str(paths.socket),
        "unix_socket_permissions": "0700",
        "password_encryption": "scram-sha-256",
        "shared_preload_libraries": pg.with_required_preload(pg.REQUIRED_PRELOAD, audit),
        # pg_rewind needs hint-bit changes in the WAL when checksums are off.
        "wal_log_hints": "on",
        "logging_collector": "on",
        "log_destination": "jsonlog",
        "log_directory": str(paths.log),
        "log_filename": "postgresql-%Y-%m-%d_%H%M%S.log",
        "log_timezone": "UTC",  # node_logs() parses timestamps as UTC
        "log_rotation_size": "10MB",
        "log_rotation_age": "1d",
        **LOCK_LOGGING,
        **signal_settings(audit),  # what threat detection reads (postgres.config.SIGNAL_LOGGING)
        **tuned,
        **overrides,
    }
    connections = int(merged["max_connections"])
    merged["max_connections"] = str(max(PATRONI_MIN_MAX_CONNECTIONS, connections))
    local = {k: v for k, v in merged.items() if k not in DCS_ONLY_PARAMETERS}
    dcs = {k: v for k, v in merged.items() if k in DCS_ONLY_PARAMETERS}
    return local, dcs


def render(
    spec: ClusterSpec,
    node: NodeSpec,
    paths: NodePaths,
    host: str,
    etcd_endpoint: str,
    tls: TlsFiles | None = None,
    blocked: list[str] | None = None,
) -> dict[str, Any]:
    """patroni.yml for `node` of `spec`, as a dict; TLS on with the engine's certificate when
    `tls` is given (TCP clients are then admitted over TLS only, `hostssl`)."""
    bin_dir = pg.bin_dir_for(spec.version)
    net = ipaddress.ip_address(host)
    cidr = f"{host}/{32 if net.version == 4 else 128}"
    protocol, hosts = etcd_hosts(etcd_endpoint)
    local, dcs_parameters = _split_parameters(spec, paths)
    if tls is not None:
        local.update(pg.ssl_settings(tls))
    tcp = "hostssl" if tls is not None else "host"
    return {
        "scope": spec.cluster_id,
        "namespace": NAMESPACE,
        "name": node.node_id,
        # Patroni rotates its own log; patroni.out only catches what happens before that.
        "log": {"dir": str(paths.root), "file_num": 4, "file_size": 10 * 1024 * 1024, "level": "INFO"},
        "restapi": {
            "listen": f"{host}:{node.rest_port}",
            "connect_address": f"{host}:{node.rest_port}",
        },
        "etcd3": {"hosts": hosts, "protocol": protocol},
        "bootstrap": {
            "dcs": {
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
                **replication_flags(spec.replication_mode),
                "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": dcs_parameters},
                **standby_cluster(spec),
            },
            # initdb takes ~1 s here; its fsync is kept: the result is a live primary, not a
            # throwaway template.
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
        },
        "postgresql": {
            "listen": f"{host}:{node.port}",
            "connect_address": f"{host}:{node.port}",
            "data_dir": str(paths.data),
            "bin_dir": str(bin_dir),
            "pgpass": str(paths.pgpass),
            # Patroni administers its own server over the private socket (trust below).
            "use_unix_socket": True,
            "parameters": local,
            "pg_hba": [
                f"local all {SUPERUSER} trust",
                # As on a single server: base backups (Barman's pg_basebackup) over the socket.
                f"local replication {SUPERUSER} trust",
                f"{tcp} replication {REPLICATION_USER} {cidr} scram-sha-256",
                # Client addresses refused (threat mitigations), before the password line.
                *hba_rejects(blocked or []),
                f"{tcp} all all {cidr} scram-sha-256",
            ],
            # A fast checkpoint: otherwise pg_basebackup waits for a spread one.
            "basebackup": [{"checkpoint": "fast"}],
            # A node that cannot rewind or has diverged is re-cloned rather than left down.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def standby_cluster(spec: ClusterSpec) -> dict[str, Any]:
    """Patroni's standby_cluster section for a cluster that follows an upstream (its leader
    copies the upstream with pg_basebackup, as the replication user, then streams from its
    slot), or nothing. Only read at bootstrap; promotion removes it from the DCS."""
    if spec.standby_of is None:
        return {}
    up = spec.standby_of
    return {
        "standby_cluster": {
            "host": up.host,
            "port": up.port,
            "primary_slot_name": up.slot,
            "create_replica_methods": ["basebackup"],
        }
    }


def hba_rejects(blocked: list[str]) -> list[str]:
    """The pg_hba lines refusing the blocked client addresses (as a single server's)."""
    return [" ".join(line.split()) for line in reject_lines(blocked)]


def with_blocked(text: str, blocked: list[str]) -> str | None:
    """patroni.yml `text` with the reject lines of `blocked` in place of any before, or None
    when it has exactly those."""
    config = yaml.safe_load(text)
    hba = [line for line in config["postgresql"]["pg_hba"] if not line.endswith(" reject")]
    at = next((i for i, line in enumerate(hba) if " all all " in f" {line} "), len(hba))
    wanted = hba[:at] + hba_rejects(blocked) + hba[at:]
    if wanted == config["postgresql"]["pg_hba"]:
        return None
    config["postgresql"]["pg_hba"] = wanted
    return dump(config)


def has_tls(text: str) -> bool:
    """Whether patroni.yml `text` runs its node with TLS: ssl on, and no plaintext TCP line."""
    config = yaml.safe_load(text)
    postgresql = config.get("postgresql") or {}
    parameters = postgresql.get("parameters") or {}
    plaintext = [line for line in postgresql.get("pg_hba") or [] if str(line).split()[:1] == ["host"]]
    return str(parameters.get("ssl")) == "on" and not plaintext


def with_signals(text: str, version: str) -> str | None:
    """patroni.yml `text` (as an earlier version wrote it) with the signal settings its local
    parameters lack, and pgaudit preloaded where installed; None when it has them."""
    config = yaml.safe_load(text)
    audit = audit_available(version)
    parameters = dict(config["postgresql"].get("parameters") or {})
    wanted = {**signal_settings(audit), **parameters}
    wanted["shared_preload_libraries"] = pg.with_required_preload(
        str(parameters.get("shared_preload_libraries") or ""), audit
    )
    if wanted == parameters:
        return None
    config["postgresql"]["parameters"] = wanted
    return dump(config)


def dump(config: dict[str, Any]) -> str:
    return "# Managed by pgfleet: rewritten on every provision. Do not edit.\n" + yaml.safe_dump(
        config, sort_keys=False, default_flow_style=False
    )


def read_ports(config_file: Path) -> tuple[int, int]:
    """(PostgreSQL port, REST port) of a provisioned node, from its patroni.yml."""
    try:
        config = yaml.safe_load(config_file.read_text())
        pg_port = int(config["postgresql"]["listen"].rsplit(":", 1)[1])
        rest_port = int(config["restapi"]["listen"].rsplit(":", 1)[1])
    except (OSError, ValueError, KeyError, TypeError, IndexError, yaml.YAMLError) as exc:
        raise EngineError(f"cannot read ports from {config_file}: {exc}") from exc
    return pg_port, rest_port


def with_etcd(text: str, etcd_endpoint: str) -> str | None:
    """The patroni.yml `text` pointed at the etcd of `etcd_endpoint`, or None when it already
    is. (Homes from before the local etcd left Debian's ports 2379/2380 name the old port.)"""
    config = yaml.safe_load(text)
    protocol, hosts = etcd_hosts(etcd_endpoint)
    wanted = {"hosts": hosts, "protocol": protocol}
    if config.get("etcd3") == wanted:
        return None
    return dump({**config, "etcd3": wanted})
