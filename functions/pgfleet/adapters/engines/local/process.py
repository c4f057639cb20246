"""Running data-plane programs as the right OS user.

PostgreSQL refuses to run as root. When the control plane runs as root, every PostgreSQL,
Patroni and pgBackRest command runs as the `postgres` OS user through `runuser`; otherwise it
runs as the current user. Files those programs own are created through the same path.
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from pgfleet.core.errors import EngineError

log = logging.getLogger(__name__)

DATA_PLANE_USER = "postgres"


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


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a data-plane command as the data-plane user and return its result.

    Raises EngineError with the command's stderr when it fails and `check` is true. Never
    pass secrets on the command line: they would show in `ps`; use `env` or files.
    """
    full = as_data_plane_user(argv)
    run_env = dict(os.environ)
    if env:
        run_env.update(env)
    try:
        proc = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, env=run_env, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{Path(argv[0]).name} timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise EngineError(f"{Path(argv[0]).name} failed ({proc.returncode}): {' '.join(detail)}")
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
