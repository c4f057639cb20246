"""Processes of one local Patroni node: start, stop, kill, and find them.

Patroni runs detached (its own session) as the data-plane user, through `runuser` when the
control plane is root. `runuser` forks, so the pid it returns is not Patroni's: a tiny shell
writes its own pid to patroni.pid and then execs Patroni, so the file names Patroni itself.
A pid is only believed while that process is alive and its command line names this node's
patroni.yml, so a reused pid is never mistaken for ours.

Everything that works for a node runs with its current directory inside the node's directory
(Patroni is started there, PostgreSQL chdirs into its data directory), which is how leftovers
of a killed node are found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

from pgfleet.adapters.engines.local import postgres as pg
from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.patroni_config import ClusterSecrets, NodePaths
from pgfleet.core.errors import EngineError

STOP_TIMEOUT = 60.0  # Patroni's fast shutdown of PostgreSQL, checkpoint included
KILL_WAIT = 10.0
PID_FILE_WAIT = 10.0

# Spawned runuser/Patroni processes, kept so they are reaped (not left as zombies) on exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 1 :].split()[0]


def alive(pid: int) -> bool:
    _reap()
    return _state(pid) not in (None, "Z", "X")


def _reachable_by_anyone(path: Path) -> bool:
    """Whether every directory above `path` can be traversed and `path` run by other users."""
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & 0o001 for p in real.parents) and bool(real.stat().st_mode & 0o001)


def patroni_command() -> tuple[list[str], dict[str, str]]:
    """(argv prefix, extra environment) that runs Patroni as the data-plane user.

    Patroni is this environment's package. As root, the interpreter may sit where the
    postgres user cannot reach it (a pyenv under /root): then a system interpreter of the
    same minor version runs it with this environment's site-packages on PYTHONPATH (same
    ABI, so compiled dependencies load), rather than opening up /root. Only when there is no
    such interpreter is traverse permission granted on the interpreter's directories.
    """
    if not process.running_as_root() or _reachable_by_anyone(Path(sys.executable)):
        return [sys.executable, "-m", "patroni"], {}
    packages = [p for p in site.getsitepackages() if Path(p).is_dir()]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if Path(candidate).is_file() and _reachable_by_anyone(Path(candidate)):
            if all(_reachable_by_anyone(Path(p)) for p in packages):
                # -S: without the system site-packages, whose older libraries would shadow
                # nothing in ours but fill the gaps with incompatible versions (pyOpenSSL).
                return [candidate, "-S", "-m", "patroni"], {"PYTHONPATH": os.pathsep.join(packages)}
    process.ensure_traversable(Path(os.path.realpath(sys.executable)).parent.parent)
    return [sys.executable, "-m", "patroni"], {}


def patroni_pid(paths: NodePaths) -> int | None:
    """The pid of this node's running Patroni, or None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not alive(pid):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if os.fsencode(paths.config) in argv else None


def spawn_patroni(paths: NodePaths, secrets: ClusterSecrets) -> int:
    """Start Patroni for `paths` detached, and return its pid once it has written it."""
    paths.pid_file.unlink(missing_ok=True)
    wrapper = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(paths.pid_file)]
    command, extra_env = patroni_command()
    argv = process.as_data_plane_user([*wrapper, *command, str(paths.config)])
    # A minimal environment: the control plane's own variables (cloud credentials, ...) have
    # no business in PostgreSQL's environment. Passwords travel here, never on argv.
    env = process.child_env({**extra_env, **secrets.env()})
    fd = os.open(paths.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if process.running_as_root():
        os.fchown(fd, *process.data_plane_ids())
    with os.fdopen(fd, "ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            env=env,
            start_new_session=True,  # not killed with the control plane's terminal or group
        )
    _children[child.pid] = child
    deadline = time.monotonic() + PID_FILE_WAIT
    while (pid := patroni_pid(paths)) is None:
        if child.poll() is not None:
            raise EngineError(f"Patroni of {paths.root.name} exited with {child.returncode}: {tail(paths)}")
        if time.monotonic() > deadline:
            raise EngineError(f"Patroni of {paths.root.name} did not start: {tail(paths)}")
        time.sleep(0.05)
    return pid


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def reload_patroni(paths: NodePaths) -> bool:
    """SIGHUP: Patroni rereads patroni.yml and applies what changed. False if not running."""
    pid = patroni_pid(paths)
    if pid is not None:
        _signal(pid, signal.SIGHUP)
    return pid is not None


def postmaster_pid(paths: NodePaths) -> int | None:
    pidfile = pg.read_pidfile(paths.data / "postmaster.pid")
    if pidfile is not None and pidfile.pid in pg.postgres_processes_in(paths.data):
        return pidfile.pid
    return None


def processes_under(root: Path) -> list[int]:
    """Live processes whose current directory is `root` or below it."""
    prefix = os.path.realpath(root)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if (cwd == prefix or cwd.startswith(prefix + "/")) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_everything_under(root: Path) -> list[int]:
    """kill -9 every process working under `root`, and wait until they are gone."""
    pids = processes_under(root) if root.exists() else []
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    if not _wait_gone(pids, KILL_WAIT):
        raise EngineError(f"processes {pids} under {root} survived SIGKILL")
    return pids


def kill_patroni(paths: NodePaths) -> bool:
    pid = patroni_pid(paths)
    if pid is None:
        return False
    _signal(pid, signal.SIGKILL)
    if not _wait_gone([pid], KILL_WAIT):
        raise EngineError(f"Patroni {pid} of {paths.root.name} survived SIGKILL")
    return True


def kill_node(paths: NodePaths) -> str:
    """kill -9 Patroni, then the postmaster, then anything left in the node's directory
    (orphaned backends, a pg_basebackup or pg_rewind in flight)."""
    killed = kill_patroni(paths)
    master = postmaster_pid(paths)
    if master is not None:
        _signal(master, signal.SIGKILL)
        killed = True
    return "killed" if kill_everything_under(paths.root) or killed else "not running"


def quit_postmaster(paths: NodePaths, grace: float = 5.0) -> None:
    """Immediate shutdown (SIGQUIT): the postmaster stops and reaps its own children, so
    fewer processes are left for an init that may not reap orphans (kill_node sweeps the
    rest)."""
    master = postmaster_pid(paths)
    if master is not None:
        _signal(master, signal.SIGQUIT)
        _wait_gone([master], grace)


def clear_orphans(paths: NodePaths) -> None:
    """Before starting Patroni: backends of a killed postmaster would keep its shared memory
    in use and make the new postmaster refuse to start, so they go. A live postmaster stays:
    Patroni takes over a running PostgreSQL."""
    if postmaster_pid(paths) is None and (orphans := pg.postgres_processes_in(paths.data)):
        for pid in orphans:
            _signal(pid, signal.SIGKILL)
        _wait_gone(orphans, KILL_WAIT)


def stop_node(paths: NodePaths) -> str:
    """SIGTERM Patroni (it stops PostgreSQL and releases the leader key), then make sure
    nothing of the node is left running."""
    if not paths.root.exists():
        return "not provisioned"
    pid = patroni_pid(paths)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        if not _wait_gone([pid], STOP_TIMEOUT):
            _signal(pid, signal.SIGKILL)
            _wait_gone([pid], KILL_WAIT)
    master = postmaster_pid(paths)
    if master is not None:
        # Patroni died without stopping PostgreSQL (it had been killed): stop it ourselves.
        _signal(master, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        if not _wait_gone([master], STOP_TIMEOUT):
            _signal(master, signal.SIGQUIT)  # "immediate"
    leftovers = kill_everything_under(paths.root)
    return "stopped" if pid is not None or master is not None or leftovers else "already stopped"


def tail(paths: NodePaths, lines: int = 4) -> str:
    """The end of Patroni's output and log, for error messages."""
    parts = []
    for path in (paths.output, paths.root / "patroni.log"):
        with contextlib.suppress(OSError):
            parts += path.read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(parts) or "(no output)"
