"""Where a server's files live, and what its data directory and postmaster.pid say."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

CONFIG_INCLUDE = "pgfleet.conf"
SERVER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes including the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class ServerPaths:
    """Where one server's files live."""

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
    def startup_log(self) -> Path:
        return self.log / "startup.log"

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"

    @property
    def config(self) -> Path:
        return self.data / CONFIG_INCLUDE


@dataclass(frozen=True)
class PidFile:
    """The parts of postmaster.pid the engine uses."""

    pid: int
    port: int | None
    status: str


def is_data_dir(path: Path) -> bool:
    """Whether `path` holds a complete data directory (it only ever appears by rename)."""
    return (path / "PG_VERSION").is_file() and (path / "global" / "pg_control").is_file()


def data_dir_version(data: Path) -> str:
    return (data / "PG_VERSION").read_text().strip()


def read_pidfile(path: Path) -> PidFile | None:
    """Parse postmaster.pid; None when absent or not yet written far enough to hold a pid."""
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return PidFile(pid=pid, port=port, status=status)


def remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)
