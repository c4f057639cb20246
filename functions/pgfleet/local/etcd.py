"""The etcd of the local stack: the DCS that Patroni clusters keep their leader keys in.

One single-member etcd (Debian `etcd-server`, 3.4) listening on 127.0.0.1 only, started
detached so it outlives the process that started it (the local stack may be restarted while
clusters keep running). Its state is a data directory, a pid file and a log file under
`data_dir`.

Patroni's `etcd3` client talks to etcd over the v3 JSON gateway (it asks `/version` and uses
`/v3` for a 3.4 cluster), so nothing beyond the client URL needs enabling. The helpers at the
bottom use the same gateway, with urllib, to list and delete the keys of a destroyed cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pgfleet.adapters.engines.local import process
from pgfleet.core.errors import EngineError

log = logging.getLogger(__name__)

ETCD_BIN = "/usr/bin/etcd"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 5.0

# Processes we spawned: kept so their exit status is collected (no zombies) when they stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


class EtcdServer:
    """One local etcd member.

    `data_dir` holds `member/` (etcd's data), `etcd.pid` and `etcd.log`. Ports are on
    127.0.0.1; nothing listens on another interface.
    """

    def __init__(self, data_dir: Path, client_port: int, peer_port: int) -> None:
        self.data_dir = Path(data_dir)
        self.client_port = client_port
        self.peer_port = peer_port

    @property
    def endpoint(self) -> str:
        """Client URL, e.g. "http://127.0.0.1:2379" (what Patroni's `etcd3.hosts` points at)."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "etcd.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "etcd.log"

    def pid(self) -> int | None:
        """The pid of our running etcd, or None. Checks that the pid is still an etcd serving
        this data directory, so a pid reused by another program is never taken for ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_our_etcd(pid, self.data_dir) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def healthy(self) -> bool:
        """Whether etcd answers `/health` with health true."""
        return probe(self.endpoint, HTTP_TIMEOUT)[0]

    def start(self) -> str:
        """Start etcd (if it is not running) and wait until it is healthy. Idempotent."""
        if self.is_running():
            self._wait_healthy()
            return "etcd already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            ETCD_BIN,
            "--name",
            "pgfleet",
            "--data-dir",
            str(self.data_dir / "member-data"),
            "--listen-client-urls",
            self.endpoint,
            "--advertise-client-urls",
            self.endpoint,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"pgfleet={peer}",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "pgfleet-local",
            # Patroni rewrites its leader and member keys every loop: without compaction the
            # history (and the backend file) would grow without bound.
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
            # Lower than the default (100000) so the in-memory raft log stays small.
            "--snapshot-count",
            "10000",
        ]
        # The data plane's clean environment: no control-plane credentials, no stray ETCD_*.
        env = process.child_env()
        # etcd refuses to start on architectures it does not officially support (arm, ...)
        # unless told to; amd64 and arm64 need nothing.
        if platform.machine() not in ("x86_64", "amd64", "aarch64", "arm64"):
            env["ETCD_UNSUPPORTED_ARCH"] = platform.machine()
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # survives the parent's terminal and signals
            )
        _children[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            self._wait_healthy(proc)
        except EngineError:
            self.stop()
            raise
        return "etcd started"

    def _wait_healthy(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if proc is not None and proc.poll() is not None:
                raise EngineError(f"etcd exited with {proc.returncode}: {_tail(self.log_file)}")
            time.sleep(0.1)
        raise EngineError(f"etcd did not become healthy in {START_TIMEOUT:.0f}s: {_tail(self.log_file)}")

    def stop(self) -> str:
        """Stop etcd (SIGTERM, then SIGKILL after a grace period). A stopped etcd is fine."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "etcd not running"
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_TIMEOUT):
            log.warning("etcd (pid %s) ignored SIGTERM; killing it", pid)
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        return "etcd stopped"


def probe(endpoint: str, timeout: float = HTTP_TIMEOUT) -> tuple[bool, str]:
    """Whether the etcd at `endpoint` answers `/health` with health true within `timeout`
    seconds, and what it said (or why it did not answer). Never raises."""
    url = endpoint.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
            answer = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503 with a body when etcd has no quorum
        return False, f"etcd at {endpoint} answered {exc.code}: {exc.read()[:200]!r}"
    except (OSError, ValueError) as exc:
        return False, f"etcd at {endpoint} is not reachable: {exc}"
    if answer.get("health") in ("true", True):
        return True, f"etcd at {endpoint} is healthy"
    return False, f"etcd at {endpoint} is not healthy: {answer.get('reason') or answer}"


# --- keys, over the v3 JSON gateway ----------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _prefix_range(prefix: str) -> dict[str, str]:
    """The etcd range covering every key that starts with `prefix`: range_end is the prefix
    with its last byte incremented (bytes 0xff are dropped first, as etcd's clients do)."""
    key = prefix.encode()
    if not key:
        raise ValueError("refusing an empty prefix: it would cover every key")
    end = bytearray(key)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return {"key": _b64(key), "range_end": _b64(b"\0")}
    end[-1] += 1
    return {"key": _b64(key), "range_end": _b64(bytes(end))}


def _post(endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        endpoint.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise EngineError(f"etcd {path} failed ({exc.code}): {exc.read()[:300]!r}") from exc
    except OSError as exc:
        raise EngineError(f"etcd at {endpoint} is not reachable: {exc}") from exc


def list_keys(endpoint: str, prefix: str) -> list[str]:
    """Every key under `prefix` (keys only, no values)."""
    body = {**_prefix_range(prefix), "keys_only": True}
    resp = _post(endpoint, "/v3/kv/range", body)
    return [base64.b64decode(kv["key"]).decode() for kv in resp.get("kvs", [])]


def delete_prefix(endpoint: str, prefix: str) -> int:
    """Delete every key under `prefix`; returns how many were deleted. Idempotent."""
    resp = _post(endpoint, "/v3/kv/deleterange", _prefix_range(prefix))
    return int(resp.get("deleted", 0))


def delete_key(endpoint: str, key: str) -> int:
    """Delete one key; returns 1 if it existed, else 0."""
    resp = _post(endpoint, "/v3/kv/deleterange", {"key": _b64(key.encode())})
    return int(resp.get("deleted", 0))


# --- process helpers -------------------------------------------------------------------------


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def _alive(pid: int) -> bool:
    _reap()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name; a zombie has already exited.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_our_etcd(pid: int, data_dir: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"etcd") and str(data_dir / "member-data").encode() in argv


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
