"""Running data-plane programs as the right OS user, in a clean environment and process group.

PostgreSQL refuses to run as root. When the control plane runs as root, every PostgreSQL,
Patroni and pgBackRest command runs as the `postgres` OS user through `runuser`; otherwise it
runs as the current user. Files those programs own are created through the same path.

Data-plane programs never see the control plane's environment (its AWS credentials, its
settings): they get `child_env`, a short allow-list plus what the caller passes. Each command
runs in its own process group, so a timeout kills everything it started (runuser, the program,
the program's children), not only the runuser in front of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pgfleet.core.errors import EngineError

log = logging.getLogger(__name__)

DATA_PLANE_USER = "postgres"
# What a data-plane program inherits from the control plane's environment; nothing else.
INHERITED_ENV = ("PATH", "TZ", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def running_as_root() -> bool:
    return os.geteuid() == 0


def data_plane_user() -> str:
    """The OS user that owns data directories and runs servers."""
    return DATA_PLANE_USER if running_as_root() else pwd.getpwuid(os.geteuid()).pw_name


def data_plane_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(data_plane_user())
    return entry.pw_uid, entry.pw_gid


def as_data_plane_user(argv: Sequence[str]) -> list[str]:
    """Wrap a command so it runs as the data-plane user."""
    if running_as_root():
        return ["runuser", "-u", DATA_PLANE_USER, "--", *argv]
    return list(argv)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a data-plane program: PATH, TZ and TMPDIR from the control plane's,
    a UTF-8 C locale, and `extra`. Credentials (AWS_*), tokens and pgfleet's own settings are
    never passed on: a server, an archive_command or a dump has no business with them."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env["LANG"] = "C.UTF-8"
    env.update(extra or {})
    return env


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill the process group `proc` leads (it was started with `start_new_session`): the
    program and every child it started that did not leave the group. Before `proc` is
    reaped its pid cannot be reused, so only its own group is ever signalled."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    cwd: str | Path | None = None,
    nice: int = 0,
) -> subprocess.CompletedProcess[str]:
    """Run a data-plane command as the data-plane user and return its result.

    `nice` lowers the CPU priority of background work (backups) below the work a user waits
    for (a create, a restore).

    The command gets `child_env(env)` and its own process group: when it outlives `timeout`,
    the whole group is killed (pg_dump or pgBackRest as well as the runuser running it) and
    EngineError says so. Raises EngineError with the command's stderr when it fails and `check`
    is true. Never pass secrets on the command line: they would show in `ps`; use `env` or files.
    """
    full = as_data_plane_user(argv)
    if nice:
        full = ["nice", "-n", str(int(nice)), *full]
    name = Path(argv[0]).name
    with subprocess.Popen(
        full,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
        cwd=cwd,
        start_new_session=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            kill_group(child)
            raise EngineError(f"{name} timed out after {timeout:.0f}s; its processes were killed") from exc
        except BaseException:
            kill_group(child)
            raise
    proc = subprocess.CompletedProcess(full, child.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise EngineError(f"{name} failed ({proc.returncode}): {' '.join(detail)}")
    return proc


def make_owned_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and parents) owned by the data-plane user with `mode`."""
    path.mkdir(parents=True, exist_ok=True)
    if running_as_root():
        uid, gid = data_plane_ids()
        os.chown(path, uid, gid)
    path.chmod(mode)
    return path


def ensure_traversable(path: Path) -> None:
    """Make sure the data-plane user can reach `path` by granting traverse (x) permission on
    ancestors that deny it. Only needed as root, where PGFLEET_HOME may sit under /root."""
    if not running_as_root():
        return
    for ancestor in [*reversed(path.parents), path]:
        if not ancestor.exists():
            break
        mode = ancestor.stat().st_mode
        if not mode & 0o001:
            log.warning("granting traverse permission on %s so the postgres user can reach it", ancestor)
            ancestor.chmod(mode | 0o001)


def write_owned_file(path: Path, content: str, mode: int = 0o600) -> None:
    """Write a file owned by the data-plane user (atomically: write then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    if running_as_root():
        uid, gid = data_plane_ids()
        os.chown(tmp, uid, gid)
    os.replace(tmp, path)


def spawn_daemon(
    program: Sequence[str],
    directory: Path,
    name: str,
    *,
    read_pid: Callable[[], int | None],
    tail: Callable[[], str],
    what: str,
    timeout: float,
) -> tuple[int, subprocess.Popen[Any]]:
    """Start `program` as the data-plane user in its own session, writing its pid to
    `<directory>/<name>.pid` (a shell wrapper does, then execs it) and its output to
    `<name>.out`; wait until `read_pid` sees it. Returns the pid and the child (the caller
    keeps it, so that it is reaped). EngineError, with the output's tail, when it exits or
    does not start in `timeout` seconds."""
    pid_file = directory / f"{name}.pid"
    pid_file.unlink(missing_ok=True)
    wrapper = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(pid_file)]
    argv = as_data_plane_user([*wrapper, *program])
    fd = os.open(directory / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if running_as_root():
        os.fchown(fd, *data_plane_ids())
    with os.fdopen(fd, "ab") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=directory,
            env=child_env(), start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while (pid := read_pid()) is None:
        if child.poll() is not None:
            raise EngineError(f"{what} exited with {child.returncode}: {tail()}")
        if time.monotonic() > deadline:
            raise EngineError(f"{what} did not start: {tail()}")
        time.sleep(0.02)
    return pid, child
