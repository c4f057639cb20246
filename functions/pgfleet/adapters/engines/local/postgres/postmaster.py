"""The server's processes as /proc shows them: which are PostgreSQL working in a data
directory, whether one is alive, and killing what a dead postmaster left behind."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from pgfleet.adapters.engines.local.postgres.paths import ServerPaths, read_pidfile
from pgfleet.core.errors import EngineError

log = logging.getLogger(__name__)

# Stale-postmaster recovery: how long orphaned backends of a killed postmaster get to exit
# on their own before they are killed.
ORPHAN_GRACE_S = 5.0


def _proc_state_and_comm(pid: int) -> tuple[str, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 1 :].split()[0]
    return state, comm


def is_postgres_in(pid: int, data: Path) -> bool:
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
        if entry.name.isdigit() and is_postgres_in(int(entry.name), data):
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    info = _proc_state_and_comm(pid)
    return info is not None and info[0] not in ("Z", "X")


def running_pid(paths: ServerPaths) -> int | None:
    """The pid of the server's live postmaster, None when none runs."""
    pidfile = read_pidfile(paths.pidfile)
    if pidfile is not None and is_postgres_in(pidfile.pid, paths.data):
        return pidfile.pid
    return None


def kill(pids: list[int]) -> None:
    """SIGKILL `pids` and wait (5 s at most) until they are gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def clear_stale_postmaster(paths: ServerPaths) -> None:
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
            kill(orphans)
            if postgres_processes_in(paths.data):
                raise EngineError(f"processes {orphans} of a killed server still use {paths.data}")
            break
        time.sleep(0.1)
    paths.pidfile.unlink(missing_ok=True)


def clear_stale_socket_locks(socket_dir: Path) -> list[str]:
    """Remove the socket lock files (`.s.PGSQL.<port>.lock`) of a postmaster that is gone or a
    zombie, and their sockets. PostgreSQL refuses to start while a lock names a pid that
    `kill(pid, 0)` still finds, and a SIGKILLed postmaster stays a zombie until its parent
    (here often an init that reaps late) collects it. A lock of a live postgres is kept."""
    removed = []
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        seen = _proc_state_and_comm(pid)
        if seen is not None and seen[0] != "Z" and seen[1] == "postgres":
            continue
        with contextlib.suppress(OSError):
            lock.unlink()
            Path(str(lock)[: -len(".lock")]).unlink(missing_ok=True)
            removed.append(lock.name)
    if removed:
        log.info("removed stale socket lock(s) %s in %s", removed, socket_dir)
    return removed
