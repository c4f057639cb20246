"""Forwarded endpoints: a host:port that reaches a Patroni cluster's current primary, served
by HAProxy (the usual Patroni set-up).

HAProxy runs in TCP mode and health-checks every node's Patroni REST API with `GET /primary`,
which answers 200 on the leader only (503 on replicas and on a standby leader). Connections
go to the node that answers; when the leader changes (switchover, failover) the old one is
marked down within two checks, its sessions are shut so clients reconnect, and new
connections reach the new leader. `balance first` with the leader listed first means that
even before the first checks have run, a connection reaches the leader.

Layout under the engine's home:

    endpoints/<port>/haproxy.cfg    the configuration (no secrets: health checks are unauthenticated GETs)
    endpoints/<port>/haproxy.pid    the master's pid (master-worker mode, foreground, detached)
    endpoints/<port>/admin.sock     the runtime API (`show stat`), for the data-plane user only
    endpoints/<port>/haproxy.out    HAProxy's own log: start, health-check transitions

HAProxy runs as the data-plane user, started like Patroni: a tiny shell writes its own pid and
execs HAProxy, so the pid file names the master, believed only while that process is alive
and its command line names this configuration. A changed configuration (nodes added or
removed) is checked with `haproxy -c` and applied with SIGUSR2: the master starts a new worker
and the old one finishes its sessions, so the endpoint never stops listening.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgfleet.adapters.engines.local import process
from pgfleet.core.errors import EngineError

HAPROXY = "/usr/sbin/haproxy"
CHECK_INTERVAL_MS = 300  # GET /primary on every node this often
FAST_INTERVAL_MS = 200  # while a node changes state
START_TIMEOUT = 15.0  # until it listens and one node passed its check
STOP_TIMEOUT = 10.0
# Idle client sessions are kept this long (a pooled connection sits idle between requests).
SESSION_TIMEOUT = "12h"

_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Backend:
    """One node HAProxy may forward to: its PostgreSQL port and its Patroni REST port."""

    name: str
    host: str
    port: int
    rest_port: int


def render(cluster_id: str, host: str, port: int, backends: Sequence[Backend], socket_path: Path) -> str:
    """HAProxy's configuration: `host:port` forwarded to whichever backend's Patroni says it
    is the primary. The first backend receives connections while every check is pending."""
    servers = "\n".join(f"    server {b.name} {b.host}:{b.port} check port {b.rest_port}" for b in backends)
    return f"""# pgfleet: {host}:{port} forwards to the primary of cluster {cluster_id}
# cluster {cluster_id}
global
    maxconn 4096
    log stdout format raw local0 info
    stats socket {socket_path} mode 600 level admin

defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 2s
    timeout client {SESSION_TIMEOUT}
    timeout server {SESSION_TIMEOUT}
    timeout check 1s

listen primary
    bind {host}:{port}
    balance first
    option httpchk
    http-check send meth GET uri /primary
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fastinter {FAST_INTERVAL_MS}ms downinter {CHECK_INTERVAL_MS}ms rise 1 fall 2 on-marked-down shutdown-sessions
{servers}
"""


class HAProxyEndpoints:
    """The forwarded endpoints under `home` (one HAProxy per port) on `host`."""

    def __init__(self, home: Path, host: str) -> None:
        self._root = Path(home) / "endpoints"
        self._host = host

    # -- files and processes --

    def _dir(self, port: int) -> Path:
        return self._root / str(int(port))

    def _config(self, port: int) -> Path:
        return self._dir(port) / "haproxy.cfg"

    def _socket(self, port: int) -> Path:
        return self._dir(port) / "admin.sock"

    def owner(self, port: int) -> str | None:
        """The cluster whose primary `port` forwards to, from its configuration; None if none."""
        try:
            for line in self._config(port).read_text().splitlines():
                if line.startswith("# cluster "):
                    return line.removeprefix("# cluster ").strip()
        except OSError:
            return None
        return None

    def pid(self, port: int) -> int | None:
        """The running master's pid, or None."""
        try:
            pid = int((self._dir(port) / "haproxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        for _ in range(10):  # the master re-executes itself once: its command line is briefly empty
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return None
            if argv != [b""] or not _alive(pid):
                break
            time.sleep(0.02)
        return pid if _alive(pid) and os.fsencode(self._config(port)) in argv else None

    def ports(self) -> list[int]:
        """Every port with an endpoint configured here."""
        if not self._root.exists():
            return []
        return sorted(
            int(p.name) for p in self._root.iterdir() if p.name.isdigit() and (p / "haproxy.cfg").exists()
        )

    # -- what the engine asks for --

    def forward(self, cluster_id: str, port: int, backends: Sequence[Backend]) -> str:
        """Make `port` forward to the primary among `backends` (the leader first). Idempotent:
        a running HAProxy with this configuration is left alone, a changed one is reloaded
        without closing the port, a stopped one is started. Returns once the port listens and
        a node passed its check. Raises EngineError when the port belongs to another cluster,
        HAProxy refuses the configuration, or it cannot listen (the port is taken)."""
        if not backends:
            raise EngineError(f"cluster {cluster_id} has no node to forward {self._host}:{port} to")
        owner = self.owner(port)
        if owner is not None and owner != cluster_id:
            raise EngineError(f"{self._host}:{port} already forwards to cluster {owner}")
        if not Path(HAPROXY).exists():
            raise EngineError(f"{HAPROXY} is missing: install the haproxy package (make deps)")
        directory = process.make_owned_dir(self._dir(port), 0o700)
        process.ensure_traversable(directory)
        config = self._config(port)
        wanted = render(cluster_id, self._host, port, backends, self._socket(port))
        running = self.pid(port)
        try:
            current = config.read_text()
        except OSError:
            current = None
        if running is not None and current == wanted:
            return f"{self._host}:{port} already forwards to the primary of {cluster_id} (haproxy {running})"
        # Rewritten by name order (the leader first) after a switchover, too: apply only
        # when the set of nodes changed, not their order.
        if (
            running is not None
            and current is not None
            and sorted(current.splitlines()) == sorted(wanted.splitlines())
        ):
            return f"{self._host}:{port} already forwards to the primary of {cluster_id} (haproxy {running})"
        if running is not None:
            self._write_checked(config, wanted)  # a running HAProxy keeps the old one if refused
            os.kill(running, signal.SIGUSR2)
            how = f"configuration reloaded (haproxy {running}): nodes {', '.join(b.name for b in backends)}"
        else:
            process.write_owned_file(config, wanted, 0o600)  # a refused one ends the start, with the reason
            running = self._spawn(port)
            how = f"haproxy {running} started"
        node = self._wait_forwarding(port, running)
        return f"{self._host}:{port} forwards to the primary of {cluster_id} ({node}); {how}"

    def _write_checked(self, config: Path, text: str) -> None:
        candidate = config.with_name("haproxy.cfg.new")
        process.write_owned_file(candidate, text, 0o600)
        result = process.run([HAPROXY, "-c", "-q", "-f", str(candidate)], timeout=30, check=False)
        if result.returncode != 0:
            candidate.unlink(missing_ok=True)
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise EngineError(f"haproxy refused the configuration: {' '.join(detail)}")
        os.replace(candidate, config)

    def _spawn(self, port: int) -> int:
        self._socket(port).unlink(missing_ok=True)
        pid, child = process.spawn_daemon(
            [HAPROXY, "-W", "-db", "-f", str(self._config(port))], self._dir(port), "haproxy",
            read_pid=lambda: self.pid(port), tail=lambda: self.tail(port),
            what=f"haproxy for port {port}", timeout=START_TIMEOUT,
        )  # fmt: skip
        _children[child.pid] = child
        return pid

    def _wait_forwarding(self, port: int, pid: int) -> str:
        """Until the port accepts connections and exactly one node passed its check."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            # Not pid(): the master re-executes itself once its worker runs (its command line
            # is briefly unreadable then).
            if not _alive(pid):
                raise EngineError(f"haproxy for port {port} stopped: {self.tail(port)}")
            up = self.up_nodes(port)
            if len(up) == 1 and _listens(self._host, port):
                return up[0]
            if time.monotonic() > deadline:
                raise EngineError(
                    f"{self._host}:{port} does not forward to one primary in {START_TIMEOUT:.0f}s "
                    f"(nodes passing the check: {up or 'none'}): {self.tail(port)}"
                )
            time.sleep(0.05)

    def up_nodes(self, port: int) -> list[str]:
        """The nodes whose last check passed (the primary), from the runtime API; [] when
        HAProxy does not answer."""
        rows = self._stat(port)
        return [
            r["svname"] for r in rows
            if r.get("svname") not in ("FRONTEND", "BACKEND") and r.get("status", "").startswith("UP")
            and r.get("check_status", "").startswith("L7OK")
        ]  # fmt: skip

    def _stat(self, port: int) -> list[dict[str, str]]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self._socket(port)))
                s.sendall(b"show stat\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError:
            return []
        text = b"".join(chunks).decode(errors="replace").lstrip("# ")
        return list(csv.DictReader(line for line in text.splitlines() if line.strip()))

    def stop(self, port: int, remove: bool = True) -> str:
        """Stop the HAProxy of `port` (its sessions end) and, with `remove`, delete its
        directory. Idempotent."""
        pid = self.pid(port)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self._dir(port), ignore_errors=True)
        what = "stopped" if pid is not None else "was not running"
        return f"forwarding of {self._host}:{port}: {what}{', removed' if remove else ''}"

    def tail(self, port: int, lines: int = 4) -> str:
        with contextlib.suppress(OSError):
            out = (self._dir(port) / "haproxy.out").read_text(errors="replace").strip().splitlines()
            return " | ".join(out[-lines:]) or "(no output)"
        return "(no output)"


def _listens(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    _reap()
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]
