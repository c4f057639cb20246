"""Every data-plane command line of a single server is built here."""

from __future__ import annotations

from pathlib import Path

from pgfleet.adapters.engines.local.sql import ADMIN_USER

PG_CTL_TIMEOUT_S = 60


def initdb_argv(bin_dir: Path, data: Path, locale: str) -> list[str]:
    # --no-sync: a template is copied, never run, and a crash mid-initdb leaves only a temp
    # directory that the next attempt removes.
    return [
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "--no-sync",
        "-U",
        ADMIN_USER,
        "--encoding=UTF8",
        f"--locale={locale}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]


def copy_argv(source: Path, target: Path) -> list[str]:
    return ["cp", "-a", str(source), str(target)]


def pg_ctl_argv(
    bin_dir: Path, action: str, data: Path, *, log_file: Path | None = None, mode: str = ""
) -> list[str]:
    argv = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", str(PG_CTL_TIMEOUT_S)]
    if log_file is not None:
        argv += ["-l", str(log_file)]
    if mode:
        argv += ["-m", mode]
    return [*argv, action]


def pg_basebackup_argv(bin_dir: Path, target: Path, socket: Path, port: int, slot: str) -> list[str]:
    # -X stream through the standby's own slot: the WAL the copy needs, and everything after
    # it, stays on the source until the standby has it. -w: never prompt for a password.
    return [
        str(bin_dir / "pg_basebackup"),
        "-D",
        str(target),
        "-h",
        str(socket),
        "-p",
        str(port),
        "-U",
        ADMIN_USER,
        "-X",
        "stream",
        "-S",
        slot,
        "--checkpoint=fast",
        "-w",
    ]
