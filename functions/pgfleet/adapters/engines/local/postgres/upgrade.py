"""Major-version upgrade of one server's data directory with pg_upgrade.

Files below a server's root during an upgrade to version N:

    data                 the live data directory (the old version until the swap)
    data.upgrade-N       the new cluster: initdb of N, then filled by pg_upgrade
    data.before-N        the old data directory, kept after the swap as the way back

The swap is two renames, so at every moment `data` is one complete data directory of one
version. Until `finish` removes it, `data.before-N` lets `roll_back` put the old version back:
in copy mode always; in link mode (hard links, no second copy of the data) only while the new
server has never started, which pg_upgrade marks by renaming the old `global/pg_control` to
`pg_control.old` (the roll back renames it back). A link-mode upgrade that fails after the new
server started is rolled back from the backup taken before it, by the caller.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.sql

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.postgres.binaries import bin_dir_for
from pgfleet.adapters.engines.local.postgres.commands import PG_CTL_TIMEOUT_S, initdb_argv, pg_ctl_argv
from pgfleet.adapters.engines.local.postgres.paths import (
    ServerPaths,
    data_dir_version,
    is_data_dir,
    remove_tree,
)
from pgfleet.adapters.engines.local.sql import ADMIN_USER, AdminSocket, connect, first_line
from pgfleet.core.errors import EngineError

PG_UPGRADE_TIMEOUT_S = 3600
ANALYZE_TIMEOUT_S = 3600
# What pg_upgrade leaves in the new data directory when it fails: its logs.
OUTPUT_DIR = "pg_upgrade_output.d"


@dataclass(frozen=True)
class UpgradeDirs:
    paths: ServerPaths
    target: str

    @property
    def new(self) -> Path:
        return self.paths.root / f"data.upgrade-{self.target}"

    @property
    def kept(self) -> Path:
        return self.paths.root / f"data.before-{self.target}"

    @property
    def checkpoint_mark(self) -> Path:
        """The upgraded cluster's checkpoint when pg_upgrade finished (link mode's way back
        holds while it is unchanged: the new server has not run)."""
        return self.paths.root / f"upgrade-{self.target}.checkpoint"


def checksums_enabled(bin_dir: Path, data: Path) -> bool:
    """Whether `data` was initialised with data checksums (pg_controldata says)."""
    proc = process.run([str(bin_dir / "pg_controldata"), "-D", str(data)], timeout=30)
    match = re.search(r"^Data page checksum version:\s+(\d+)", proc.stdout, re.M)
    if match is None:
        raise EngineError(f"pg_controldata did not report the checksum setting of {data}")
    return match[1] != "0"


def latest_checkpoint(bin_dir: Path, data: Path) -> str:
    """pg_controldata's latest checkpoint location: it moves whenever the server has run."""
    proc = process.run([str(bin_dir / "pg_controldata"), "-D", str(data)], timeout=30)
    match = re.search(r"^Latest checkpoint location:\s+(\S+)", proc.stdout, re.M)
    if match is None:
        raise EngineError(f"pg_controldata did not report the latest checkpoint of {data}")
    return match[1]


def init_new_cluster(dirs: UpgradeDirs) -> str:
    """initdb of the target version, with the old cluster's checksum setting (pg_upgrade needs
    them to match; 18 turns checksums on by default). Rebuilt from scratch on every call."""
    old_bin = bin_dir_for(data_dir_version(dirs.paths.data))
    new_bin = bin_dir_for(dirs.target)
    remove_tree(dirs.new)
    argv = initdb_argv(new_bin, dirs.new, "C.UTF-8")
    if not checksums_enabled(old_bin, dirs.paths.data) and int(dirs.target) >= 18:
        argv.append("--no-data-checksums")
    started = time.monotonic()
    process.run(argv, timeout=300)
    return f"initdb of PostgreSQL {dirs.target} in {time.monotonic() - started:.1f}s"


def is_pristine(new: Path) -> bool:
    """Whether `new` is a complete initdb that no pg_upgrade has started to fill."""
    return is_data_dir(new) and not (new / OUTPUT_DIR).exists() and not (new / "postmaster.pid").exists()


def prepare(dirs: UpgradeDirs) -> str:
    """The new cluster, made while the old server still runs (initdb is downtime saved)."""
    if is_pristine(dirs.new):
        return f"new PostgreSQL {dirs.target} cluster already initialised"
    return init_new_cluster(dirs)


def pg_upgrade_argv(
    dirs: UpgradeDirs, port: int, *, link: bool, check: bool, new_port: int | None = None
) -> list[str]:
    old_bin = bin_dir_for(data_dir_version(dirs.paths.data))
    argv = [
        str(bin_dir_for(dirs.target) / "pg_upgrade"),
        "--old-bindir", str(old_bin),
        "--new-bindir", str(bin_dir_for(dirs.target)),
        "--old-datadir", str(dirs.paths.data),
        "--new-datadir", str(dirs.new),
        "--old-port", str(port),
        "--new-port", str(new_port or port),
        "--socketdir", str(dirs.paths.socket),
        "--username", ADMIN_USER,
        "--jobs", str(max(1, os.cpu_count() or 1)),
    ]  # fmt: skip
    if link:
        argv.append("--link")
    if check:
        argv.append("--check")
    return argv


def _problem_file(path: str, limit: int = 10) -> str:
    """The objects a failed check listed in its file ("In database: app  public.t.f")."""
    try:
        lines = [x.strip() for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def _findings(output: str) -> list[str]:
    """The failed checks pg_upgrade printed, one sentence each: the check's name, its
    explanation, and the objects it listed in its problem file."""
    lines = [line.rstrip() for line in output.splitlines()]
    found: list[str] = []
    for i, line in enumerate(lines):
        name = None
        if "failed check:" in line:
            name = line.split("failed check:", 1)[1].strip()
        elif line.endswith(" fatal") or line.endswith(" failed"):
            name = re.sub(r"\s{2,}\S+$", "", line).strip()
        if name is None:
            continue
        explanation: list[str] = []
        objects = ""
        for follow in lines[i + 1 :]:
            text = follow.strip()
            if text.startswith("Failure, exiting") or "failed check:" in follow or follow.endswith(" fatal"):
                break
            if text.startswith("/") and text.endswith(".txt"):
                objects = _problem_file(text)
            elif (
                text and not text.startswith("A list of the problem") and not text.endswith("checks failed:")
            ):
                explanation.append(text)
        sentence = f"{name}: {' '.join(explanation)}" if explanation else name
        found.append(f"{sentence} Objects: {objects}" if objects else sentence)
    if not found:
        tail = [x.strip() for x in lines if x.strip()][-3:]
        found.append(" ".join(tail) or "pg_upgrade failed without output")
    return found


def _free_port() -> int:
    """A loopback port free now, for the scratch new cluster pg_upgrade --check starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check(dirs: UpgradeDirs, port: int, *, link: bool, running: bool) -> list[str]:
    """`pg_upgrade --check` against the old server (live when `running`) and a scratch new
    cluster, which is removed again. Findings, one per failed check; empty when it passes."""
    init_new_cluster(dirs)
    try:
        proc = process.run(
            pg_upgrade_argv(dirs, port, link=link, check=True, new_port=_free_port() if running else None),
            timeout=600,
            check=False,
            cwd=dirs.paths.root,
        )
        # Read before the scratch cluster goes: the problem files are in it.
        return [] if proc.returncode == 0 else _findings(proc.stdout + "\n" + proc.stderr)
    finally:
        remove_tree(dirs.new)


# Attribute options no upstream PostgreSQL knows. Debian's 15.20 build stamps `pg_attver=<n>`
# on every column it creates; pg_dump carries attribute options into the schema that
# pg_upgrade restores, and PostgreSQL 18 refuses the unknown option ("unrecognized parameter
# "pg_attver""), failing the upgrade after its checks passed. 15 itself works the same
# without the stamp (it only re-stamps columns it writes).
FOREIGN_ATTRIBUTE_OPTIONS = ("pg_attver",)
STRIP_ATTRIBUTE_OPTIONS = (
    "UPDATE pg_catalog.pg_attribute SET attoptions = ("
    " SELECT CASE WHEN pg_catalog.count(*) = 0 THEN NULL ELSE pg_catalog.array_agg(o) END"
    " FROM pg_catalog.unnest(attoptions) AS o WHERE pg_catalog.split_part(o, '=', 1) <> ALL (%s))"
    " WHERE attoptions IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM pg_catalog.unnest(attoptions) AS o"
    " WHERE pg_catalog.split_part(o, '=', 1) = ANY (%s))"
)


def strip_foreign_options(dirs: UpgradeDirs, port: int) -> int:
    """Remove FOREIGN_ATTRIBUTE_OPTIONS from every database of the stopped old cluster: it is
    started on its private socket only (no TCP listener, so no client can create a column
    in between) and stopped again. Returns the number of columns changed."""
    bin_dir = bin_dir_for(data_dir_version(dirs.paths.data))
    log_file = dirs.paths.log / "pre-upgrade.log"
    # No synchronous standby to wait for: a Patroni primary's configuration names its
    # replicas (sync_strict keeps them named while they are stopped), and the UPDATE below
    # would wait for them forever.
    options = f"-c listen_addresses='' -c archive_mode=off -c synchronous_standby_names='' -p {port}"
    process.run(
        [*pg_ctl_argv(bin_dir, "start", dirs.paths.data, log_file=log_file)[:-1], "-o", options, "start"],
        timeout=2 * PG_CTL_TIMEOUT_S,
    )
    changed = 0
    try:
        address = AdminSocket(dirs.paths.socket, port)
        with connect(address) as conn:
            databases = [
                str(r[0])
                for r in conn.execute(
                    "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn"
                ).fetchall()
            ]
        names = list(FOREIGN_ATTRIBUTE_OPTIONS)
        for dbname in databases:
            with connect(address, dbname) as conn:
                changed += conn.execute(STRIP_ATTRIBUTE_OPTIONS, (names, names)).rowcount
    except psycopg.Error as exc:
        raise EngineError(f"removing attribute options before pg_upgrade failed: {first_line(exc)}") from exc
    finally:
        process.run(pg_ctl_argv(bin_dir, "stop", dirs.paths.data, mode="fast"), timeout=90)
    return changed


def run(dirs: UpgradeDirs, port: int, *, link: bool) -> str:
    """pg_upgrade from `data` into the new cluster, then the swap. The server must be stopped.
    Idempotent: an upgrade whose swap is done already (data is the target version and the old
    one is kept) returns at once; one that failed half way is started again from initdb."""
    if (
        is_data_dir(dirs.paths.data)
        and data_dir_version(dirs.paths.data) == dirs.target
        and dirs.kept.exists()
    ):
        return "already upgraded (data directory swapped)"
    old_control = dirs.paths.data / "global" / "pg_control.old"
    if old_control.exists():  # a link-mode run that died after pg_upgrade disabled the old cluster
        os.rename(old_control, dirs.paths.data / "global" / "pg_control")
    stripped = strip_foreign_options(dirs, port)
    if not is_pristine(dirs.new):
        init_new_cluster(dirs)
    started = time.monotonic()
    proc = process.run(
        pg_upgrade_argv(dirs, port, link=link, check=False),
        timeout=PG_UPGRADE_TIMEOUT_S,
        check=False,
        cwd=dirs.paths.root,
    )
    if proc.returncode != 0:
        findings = _findings(proc.stdout + "\n" + proc.stderr)
        if old_control.exists():
            os.rename(old_control, dirs.paths.data / "global" / "pg_control")
        raise EngineError("pg_upgrade failed: " + "; ".join(findings))
    took = time.monotonic() - started
    # The configuration pgfleet manages lives in the data directory: carry it over.
    for name in ("pg_hba.conf",):
        shutil.copy2(dirs.paths.data / name, dirs.new / name)
    process.write_owned_file(dirs.checkpoint_mark, latest_checkpoint(bin_dir_for(dirs.target), dirs.new))
    os.rename(dirs.paths.data, dirs.kept)
    os.rename(dirs.new, dirs.paths.data)
    mode = "hard links" if link else "a copy"
    note = (
        f"; {stripped} column(s) lost Debian's pg_attver stamp, which {dirs.target} rejects"
        if stripped
        else ""
    )
    return f"pg_upgrade to {dirs.target} with {mode} in {took:.1f}s; the old data directory is kept{note}"


def _has_run(dirs: UpgradeDirs) -> bool:
    try:
        marked = dirs.checkpoint_mark.read_text().strip()
    except FileNotFoundError:
        return True  # no record of the state pg_upgrade left: assume the worst
    return latest_checkpoint(bin_dir_for(dirs.target), dirs.paths.data) != marked


def roll_back(dirs: UpgradeDirs) -> str:
    """Put the old data directory back in place (the server must be stopped). Refuses when
    the kept directory is a link-mode original whose new server has run."""
    if not dirs.kept.exists():
        remove_tree(dirs.new)
        old_control = dirs.paths.data / "global" / "pg_control.old"
        if old_control.exists():
            os.rename(old_control, dirs.paths.data / "global" / "pg_control")
            return "the old cluster was re-enabled (pg_control.old renamed back)"
        return "nothing to roll back: the data directory was never swapped"
    old_control = dirs.kept / "global" / "pg_control.old"
    if old_control.exists():
        if _has_run(dirs):
            raise EngineError(
                "the upgraded server has run on hard links shared with the old data directory: "
                "the old version cannot be put back from it (restore the backup taken before)"
            )
        os.rename(old_control, dirs.kept / "global" / "pg_control")
    trash = dirs.paths.root / f".data.failed-{dirs.target}"
    remove_tree(trash)
    if dirs.paths.data.exists():
        os.rename(dirs.paths.data, trash)
    os.rename(dirs.kept, dirs.paths.data)
    remove_tree(trash)
    remove_tree(dirs.new)
    dirs.checkpoint_mark.unlink(missing_ok=True)
    return f"PostgreSQL {data_dir_version(dirs.paths.data)} data directory put back"


def finish(dirs: UpgradeDirs) -> str:
    """Remove the kept old data directory: the upgraded server is verified."""
    dirs.checkpoint_mark.unlink(missing_ok=True)
    if not dirs.kept.exists():
        return "no old data directory left"
    remove_tree(dirs.kept)
    return f"removed the PostgreSQL data directory kept before the upgrade to {dirs.target}"


def available_extensions(bin_dir: Path) -> set[str]:
    """Extensions the binaries in `bin_dir` ship (their share/extension/*.control)."""
    proc = process.run([str(bin_dir / "pg_config"), "--sharedir"], timeout=30)
    extension_dir = Path(proc.stdout.strip()) / "extension"
    return {p.name.removesuffix(".control") for p in extension_dir.glob("*.control")}


def update_extensions_and_analyze(address: AdminSocket, databases: list[str], bin_dir: Path) -> str:
    """On the running upgraded server at `address`: every extension whose installed version is
    not the new binaries' default is updated (ALTER EXTENSION ... UPDATE) in each of
    `databases`, then the planner statistics are rebuilt (vacuumdb --analyze-in-stages, which
    makes rough statistics available first, for clients already connected)."""
    updated: list[str] = []
    try:
        for dbname in databases:
            with connect(address, dbname) as conn:
                rows = conn.execute(
                    "SELECT e.extname FROM pg_catalog.pg_extension e"
                    " JOIN pg_catalog.pg_available_extensions a ON a.name = e.extname"
                    " WHERE a.default_version IS DISTINCT FROM e.extversion ORDER BY e.extname"
                ).fetchall()
                for (name,) in rows:
                    conn.execute(
                        psycopg.sql.SQL("ALTER EXTENSION {} UPDATE").format(psycopg.sql.Identifier(name))
                    )
                    updated.append(f"{dbname}.{name}")
    except psycopg.Error as exc:
        raise EngineError(f"updating extensions failed: {first_line(exc)}") from exc
    started = time.monotonic()
    process.run(
        [str(bin_dir / "vacuumdb"), "--all", "--analyze-in-stages", "-h", str(address.socket),
         "-p", str(address.port), "-U", address.user],
        timeout=ANALYZE_TIMEOUT_S,
    )  # fmt: skip
    ext = f"extensions updated: {', '.join(updated)}" if updated else "extensions already current"
    return f"{ext}; statistics rebuilt (vacuumdb --analyze-in-stages) in {time.monotonic() - started:.1f}s"


def data_bytes(path: Path) -> int:
    """Bytes of the files below `path`, hard links counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
