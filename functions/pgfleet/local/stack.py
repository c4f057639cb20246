"""`pgfleet up` / `pgfleet down`: the local stack's processes.

Each service runs detached (its own session, so it outlives the shell that started it) with
a pid file under PGFLEET_HOME/run and a log under PGFLEET_HOME/logs. `up` starts what is not
running and waits until each answers, so running it twice is harmless; `down` stops what `up`
started, data-plane servers included, and leaves every byte of state in PGFLEET_HOME.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgfleet.core.settings import Settings, get_settings
from pgfleet.local.etcd import EtcdServer


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    ready: Callable[[Settings], bool]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback only)
            return bool(resp.status < 500)
    except Exception as exc:
        return getattr(exc, "code", 500) < 500


def services(settings: Settings) -> list[Service]:
    py = sys.executable
    return [
        Service(
            "aws",
            [py, "-m", "pgfleet.local.aws", "--host", "127.0.0.1", "--port", str(settings.aws_port),
             "--state-dir", str(settings.home / "aws")],
            lambda s: _http_ok(f"http://127.0.0.1:{s.aws_port}/moto-api/"),
        ),
        Service(
            "etcd",
            [],  # managed by pgfleet.local.etcd (its own pid file and readiness check)
            lambda s: _etcd(s).healthy(),
        ),
        Service("runtime", [py, "-m", "pgfleet.local.runtime"], lambda s: True),
        Service(
            "gateway",
            [py, "-m", "pgfleet.local.gateway"],
            lambda s: _http_ok(f"http://127.0.0.1:{s.api_port}/api/health"),
        ),
    ]  # fmt: skip


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.runtime_dir / f"{name}.pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of a live service process, checked against its command line (pids are reused)."""
    try:
        pid = int(_pid_file(settings, name).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if "pgfleet.local" in cmdline else None


def _spawn(settings: Settings, service: Service) -> subprocess.Popen[bytes]:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115 (handed to the child)
    env = dict(os.environ, PGFLEET_HOME=str(settings.home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        service.argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    log.close()
    _pid_file(settings, service.name).write_text(str(proc.pid))
    return proc


def _wait_ready(
    settings: Settings, service: Service, proc: subprocess.Popen[bytes] | None, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None if proc else running_pid(settings, service.name) is None
        if exited:
            raise RuntimeError(f"{service.name} exited; see {settings.log_dir / (service.name + '.log')}")
        if service.ready(settings):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} did not become ready in {timeout:.0f}s")


def up(settings: Settings | None = None, say: Callable[[str], None] = print) -> None:
    settings = settings or get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    for service in services(settings):
        proc = None
        if service.name == "etcd":
            say(f"etcd: {_etcd(settings).start()}")
            continue
        if running_pid(settings, service.name):
            say(f"{service.name}: already running")
        else:
            proc = _spawn(settings, service)
            say(f"{service.name}: started (pid {proc.pid})")
        _wait_ready(settings, service, proc)
        if service.name == "aws":
            _prepare_aws(settings, say)


def _prepare_aws(settings: Settings, say: Callable[[str], None]) -> None:
    from pgfleet.adapters.bootstrap import ensure_resources
    from pgfleet.handlers.domains import platform_schedules
    from pgfleet.wiring import dependencies

    for line in ensure_resources(settings):
        say(f"  {line}")
    scheduler = dependencies().scheduler
    for schedule in platform_schedules():
        scheduler.put(schedule)
        say(f"  schedule {schedule.name}: {schedule.expression}")


def _terminate(pid: int, timeout: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down(settings: Settings | None = None, say: Callable[[str], None] = print) -> None:
    settings = settings or get_settings()
    # Stop accepting work first, then the data plane, then the metadata endpoint.
    for name in ("gateway", "runtime"):
        _stop_service(settings, name, say)
    for line in stop_data_plane(settings):
        say(line)
    say(f"etcd: {_etcd(settings).stop()}")
    _stop_service(settings, "aws", say)


def _stop_service(settings: Settings, name: str, say: Callable[[str], None]) -> None:
    pid = running_pid(settings, name)
    if pid is None:
        say(f"{name}: not running")
    else:
        _terminate(pid)
        say(f"{name}: stopped")
    _pid_file(settings, name).unlink(missing_ok=True)


def _etcd(settings: Settings) -> EtcdServer:
    return EtcdServer(settings.home / "etcd", settings.etcd_port, settings.etcd_peer_port)


def stop_data_plane(settings: Settings) -> list[str]:
    """Stop every PostgreSQL server and Patroni node of this home (their data stays).
    Cluster replicas stop before their primary, so no needless failover happens."""
    from pgfleet.adapters.engines.local.haproxy import HAProxyEndpoints
    from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
    from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine

    lines = []
    engine = LocalPostgresEngine(settings.data_dir)
    servers = settings.data_dir / "servers"
    # A directory being deleted (".<id>.deleting") belongs to a delete in progress, not a server.
    for server_dir in (
        sorted(p for p in servers.iterdir() if not p.name.startswith(".")) if servers.exists() else []
    ):
        try:
            if engine.state(server_dir.name).running:
                engine.stop(server_dir.name)
                lines.append(f"postgres {server_dir.name}: stopped")
        except Exception as exc:  # one server must not keep the rest (and the services) up
            lines.append(f"postgres {server_dir.name}: not stopped: {exc}")
    clusters = settings.data_dir / "clusters"
    if clusters.exists():
        patroni = LocalPatroniEngine(settings.data_dir, settings.etcd_endpoint)
        for cluster_dir in sorted(p for p in clusters.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                members = {m.node_id: m for m in patroni.members(cluster_dir.name)}
                nodes = sorted((p.parent.name for p in cluster_dir.glob("*/patroni.yml")),
                               key=lambda n: members[n].role == "primary" if n in members else False)  # fmt: skip
                for node_id in nodes:
                    patroni.stop_node(cluster_dir.name, node_id)
            except Exception as exc:
                lines.append(f"cluster {cluster_dir.name}: not stopped: {exc}")
                continue
            if nodes:
                lines.append(f"cluster {cluster_dir.name}: stopped {len(nodes)} node(s)")
    # Poolers (PgBouncer, performance connections/configure); reconcile starts them again at `up`.
    from pgfleet.adapters.engines.local.pgbouncer import LocalPgBouncer

    poolers = LocalPgBouncer(settings.data_dir, "127.0.0.1")
    for server_id in poolers.server_ids():
        try:
            if poolers.pid(server_id) is not None:
                lines.append(poolers.stop(server_id))
        except Exception as exc:
            lines.append(f"pooler of {server_id}: not stopped: {exc}")
    # Forwarded endpoints of migrated instances (HAProxy); reconcile starts them again at `up`.
    endpoints = HAProxyEndpoints(settings.data_dir.resolve(), "127.0.0.1")
    for port in endpoints.ports():
        try:
            if endpoints.pid(port) is not None:
                lines.append(endpoints.stop(port, remove=False))
        except Exception as exc:
            lines.append(f"forwarding of port {port}: not stopped: {exc}")
    return lines


def status(settings: Settings | None = None) -> dict[str, int | None]:
    settings = settings or get_settings()
    return {
        s.name: _etcd(settings).pid() if s.name == "etcd" else running_pid(settings, s.name)
        for s in services(settings)
    }
