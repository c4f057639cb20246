"""Poolers of the local engine: one PgBouncer (Debian `pgbouncer`) per server.

Layout under the engine's home:

    poolers/<server_id>/pgbouncer.ini   the configuration (no client secret)
    poolers/<server_id>/userlist.txt    the auth_user's password only, readable by the data-plane user alone
    poolers/<server_id>/pgbouncer.pid   the process' pid (written by the wrapper that execs it)
    poolers/<server_id>/pgbouncer.log   PgBouncer's log

PgBouncer runs in the foreground as the data-plane user, started the way HAProxy is (a tiny
shell writes its own pid and execs PgBouncer, detached in its own session), listens on the
engine host's TCP port only (no Unix socket), and authenticates clients with SCRAM: their
secrets come from the server through `auth_user` and `auth_query`, and PgBouncer logs in to
the server with the client's own SCRAM keys (pass-through), so no client password is kept here.
A changed configuration is applied with SIGHUP (PgBouncer re-reads it, pools keep running);
a changed port needs a restart.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.tls import TlsFiles
from pgfleet.core.errors import EngineError
from pgfleet.ports.pooler import Pooler, PoolerSpec, PoolerState

PGBOUNCER = "/usr/sbin/pgbouncer"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# The auth_query runs on a server connection of its own (as auth_user), counted against
# max_db_connections: without room for it, each login would evict a pooled connection.
LOOKUP_CONNECTIONS = 1
SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9_.$-]+$")

_children: dict[int, subprocess.Popen[bytes]] = {}


def _plain(value: str, what: str) -> str:
    if not SAFE_VALUE_RE.match(value):
        raise EngineError(f"{what} {value!r} cannot be written to pgbouncer.ini")
    return value


def _tls_lines(tls: TlsFiles | None) -> str:
    """TLS both ways when the engine has its certificates: clients that ask for it get it (the
    server's certificate, so the same CA verifies both: pooler URIs ask, with verify-full, for
    servers whose build has TLS), and to the server whenever its build has it (the hop is on
    the engine host's loopback; a server without TLS, the embedded 18, is reached in plain)."""
    if tls is None:
        return ""
    return (
        f"client_tls_sslmode = allow\nclient_tls_cert_file = {tls.server_cert}\n"
        f"client_tls_key_file = {tls.server_key}\nserver_tls_sslmode = prefer\n"
        f"server_tls_ca_file = {tls.ca_cert}\n"
    )


def render(spec: PoolerSpec, host: str, directory: Path, tls: TlsFiles | None = None) -> str:
    """pgbouncer.ini for `spec`: the application database only, on `host`:`spec.port`."""
    database = _plain(spec.database, "database")
    if any(ch in spec.auth_query for ch in "\n\r\0"):
        raise EngineError("auth_query must be one line")
    return f"""; Managed by pgfleet: rewritten on every configure. Do not edit.
; server {spec.server_id}
[databases]
{database} = host={_plain(spec.backend_host, "host")} port={int(spec.backend_port)} dbname={database}

[pgbouncer]
listen_addr = {_plain(host, "host")}
listen_port = {int(spec.port)}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {directory / "userlist.txt"}
auth_user = {_plain(spec.auth_user, "auth_user")}
auth_query = {spec.auth_query}
pool_mode = {spec.pool_mode}
default_pool_size = {int(spec.default_pool_size)}
reserve_pool_size = {int(spec.reserve_pool_size)}
max_client_conn = {int(spec.max_client_connections)}
max_db_connections = {int(spec.default_pool_size) + int(spec.reserve_pool_size) + LOOKUP_CONNECTIONS}
ignore_startup_parameters = extra_float_digits
logfile = {directory / "pgbouncer.log"}
syslog = 0
log_connections = 0
log_disconnections = 0
{_tls_lines(tls)}"""


def _userlist(spec: PoolerSpec) -> str:
    password = spec.auth_password.replace('"', '""')
    return f'"{spec.auth_user}" "{password}"\n'


class LocalPgBouncer(Pooler):
    """The poolers under `home` (one PgBouncer per server) on `host`."""

    def __init__(self, home: Path, host: str = "127.0.0.1") -> None:
        self._root = Path(home) / "poolers"
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    def _tls(self) -> TlsFiles | None:
        """The engine's certificates (pgfleet.adapters.engines.local.tls), once it made them."""
        directory = self._root.parent / "tls"
        files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
        return (
            files if all(p.exists() for p in (files.ca_cert, files.server_cert, files.server_key)) else None
        )

    def _dir(self, server_id: str) -> Path:
        return self._root / _plain(server_id, "server id")

    def _config(self, server_id: str) -> Path:
        return self._dir(server_id) / "pgbouncer.ini"

    def configured_port(self, server_id: str) -> int | None:
        with contextlib.suppress(OSError):
            match = re.search(r"^listen_port = (\d+)$", self._config(server_id).read_text(), re.MULTILINE)
            return int(match.group(1)) if match else None
        return None

    def pid(self, server_id: str) -> int | None:
        """The running PgBouncer's pid, or None (a stale pid file is not believed)."""
        try:
            pid = int((self._dir(server_id) / "pgbouncer.pid").read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and os.fsencode(self._config(server_id)) in argv else None

    def server_ids(self) -> list[str]:
        if not self._root.exists():
            return []
        return sorted(p.name for p in self._root.iterdir() if (p / "pgbouncer.ini").exists())

    def state(self, server_id: str) -> PoolerState:
        port = self.configured_port(server_id)
        if port is None:
            return PoolerState(exists=False, running=False, reason="no pooler configured")
        pid = self.pid(server_id)
        if pid is None:
            return PoolerState(True, False, None, port, "pgbouncer is not running")
        if not _listens(self._host, port):
            return PoolerState(
                True, False, pid, port, f"pgbouncer {pid} does not accept connections on {port}"
            )
        return PoolerState(True, True, pid, port, f"pgbouncer {pid} listens on {self._host}:{port}")

    def configure(self, spec: PoolerSpec) -> str:
        if not Path(PGBOUNCER).exists():
            raise EngineError(f"{PGBOUNCER} is missing: install the pgbouncer package (make deps)")
        directory = process.make_owned_dir(self._dir(spec.server_id), 0o700)
        process.ensure_traversable(directory)
        config = self._config(spec.server_id)
        wanted = render(spec, self._host, directory, self._tls())
        current = _read(config)
        userlist = directory / "userlist.txt"
        users = _userlist(spec)
        same_users = _read(userlist) == users
        running = self.pid(spec.server_id)
        old_port = self.configured_port(spec.server_id)
        if running is not None and current == wanted and same_users:
            return f"pgbouncer {running} already serves {spec.database} on {self._host}:{spec.port} ({spec.pool_mode} pooling)"
        if running is not None and old_port != spec.port:
            self.stop(spec.server_id)
            running = None
        process.write_owned_file(userlist, users, 0o600)
        process.write_owned_file(config, wanted, 0o600)
        if running is not None:
            os.kill(running, signal.SIGHUP)
            self._wait_listening(spec.server_id, spec.port, running)
            how = f"configuration reloaded (pgbouncer {running})"
        else:
            running = self._spawn(spec.server_id, spec.port)
            how = f"pgbouncer {running} started"
        return (
            f"{self._host}:{spec.port} pools {spec.database} of {spec.backend_host}:{spec.backend_port} "
            f"({spec.pool_mode}, pool {spec.default_pool_size}+{spec.reserve_pool_size}, "
            f"{spec.max_client_connections} clients); {how}"
        )

    def start(self, server_id: str) -> str:
        port = self.configured_port(server_id)
        if port is None:
            raise EngineError(f"no pooler is configured for {server_id}")
        running = self.pid(server_id)
        if running is not None:
            return f"pgbouncer {running} already runs on {self._host}:{port}"
        return f"pgbouncer {self._spawn(server_id, port)} started on {self._host}:{port}"

    def _spawn(self, server_id: str, port: int) -> int:
        pid, child = process.spawn_daemon(
            [PGBOUNCER, str(self._config(server_id))], self._dir(server_id), "pgbouncer",
            read_pid=lambda: self.pid(server_id), tail=lambda: self.tail(server_id),
            what=f"pgbouncer for {server_id}", timeout=START_TIMEOUT,
        )  # fmt: skip
        _children[child.pid] = child
        self._wait_listening(server_id, port, pid)
        return pid

    def _wait_listening(self, server_id: str, port: int, pid: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listens(self._host, port):
            if not _alive(pid):
                raise EngineError(f"pgbouncer for {server_id} stopped: {self.tail(server_id)}")
            if time.monotonic() > deadline:
                raise EngineError(
                    f"pgbouncer for {server_id} does not listen on {self._host}:{port}: {self.tail(server_id)}"
                )
            time.sleep(0.02)

    def stop(self, server_id: str, remove: bool = False) -> str:
        pid = self.pid(server_id)
        if pid is not None:
            # SIGINT: PgBouncer's "safe shutdown" waits for clients; SIGTERM closes them now.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self._dir(server_id), ignore_errors=True)
        what = f"pgbouncer {pid} stopped" if pid is not None else "pgbouncer was not running"
        return f"pooler of {server_id}: {what}{', removed' if remove else ''}"

    def tail(self, server_id: str, lines: int = 4) -> str:
        found: list[str] = []
        for name in ("pgbouncer.out", "pgbouncer.log"):
            with contextlib.suppress(OSError):
                found += (
                    (self._dir(server_id) / name).read_text(errors="replace").strip().splitlines()[-lines:]
                )
        return " | ".join(found[-lines:]) or "(no output)"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _listens(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    for child_pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[child_pid]
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
