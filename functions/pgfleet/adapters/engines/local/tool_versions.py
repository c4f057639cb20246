"""The versions of the satellite programs installed on this host (PgBouncer, pgBackRest,
Patroni), read from the programs themselves, once per process per program file."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from pgfleet.adapters.engines.local.pgbouncer import PGBOUNCER

_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


@lru_cache(maxsize=8)
def _program_version(program: str, flag: str, mtime: float) -> str | None:
    try:
        out = subprocess.run([program, flag], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(out.stdout or out.stderr or "")
    return found.group(1) if out.returncode == 0 and found else None


def _version_of(program: str | None, flag: str) -> str | None:
    if not program or not Path(program).exists():
        return None
    return _program_version(program, flag, Path(program).stat().st_mtime)


def installed() -> dict[str, str]:
    """{"pgbouncer": "1.18.0", "pgbackrest": "2.45", "patroni": "4.1.5"}, without the
    programs that are not installed. Patroni runs from this interpreter (`python -m patroni`),
    so its version is the installed distribution's."""
    versions = {
        "pgbouncer": _version_of(PGBOUNCER, "--version"),
        "pgbackrest": _version_of(shutil.which("pgbackrest") or "/usr/bin/pgbackrest", "version"),
    }
    try:
        versions["patroni"] = importlib.metadata.version("patroni")
    except importlib.metadata.PackageNotFoundError:
        pass
    return {name: version for name, version in versions.items() if version}
