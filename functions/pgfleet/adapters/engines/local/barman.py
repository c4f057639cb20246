"""Barman behind the BackupEngine port, for servers pgBackRest cannot back up (PostgreSQL 18:
Debian's pgBackRest 2.45 stops at 16).

Barman (PyPI) takes backups with `backup_method = postgres`: pg_basebackup of the server's own
major version (`path_prefix` names that version's bin directory), in plain format, so that
incremental backups (pg_basebackup --incremental, PostgreSQL 17+, with `summarize_wal = on`)
chain on them and `barman restore` combines them with pg_combinebackup.

WAL reaches the repository through archive_command, not by streaming (`barman receive-wal`):
PostgreSQL runs the command itself, retries it until it succeeds and keeps each segment until
then, so nothing has to be supervised; streaming needs a pg_receivewal process that lives as
long as the server (kept up across restarts, failovers and `pgfleet down`) and a replication
slot that fills the disk when that process dies. The command copies the segment into a spool
directory, fsyncs it and renames it into the server's `incoming/` directory (a rename on the
same filesystem: Barman never sees half a segment). `barman archive-wal` files incoming
segments into `wals/` whenever this adapter reads the archive (backup, check, window, restore,
verify); `barman get-wal`, the restored server's restore_command, looks in both. The cost is
the port's contract itself: up to archive_timeout (60 s) of committed work is not yet
archived, as with pgBackRest.

Layout under `home/barman/`:

    repo/                       barman_home: one directory per stanza (base/, wals/, incoming/)
    conf/<stanza>.conf          one configuration per stanza: a [barman] section and the
                                stanza's server section (0600, owned by the data-plane user)
    spool/<stanza>/             where archive_command copies a segment before the rename
    staging/<stanza>/           where restore combines an incremental chain
    lock/, log/                 Barman's own files

Every command runs as the data-plane user (Barman's `barman_user`) through `process.run`, and
every command line is built by `barman_argv`. Barman keeps no passphrase: this repository is not
encrypted (Barman encrypts only tar-format backups, with GPG keys, which incremental backups
cannot use); the repository directory is 0750 and owned by the data-plane user.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.postgres.binaries import bin_dir_for
from pgfleet.adapters.engines.local.sql import AdminSocket, connect, first_line
from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import (
    BackupEngine,
    BackupInfo,
    RestorableWindow,
    VerifyResult,
    backup_type,
)

log = logging.getLogger(__name__)

BARMAN_DIR = "barman"
STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
COMMAND_TIMEOUT = 120.0
LONG_TIMEOUT = 6 * 3600.0
LOCK_RACE_ATTEMPTS = 5
LOCK_RACE_PAUSE_S = 1.0
CANCEL_TIMEOUT = 60.0
BACKGROUND_NICE = 10
# How long `check` waits for the switched segment (the port says about 60 s).
ARCHIVE_WAIT_S = 60
ONE_SECOND = timedelta(seconds=1)
# With 16 MB segments (pgfleet never changes wal_segment_size) a log file holds 256 segments.
SEGMENTS_PER_LOG = 0x100
# Checks of `barman check` that concern the server and the tool, not what has been archived
# or backed up so far (a new stanza has neither).
STANZA_CHECKS = (
    "postgresql",
    "superuser_or_standard_user_with_backup_privileges",
    "postgresql_streaming",
    "wal_level",
    "directories",
    "pg_basebackup",
    "pg_basebackup_compatible",
    "systemid_coherence",
    "archive_mode",
    "archive_command",
)
# What `barman restore` writes into postgresql.auto.conf that the restore keeps.
RECOVERY_KEYS = ("restore_command", "recovery_target", "recovery_end_command")
# Barman's record of a restore, left in the restored directory.
RECOVER_INFO = ".barman-recover.info"
REPLAY_ALL = "on start it replays every archived WAL segment and promotes"


def checked_stanza(stanza: str) -> str:
    """`stanza` if it is safe as a file name and a Barman server name; ValueError if not."""
    if not STANZA_RE.match(stanza) or stanza in ("all", "barman"):
        raise ValueError(f"invalid stanza name {stanza!r}: letters, digits, '-' and '_' only")
    return stanza


def barman_binary() -> str:
    """Barman's console script: beside this interpreter (the venv), else on the PATH."""
    beside = Path(sys.executable).parent / "barman"
    if beside.is_file():
        return str(beside)
    return shutil.which("barman") or "barman"


def barman_argv(
    binary: str, config: Path, command: str, *arguments: str, json_output: bool = False
) -> list[str]:
    """The command line of one Barman command: the only place one is built."""
    output = ["-f", "json"] if json_output else []
    return [binary, "-c", str(config), *output, command, *arguments]


def render_config(sections: Mapping[str, Mapping[str, str]]) -> str:
    """Barman's configuration format (ConfigParser). A newline could smuggle in options and a
    '%' would be read as interpolation."""
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        for key, value in options.items():
            if any(c in value for c in "\r\n%"):
                raise ValueError(f"unsupported character in configuration value of {key}")
            lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)


def conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parsed_json(output: str, command: str) -> Any:
    try:
        return json.loads(output or "{}")
    except json.JSONDecodeError as exc:
        raise EngineError(f"barman {command} printed unreadable JSON: {exc}") from exc


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def too_early(stanza: str, target: datetime, earliest: datetime) -> str:
    return (
        f"target time {target.isoformat()} is before the earliest restorable time "
        f"{earliest.isoformat()} of stanza {stanza!r}"
    )


def segment_number(segment: str) -> int:
    return int(segment[8:16], 16) * SEGMENTS_PER_LOG + int(segment[16:24], 16)


def segment_name(timeline: str, number: int) -> str:
    return f"{timeline}{number // SEGMENTS_PER_LOG:08X}{number % SEGMENTS_PER_LOG:08X}"


def segment_range(start: str, stop: str) -> list[str]:
    """Every WAL segment name from `start` to `stop` inclusive, on `start`'s timeline."""
    return [segment_name(start[:8], n) for n in range(segment_number(start), segment_number(stop) + 1)]


def contiguous_runs(segments: Sequence[str]) -> list[list[str]]:
    """Archived segments grouped into runs without a gap, per timeline, in order."""
    runs: list[list[str]] = []
    for segment in sorted(segments):
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and last[:8] == segment[:8]
            and segment_number(segment) == segment_number(last) + 1
        ):
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return runs


@dataclass(frozen=True)
class ArchivedWal:
    """One line of Barman's xlog.db: a WAL file and when it reached the repository."""

    name: str
    archived_at: datetime


def read_xlog_db(path: Path) -> list[ArchivedWal]:
    """Barman's WAL catalogue: name, size, time, compression (tab separated)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            try:
                entries.append(ArchivedWal(fields[0], datetime.fromtimestamp(float(fields[2]), UTC)))
            except ValueError:
                continue
    return entries


def parse_time(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def parse_show_backup(entry: Mapping[str, Any], kinds: Mapping[str, str]) -> BackupInfo:
    """`barman -f json show-backup <server> <id>`'s entry for one backup."""
    base = entry.get("base_backup_information") or {}
    catalog = entry.get("catalog_information") or {}
    backup_id = str(entry["backup_id"])
    parent = catalog.get("parent_backup_id") or None
    root = catalog.get("root_backup_id") or None
    if entry.get("backup_type") == "incremental":
        kind = kinds.get(backup_id, "incr")
    else:
        kind = "full"
    references = tuple(dict.fromkeys(x for x in (root, parent) if x and x != backup_id))
    return BackupInfo(
        backup_id=backup_id,
        type=kind,
        started_at=whole_seconds(parse_time(base["begin_time"])),
        finished_at=whole_seconds(parse_time(base["end_time"])),
        size_bytes=int(entry.get("cluster_size_bytes") or 0),
        repo_size_bytes=int(base.get("backup_size_bytes") or 0),
        wal_start=str(base.get("begin_wal") or ""),
        wal_stop=str(base.get("end_wal") or ""),
        lsn_start=str(base.get("begin_lsn") or ""),
        lsn_stop=str(base.get("end_lsn") or ""),
        database_list=None,  # Barman does not record the databases a backup holds
        prior_backup_id=parent,
        references=references,
    )


class LocalBarman(BackupEngine):
    """Barman with its repository under `home/barman/repo`, for servers of the local engines
    whose major version Barman serves (PostgreSQL 18 here). Posix repository only.

    Supports full, incremental (parent: the newest backup) and differential (parent: the newest
    full backup) backups, all through pg_basebackup; `compress_level` is not applied (the
    backups stay plain directories so incremental ones can build on them).
    """

    def __init__(self, home: Path, *, binary: str | None = None, long_timeout: float = LONG_TIMEOUT) -> None:
        self._home = Path(home)
        self._binary = binary or barman_binary()
        self._long_timeout = long_timeout
        # Finished backups never change: (stanza, backup_id) -> what show-backup said.
        self._shown: dict[tuple[str, str], BackupInfo] = {}

    # -- paths and configuration ----------------------------------------------------------

    @property
    def root(self) -> Path:
        return self._home / BARMAN_DIR

    @property
    def repo_path(self) -> Path:
        return self.root / "repo"

    def config_path(self, stanza: str) -> Path:
        return self.root / "conf" / f"{checked_stanza(stanza)}.conf"

    def _server_dir(self, stanza: str) -> Path:
        return self.repo_path / checked_stanza(stanza)

    def _spool_dir(self, stanza: str) -> Path:
        return self.root / "spool" / checked_stanza(stanza)

    def _staging_dir(self, stanza: str) -> Path:
        return self.root / "staging" / checked_stanza(stanza)

    def _kinds_path(self, stanza: str) -> Path:
        """Which incremental backups were asked for as differential ones (Barman knows only
        incremental: a differential backup is an incremental one on the newest full backup)."""
        return self.root / "conf" / f"{checked_stanza(stanza)}.types.json"

    def _prepare_dirs(self, stanza: str) -> None:
        process.ensure_traversable(self._home)
        process.make_owned_dir(self.root, 0o711)
        for name in ("conf", "lock", "log", "spool", "staging"):
            process.make_owned_dir(self.root / name, 0o700)
        process.make_owned_dir(self.repo_path, 0o750)
        process.make_owned_dir(self._server_dir(stanza), 0o750)
        process.make_owned_dir(self._server_dir(stanza) / "incoming", 0o750)
        process.make_owned_dir(self._spool_dir(stanza), 0o700)

    def _write_config(
        self,
        stanza: str,
        pg_data_dir: str | Path,
        pg_socket_dir: str | Path,
        pg_port: int,
        pg_version: str | None,
    ) -> None:
        self._prepare_dirs(stanza)
        version = self._version_of(pg_data_dir) or pg_version
        # The bin directory of the server's major version; before the server exists and
        # without a version, the one recorded earlier.
        path_prefix = str(bin_dir_for(version)) if version else self._recorded_option(stanza, "path_prefix")
        server = {
            "description": f"pgfleet stanza {stanza}",
            "conninfo": (
                f"host={conninfo_value(str(pg_socket_dir))} port={int(pg_port)} "
                f"user={process.DATA_PLANE_USER} dbname=postgres application_name=barman"
            ),
            "streaming_conninfo": (
                f"host={conninfo_value(str(pg_socket_dir))} port={int(pg_port)} "
                f"user={process.DATA_PLANE_USER} application_name=barman_streaming"
            ),
            "backup_method": "postgres",
            "archiver": "on",
            "streaming_archiver": "off",
            "immediate_checkpoint": "true",
            "minimum_redundancy": "0",
            # Retention is the service's decision, applied through expire().
            "retention_policy": "",
            "backup_directory": str(self._server_dir(stanza)),
        }
        if path_prefix:
            server["path_prefix"] = path_prefix
        sections = {
            "barman": {
                "barman_home": str(self.repo_path),
                "barman_user": process.data_plane_user(),
                "barman_lock_directory": str(self.root / "lock"),
                "log_file": str(self.root / "log" / f"{stanza}.log"),
                "log_level": "INFO",
            },
            stanza: server,
        }
        process.write_owned_file(self.config_path(stanza), render_config(sections), 0o600)

    @staticmethod
    def _version_of(pg_data_dir: str | Path) -> str | None:
        try:
            return (Path(pg_data_dir) / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def _recorded_option(self, stanza: str, key: str) -> str | None:
        try:
            text = self.config_path(stanza).read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == key:
                return value.strip()
        return None

    def _server_address(self, stanza: str) -> AdminSocket | None:
        conninfo = self._recorded_option(stanza, "conninfo")
        if not conninfo:
            return None
        host = re.search(r"host='((?:[^'\\]|\\.)*)'", conninfo)
        port = re.search(r"port=(\d+)", conninfo)
        if not host or not port:
            return None
        return AdminSocket(Path(re.sub(r"\\(.)", r"\1", host[1])), int(port[1]))

    # -- running commands -----------------------------------------------------------------

    def _run(
        self,
        stanza: str,
        command: str,
        *arguments: str,
        json_output: bool = False,
        timeout: float = COMMAND_TIMEOUT,
        background: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        config = self.config_path(stanza)
        if not config.exists():
            raise EngineError(f"stanza {stanza!r} is not configured: call archive_settings first")
        argv = barman_argv(self._binary, config, command, *arguments, json_output=json_output)
        try:
            return process.run(
                argv,
                timeout=timeout,
                cwd=self.root,
                check=check,
                nice=BACKGROUND_NICE if background else 0,
            )
        except EngineError as exc:
            raise EngineError(f"barman {command} of stanza {stanza!r}: {exc}") from exc

    def _json(self, stanza: str, command: str, *arguments: str) -> Any:
        proc = self._run(stanza, command, *arguments, json_output=True)
        return (parsed_json(proc.stdout, command) or {}).get(stanza)

    def _file_incoming(self, stanza: str) -> None:
        """File the segments archive_command left in incoming/ into wals/."""
        self._run(stanza, "archive-wal", stanza)

    def _kinds(self, stanza: str) -> dict[str, str]:
        try:
            return dict(json.loads(self._kinds_path(stanza).read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _remember_kind(self, stanza: str, backup_id: str, kind: str) -> None:
        kinds = self._kinds(stanza)
        kinds[backup_id] = kind
        process.write_owned_file(self._kinds_path(stanza), json.dumps(kinds, sort_keys=True), 0o600)

    def _backup_ids(self, stanza: str, statuses: tuple[str, ...] = ("DONE",)) -> list[str]:
        entries = self._json(stanza, "list-backups", stanza) or []
        return [str(e["backup_id"]) for e in entries if e.get("status") in statuses]

    def _show(self, stanza: str, backup_id: str) -> BackupInfo:
        key = (stanza, backup_id)
        if key not in self._shown:
            entry = self._json(stanza, "show-backup", stanza, backup_id)
            if not entry or entry.get("status") != "DONE":
                raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
            self._shown[key] = parse_show_backup(entry, self._kinds(stanza))
        return self._shown[key]

    def _running_backup_pid(self, stanza: str) -> int | None:
        processes = self._json(stanza, "list-processes", stanza) or []
        return next((int(p["pid"]) for p in processes if p.get("name") == "backup"), None)

    def _archived(self, stanza: str) -> list[ArchivedWal]:
        return read_xlog_db(self._server_dir(stanza) / "wals" / f"{stanza}-xlog.db") or read_xlog_db(
            self._server_dir(stanza) / "wals" / "xlog.db"
        )

    def _archived_segments(self, stanza: str) -> set[str]:
        wals = self._server_dir(stanza) / "wals"
        segments: set[str] = set()
        if wals.is_dir():
            for hashdir in wals.iterdir():
                if hashdir.is_dir():
                    segments |= {f.name for f in hashdir.iterdir() if SEGMENT_RE.match(f.name)}
        return segments

    # -- the port -------------------------------------------------------------------------

    def archive_settings(
        self,
        stanza: str,
        pg_data_dir: str | Path,
        pg_socket_dir: str | Path,
        pg_port: int,
        pg_version: str | None = None,
    ) -> dict[str, str]:
        self._write_config(stanza, pg_data_dir, pg_socket_dir, pg_port, pg_version)
        spool, incoming = self._spool_dir(stanza), self._server_dir(stanza) / "incoming"
        # PostgreSQL runs it in the data directory through the shell: %p is relative to it and
        # %f the segment's name; paths are quoted for the shell with any % doubled.
        spooled = shlex.quote(str(spool)).replace("%", "%%") + "/%f"
        filed = shlex.quote(str(incoming)).replace("%", "%%") + "/%f"
        command = f"cp %p {spooled} && sync {spooled} && mv -f {spooled} {filed}"
        # summarize_wal lets pg_basebackup take incremental backups (PostgreSQL 17+).
        return {
            "archive_mode": "on",
            "archive_command": command,
            "archive_timeout": "60",
            "summarize_wal": "on",
        }

    def create_stanza(
        self, stanza: str, pg_data_dir: str | Path, pg_socket_dir: str | Path, pg_port: int
    ) -> str:
        self._write_config(stanza, pg_data_dir, pg_socket_dir, pg_port, None)
        existed = (self._server_dir(stanza) / "identity.json").exists()
        checks = self._json(stanza, "check", stanza) or {}
        failed = {
            name: (checks.get(name) or {}).get("hint") or "failed"
            for name in STANZA_CHECKS
            if (checks.get(name) or {}).get("status") not in ("OK", None)
        }
        if "systemid_coherence" in failed:
            raise EngineError(
                f"stanza {stanza!r} exists for a different server: {failed['systemid_coherence']}"
            )
        if failed:
            detail = "; ".join(f"{name}: {hint}" for name, hint in failed.items())
            raise EngineError(f"Barman cannot back up the server of stanza {stanza!r}: {detail}")
        return f"stanza {stanza!r} {'already existed' if existed else 'created'} in the Barman repository"

    def check(self, stanza: str) -> str:
        self._run(
            stanza,
            "switch-wal",
            "--force",
            "--archive",
            "--archive-timeout",
            str(ARCHIVE_WAIT_S),
            stanza,
            timeout=ARCHIVE_WAIT_S + COMMAND_TIMEOUT,
        )
        return f"WAL of stanza {stanza!r} reaches the Barman repository"

    def backup(self, stanza: str, type: str, compress_level: int | None = None) -> BackupInfo:
        kind = backup_type(type)
        self._discard_failed(stanza)
        before = self._backup_ids(stanza)
        arguments = ["--wait", "--wait-timeout", str(int(self._long_timeout))]
        if kind != "full" and before:
            arguments += ["--incremental", "latest" if kind == "incr" else "latest-full"]
        elif kind != "full":
            kind = "full"  # no backup to build on yet
        if compress_level is not None:
            log.info("stanza %s: Barman backups are stored uncompressed; compress_level ignored", stanza)
        for attempt in range(1, LOCK_RACE_ATTEMPTS + 1):
            try:
                self._run(stanza, "backup", *arguments, stanza, timeout=self._long_timeout, background=True)
                break
            except EngineError as exc:
                # `barman list-processes` (a status read elsewhere) probes the backup lock by
                # taking it for an instant; a backup starting in that instant is refused
                # although none runs. Another backup really running keeps its lock: refused again.
                if "Another backup process is running" not in str(exc) or attempt == LOCK_RACE_ATTEMPTS:
                    raise
                time.sleep(LOCK_RACE_PAUSE_S)
        new = [backup_id for backup_id in self._backup_ids(stanza) if backup_id not in before]
        if not new:
            raise EngineError(f"Barman reported success but stanza {stanza!r} has no new backup")
        backup_id = max(new)
        if kind != "full":
            self._remember_kind(stanza, backup_id, kind)
        info = self._show(stanza, backup_id)
        log.info("stanza %s: %s backup %s complete", stanza, info.type, backup_id)
        return info

    def _discard_failed(self, stanza: str) -> None:
        """A backup a crash or a cancel interrupted stays FAILED in Barman's catalogue."""
        if self._running_backup_pid(stanza) is not None:
            return  # barman backup refuses to start anyway: the caller gets its error
        for backup_id in self._backup_ids(stanza, ("FAILED", "STARTED", "EMPTY")):
            self._run(stanza, "delete", stanza, backup_id, check=False)

    def cancel_backup(self, stanza: str) -> str | None:
        if not self.config_path(stanza).exists() or self._running_backup_pid(stanza) is None:
            return None
        self._run(stanza, "terminate-process", stanza, "backup", check=False)
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while self._running_backup_pid(stanza) is not None:
            if time.monotonic() > deadline:
                raise EngineError(
                    f"the backup of stanza {stanza!r} did not stop within {CANCEL_TIMEOUT:.0f}s"
                )
            time.sleep(0.2)
        return f"cancelled the running backup of stanza {stanza!r}"

    def backup_progress(self, stanza: str) -> int | None:
        """PostgreSQL's own figure for the pg_basebackup Barman runs (pg_stat_progress_basebackup:
        bytes streamed of the estimated total); 0 until the server has estimated it."""
        if not self.config_path(stanza).exists():
            return None
        # Not `barman list-processes`: it probes the backup lock, which races a starting backup.
        address = self._server_address(stanza)
        if address is None:
            return None
        try:
            with connect(address, application_name="pgfleet-backup-progress") as conn:
                row = conn.execute(
                    "SELECT p.backup_total, p.backup_streamed FROM pg_catalog.pg_stat_progress_basebackup p"
                    " ORDER BY p.pid LIMIT 1"
                ).fetchone()
        except psycopg.Error as exc:
            log.info("stanza %s: backup progress not readable: %s", stanza, first_line(exc))
            return 0
        if row is None:
            return None  # no base backup streams from the server: none runs
        if not row[0]:
            return 0
        return max(0, min(100, int(100 * int(row[1]) / int(row[0]))))

    def list_backups(self, stanza: str) -> list[BackupInfo]:
        if not self.config_path(stanza).exists():
            return []
        entries = self._json(stanza, "list-backups", stanza) or []
        if self._settle_waiting(stanza, entries):
            entries = self._json(stanza, "list-backups", stanza) or []
        done = [str(e["backup_id"]) for e in entries if e.get("status") == "DONE"]
        backups = [self._show(stanza, backup_id) for backup_id in done]
        return sorted(backups, key=lambda b: (b.started_at, b.backup_id))

    def _settle_waiting(self, stanza: str, entries: Sequence[Mapping[str, Any]]) -> bool:
        """A backup whose copy finished but whose WAL had not arrived when its `barman backup
        --wait` ended (a crash, a timeout) stays WAITING_FOR_WALS until checked again (what
        `barman cron` would do): file the incoming WAL and check it. Whether it checked any."""
        waiting = [str(e["backup_id"]) for e in entries if e.get("status") == "WAITING_FOR_WALS"]
        if not waiting or self._running_backup_pid(stanza) is not None:
            return False
        self._file_incoming(stanza)
        for backup_id in waiting:
            self._run(stanza, "check-backup", stanza, backup_id, check=False)
        return True

    def restorable_window(self, stanza: str) -> RestorableWindow | None:
        backups = self.list_backups(stanza)
        if not backups:
            return None
        self._file_incoming(stanza)
        earliest = min(backup.finished_at for backup in backups) + ONE_SECOND
        latest = max(backup.finished_at for backup in backups) + ONE_SECOND
        segments = [w for w in self._archived(stanza) if SEGMENT_RE.match(w.name)]
        if segments:
            latest = max(latest, whole_seconds(max(w.archived_at for w in segments)) + ONE_SECOND)
        return RestorableWindow(earliest=earliest, latest=latest)

    def verify(self, stanza: str, backup_id: str | None = None) -> VerifyResult:
        backups = {b.backup_id: b for b in self.list_backups(stanza)}
        if backup_id is not None and backup_id not in backups:
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        self._file_incoming(stanza)
        findings: list[str] = []
        if backup_id is not None:
            chosen = backups[backup_id]
            chain = [chosen, *(backups[r] for r in chosen.references if r in backups)]
            findings += [
                f"backup {backup_id} needs backup {r}, which is missing"
                for r in chosen.references
                if r not in backups
            ]
            ranges = [(chosen.wal_start, chosen.wal_stop, chosen.lsn_start, chosen.lsn_stop)]
        else:
            chain = list(backups.values())
            ranges = []
        for backup in chain:
            findings += self._verify_files(stanza, backup.backup_id)
        archived = self._archived_segments(stanza)
        with tempfile.TemporaryDirectory(prefix="pgfleet-wal-", dir=self.root / "staging") as flat:
            os.chmod(flat, 0o755)
            if backup_id is not None:
                for start, stop, lsn_start, lsn_stop in ranges:
                    missing = [s for s in segment_range(start, stop) if s not in archived]
                    if missing:
                        findings.append(
                            f"backup {backup_id}: WAL segment(s) {', '.join(missing)} missing from the archive"
                        )
                    else:
                        findings += self._read_wal(
                            stanza, Path(flat), segment_range(start, stop), lsn_start, lsn_stop
                        )
            else:
                oldest = min((b.wal_start for b in chain), default=None)
                wanted = sorted(s for s in archived if oldest is None or s[:8] != oldest[:8] or s >= oldest)
                runs = contiguous_runs(wanted)
                for before, after in zip(runs, runs[1:], strict=False):
                    if before[-1][:8] == after[0][:8]:
                        findings.append(
                            f"WAL missing after {before[-1]} and before {after[0]}; "
                            "point-in-time recovery cannot cross this gap"
                        )
                for run in runs:
                    findings += self._read_wal(stanza, Path(flat), run, None, None)
        return VerifyResult(ok=not findings, findings=findings)

    def _verify_files(self, stanza: str, backup_id: str) -> list[str]:
        """pg_verifybackup (through `barman verify-backup`): every file against the checksum
        in the backup's manifest."""
        proc = self._run(stanza, "verify-backup", stanza, backup_id, check=False, timeout=self._long_timeout)
        said = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or "failure" in said or "ERROR" in said:
            lines = [
                line.strip()
                for line in said.splitlines()
                if line.strip() and not line.startswith(("Verifying", "Calling"))
            ]
            return [f"backup {backup_id}: {line}" for line in lines[-5:]] or [
                f"backup {backup_id}: verification failed"
            ]
        return []

    def _read_wal(
        self, stanza: str, flat: Path, segments: list[str], lsn_start: str | None, lsn_stop: str | None
    ) -> list[str]:
        """pg_waldump over `segments` (from one flat directory of links into wals/): every
        record's CRC is checked, as PostgreSQL checks it on replay."""
        if not segments:
            return []
        for entry in flat.iterdir():
            entry.unlink()
        wals = self._server_dir(stanza) / "wals"
        for segment in segments:
            (flat / segment).symlink_to(wals / segment[:16] / segment)
        bin_dir = self._recorded_option(stanza, "path_prefix")
        waldump = str(Path(bin_dir) / "pg_waldump") if bin_dir else "pg_waldump"
        argv = [waldump, "--quiet", "--path", str(flat)]
        if lsn_start and lsn_stop:
            argv += ["--start", lsn_start, "--end", lsn_stop]
        else:
            argv += [segments[0], segments[-1]]
        proc = process.run(argv, check=False, timeout=self._long_timeout)
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return [f"WAL {segments[0]}..{segments[-1]} is not readable: {detail}"]
        return []

    def restore(
        self,
        stanza: str,
        backup_id: str | None,
        target_time: datetime | None,
        target_dir: str | Path,
        delta: bool = False,
        exact: bool = False,
    ) -> str:
        target = Path(target_dir)
        moment = as_utc(target_time) if target_time is not None else None
        chosen = self._backup_to_restore(stanza, backup_id, moment)
        self._file_incoming(stanza)
        if moment is not None:
            if moment < chosen.finished_at + ONE_SECOND:
                raise EngineError(too_early(stanza, moment, chosen.finished_at + ONE_SECOND))
            window = None if exact else self.restorable_window(stanza)
            if window is not None and moment >= window.latest:
                # Nothing archived is later: a time target would find no commit past it.
                recovery, outcome = (
                    [],
                    f"{REPLAY_ALL} (target {moment.isoformat()} is past the newest archived WAL)",
                )
            else:
                stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
                recovery = ["--target-time", stamp, "--target-action", "promote"]
                outcome = f"on start it recovers to {moment.isoformat()} and promotes"
        elif backup_id is not None:
            recovery = ["--target-immediate", "--target-action", "promote"]
            outcome = f"on start it recovers to the end of backup {chosen.backup_id} and promotes"
        else:
            recovery, outcome = [], REPLAY_ALL
        if not delta and target.exists() and any(target.iterdir()):
            raise EngineError(f"{target} is not empty: restore into an empty directory or with delta")
        process.make_owned_dir(target, 0o700)
        restore_command = " ".join(
            shlex.quote(arg) for arg in barman_argv(self._binary, self.config_path(stanza), "get-wal", stanza)
        )
        arguments = [
            *recovery,
            "--get-wal",
            "--restore-command",
            f"{restore_command} %f > %p",
        ]
        if chosen.type != "full":
            staging = self._staging_dir(stanza)
            process.make_owned_dir(staging, 0o700)
            arguments += ["--staging-path", str(staging), "--staging-location", "local"]
        self._run(
            stanza, "restore", *arguments, stanza, chosen.backup_id, str(target), timeout=self._long_timeout
        )
        self._settle_restored_config(target)
        self._verify_restored(stanza, chosen.backup_id, target)
        reason = f"restored Barman backup {chosen.backup_id} of stanza {stanza!r} into {target}; {outcome}"
        log.info("%s", reason)
        return reason

    @staticmethod
    def _settle_restored_config(target: Path) -> None:
        """Give the restored directory the configuration of its backup plus the recovery
        settings only: Barman comments out options it finds dangerous (keeping `<file>.origin`);
        archive_mode=off instead keeps the restored server from archiving into the source
        stanza, as the port asks, and goes when recovery is done like the other settings."""
        auto = target / "postgresql.auto.conf"
        origin = target / "postgresql.auto.conf.origin"
        current = auto.read_text() if auto.exists() else ""
        base = origin.read_text() if origin.exists() else ""
        recovery = [
            line
            for line in current.splitlines()
            if line.split("=", 1)[0].strip().lower().startswith(RECOVERY_KEYS)
            and line not in base.splitlines()
        ]
        kept = [
            line
            for line in base.splitlines()
            if not line.split("=", 1)[0].strip().lower().startswith((*RECOVERY_KEYS, "archive_mode"))
        ]
        process.write_owned_file(auto, "\n".join([*kept, *recovery, "archive_mode = 'off'"]) + "\n", 0o600)
        conf_origin = target / "postgresql.conf.origin"
        if conf_origin.exists():
            os.replace(conf_origin, target / "postgresql.conf")
        origin.unlink(missing_ok=True)
        staging = target / "barman_wal"
        if staging.is_dir() and not any(staging.iterdir()):
            staging.rmdir()

    def _verify_restored(self, stanza: str, backup_id: str, target: Path) -> None:
        """Check every restored file against the checksum in the backup's manifest (Barman
        copies with rsync, which checks nothing of the kind; pgBackRest does it as it restores).
        Barman leaves the manifest as backup_manifest.<id> and its own record of the restore;
        pg_verifybackup skips the recovery configuration and pg_wal itself."""
        manifests = sorted(target.glob("backup_manifest*"))
        if not manifests:
            raise EngineError(f"restore of backup {backup_id} left no backup manifest in {target}")
        bin_dir = self._recorded_option(stanza, "path_prefix")
        argv = [str(Path(bin_dir) / "pg_verifybackup") if bin_dir else "pg_verifybackup", "--no-parse-wal"]
        argv += ["--manifest-path", str(manifests[0])]
        for name in (*(manifest.name for manifest in manifests), RECOVER_INFO):
            argv += ["--ignore", name]
        proc = process.run([*argv, str(target)], check=False, timeout=self._long_timeout)
        if proc.returncode != 0:
            detail = "; ".join(proc.stderr.strip().splitlines()[-3:])
            raise EngineError(f"restored files of backup {backup_id} do not match its manifest: {detail}")

    def _backup_to_restore(self, stanza: str, backup_id: str | None, target: datetime | None) -> BackupInfo:
        backups = sorted(self.list_backups(stanza), key=lambda backup: backup.finished_at)
        if not backups:
            raise EngineError(f"stanza {stanza!r} has no backup to restore")
        if backup_id is not None:
            for backup in backups:
                if backup.backup_id == backup_id:
                    return backup
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        if target is None:
            return backups[-1]
        candidates = [backup for backup in backups if backup.finished_at + ONE_SECOND <= target]
        if not candidates:
            raise EngineError(too_early(stanza, target, backups[0].finished_at + ONE_SECOND))
        return candidates[-1]

    def check_structure(self, stanza: str, backup_id: str) -> VerifyResult:
        backups = {b.backup_id: b for b in self.list_backups(stanza)}
        if backup_id not in backups:
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        backup = backups[backup_id]
        findings = [
            f"backup {backup_id} needs files of backup {reference}, which is missing"
            for reference in backup.references
            if reference not in backups
        ]
        if not (self._server_dir(stanza) / "base" / backup_id / "data" / "backup_manifest").exists():
            findings.append(f"backup {backup_id}: its manifest is missing")
        if not backup.wal_start or not backup.wal_stop:
            findings.append(f"backup {backup_id}: no WAL range is recorded")
        else:
            self._file_incoming(stanza)
            archived = self._archived_segments(stanza)
            missing = [s for s in segment_range(backup.wal_start, backup.wal_stop) if s not in archived]
            if missing:
                findings.append(
                    f"backup {backup_id}: WAL segment(s) {', '.join(missing)} missing from the archive "
                    f"(it needs {backup.wal_start} to {backup.wal_stop} to become consistent)"
                )
        return VerifyResult(ok=not findings, findings=findings)

    def repository(self, stanza: str) -> str:
        return f"Barman, not encrypted (files owned by the data-plane user, 0750), {self.location(stanza)}"

    def location(self, stanza: str) -> str:
        return f"posix:{self._server_dir(stanza)}"

    def _delete(self, stanza: str, backup_ids: Sequence[str]) -> list[str]:
        """Delete backups newest first (an incremental before the backup it builds on)."""
        before = self._backup_ids(stanza)
        for backup_id in sorted(backup_ids, reverse=True):
            if backup_id in self._backup_ids(stanza):
                self._run(stanza, "delete", stanza, backup_id, timeout=self._long_timeout)
            self._shown.pop((stanza, backup_id), None)
        kept = set(self._backup_ids(stanza))
        return [backup_id for backup_id in before if backup_id not in kept]

    def _dependants(self, backups: Sequence[BackupInfo], backup_id: str) -> list[str]:
        return [b.backup_id for b in backups if backup_id in b.references]

    def expire_backup(self, stanza: str, backup_id: str) -> str:
        backups = self.list_backups(stanza)
        if backup_id not in {b.backup_id for b in backups}:
            return f"backup {backup_id} already gone from stanza {stanza!r}"
        fulls = [b for b in backups if b.type == "full"]
        if fulls and fulls[-1].backup_id == backup_id:
            raise EngineError(
                f"backup {backup_id} is the newest full backup of stanza {stanza!r}: the repository keeps one "
                "(delete the stanza to remove everything)"
            )
        removed = self._delete(stanza, [backup_id, *self._dependants(backups, backup_id)])
        kept = len(self._backup_ids(stanza))
        return f"expired {', '.join(removed)} from stanza {stanza!r}; kept {kept} backup(s)"

    def expire(self, stanza: str, retention_full: int) -> str:
        if retention_full < 1:
            raise ValueError("retention_full must be at least 1")
        backups = self.list_backups(stanza)
        fulls = [b for b in backups if b.type == "full"]
        old = fulls[:-retention_full] if len(fulls) > retention_full else []
        if not old:
            return f"nothing to expire: {len(backups)} backup(s) within retention"
        newest_old = old[-1].started_at
        # A full backup goes with the incremental and differential backups built on it;
        # backups older than the oldest full kept have nothing left to build on.
        doomed = [b.backup_id for b in backups if b.started_at <= newest_old]
        doomed += [d for b in old for d in self._dependants(backups, b.backup_id)]
        removed = self._delete(stanza, sorted(set(doomed)))
        kept = len(self._backup_ids(stanza))
        return f"expired {len(removed)} backup(s): {', '.join(removed)}; kept {kept}"

    def delete_stanza(self, stanza: str) -> str:
        config = self.config_path(stanza)
        if not config.exists():
            return f"stanza {stanza!r} not configured: nothing to delete"
        try:
            self.cancel_backup(stanza)
        except EngineError as exc:
            log.warning("stanza %s: %s; deleting anyway", stanza, exc)
        for path in (self._server_dir(stanza), self._spool_dir(stanza), self._staging_dir(stanza)):
            shutil.rmtree(path, ignore_errors=True)
        for lock in (self.root / "lock").glob(f".{stanza}-*.lock"):
            lock.unlink(missing_ok=True)
        (self.root / "log" / f"{stanza}.log").unlink(missing_ok=True)
        self._kinds_path(stanza).unlink(missing_ok=True)
        self._shown = {key: value for key, value in self._shown.items() if key[0] != stanza}
        # The configuration goes last: while it exists, a retry can finish the deletion.
        config.unlink(missing_ok=True)
        return f"deleted stanza {stanza!r}: backups, archived WAL and configuration"
