"""pgBackRest behind the BackupEngine port, for servers of the local engine.

Layout under `home`:

    backup-repo/                the posix repository (owned by the data-plane user)
    pgbackrest/<stanza>.conf    one configuration per stanza (0600, owned by the data-plane
                                user): repository, encryption passphrase, where the server is
    pgbackrest/{log,lock,spool} pgBackRest's own files

Every command runs as the data-plane user through `process.run`, and every command line is
built by `pgbackrest_argv`: one place decides the configuration file, the stanza and the
options. The encryption passphrase lives in the configuration file only: never on a command
line (it would show in `ps`), never in our logs (pgBackRest redacts it in its own).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgfleet.adapters.engines.local import process
from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import (
    BackupEngine,
    BackupInfo,
    RestorableWindow,
    VerifyResult,
    backup_type,
)

log = logging.getLogger(__name__)

REPO_DIR = "backup-repo"
CONFIG_DIR = "pgbackrest"
CIPHER_TYPE = "aes-256-cbc"
REPO_TYPES = ("posix", "s3")
# Backups never expire on their own: retention is the service's decision, applied through
# expire(). pgBackRest's largest value, because leaving it unset makes every backup warn.
NO_AUTOMATIC_EXPIRY = "9999999"
COMPRESS_PREFERENCE = ("zst", "lz4", "gz")
# pgBackRest's exit code for an option value it cannot accept, such as a compression type
# this build was compiled without.
OPTION_INVALID_VALUE = 32
COMMAND_TIMEOUT = 120.0
# Backups run below the work a user waits for (creates, restores): nice, as backup tools are run.
BACKGROUND_NICE = 10
# How long a cancelled backup may take to stop once signalled.
CANCEL_TIMEOUT = 60.0
LONG_TIMEOUT = 6 * 3600.0
# pgBackRest records backup times in whole seconds, truncated.
ONE_SECOND = timedelta(seconds=1)
# Commands that write <stanza>-<command>.log, removed with the stanza.
LOGGED_COMMANDS = (
    "archive-get",
    "archive-push",
    "backup",
    "check",
    "expire",
    "info",
    "repo-ls",
    "restore",
    "stanza-create",
    "stanza-delete",
    "start",
    "stop",
    "verify",
)

STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
LABEL_RE = re.compile(r"\b\d{8}-\d{6}F(?:_\d{8}-\d{6}[DI])?\b")
SEGMENT_RE = re.compile(r"\b[0-9A-F]{24}\b")
LOG_RECORD_RE = re.compile(r"^(ERROR|WARN|INFO|DETAIL|DEBUG|TRACE): (.*)$")
WAL_RANGE_RE = re.compile(r"archiveId: (\S+), wal start: ([0-9A-F]{24}), wal stop: ([0-9A-F]{24})")
LOCK_READ_ATTEMPTS = 20
REPLAY_ALL = "on start it replays every archived WAL segment and promotes"
# PostgreSQL runs archive_command in the server's data directory and passes %p relative to it;
# pgBackRest then requires pg1-path to equal that directory. Taking it from the working
# directory makes one command right on every node of a cluster, whichever is primary and
# whatever the stanza's configuration says (it names the primary, for backups).
PG1_PATH_FROM_CWD = '--pg1-path="$(pwd -P)"'
# A restore mostly waits for its writes: more processes than cores overlap them (1 GB restores
# in 4.4 s with 4 processes against 7.1 s with 2, on 2 cores).
RESTORE_PROCESS_MAX = 4
# With 16 MB segments (pgfleet never changes wal_segment_size) a log file holds 256 segments.
SEGMENTS_PER_LOG = 0x100


def checked_stanza(stanza: str) -> str:
    """`stanza` if it is safe as a file name and a configuration section; ValueError if not."""
    if not STANZA_RE.match(stanza):
        raise ValueError(f"invalid stanza name {stanza!r}: letters, digits, '-' and '_' only")
    return stanza


def pgbackrest_argv(
    binary: str,
    command: str,
    options: Sequence[str],
    *,
    config: Path | None,
    stanza: str,
    arguments: Sequence[str] = (),
) -> list[str]:
    """The command line of one pgBackRest command: the only place one is built. `arguments`
    follow the command (archive-push's WAL segment)."""
    config_option = f"--config={config}" if config is not None else "--no-config"
    return [binary, config_option, f"--stanza={stanza}", *options, command, *arguments]


@functools.cache
def supported_compress_type(binary: str) -> str:
    """The best compression this pgBackRest build supports.

    `pgbackrest help backup compress-type` lists every type whatever the build, so ask the
    build: it rejects a type it was compiled without while loading its options, before any
    work (archive-push without a segment then fails harmlessly with another code).
    """
    probe_options = [
        "--pg1-path=/nonexistent",
        "--repo1-path=/nonexistent",
        "--log-level-console=off",
        "--log-level-stderr=error",
        "--log-level-file=off",
    ]
    for compress_type in COMPRESS_PREFERENCE:
        argv = pgbackrest_argv(
            binary,
            "archive-push",
            [f"--compress-type={compress_type}", *probe_options],
            config=None,
            stanza="probe",
        )
        if process.run(argv, check=False, timeout=30, cwd="/").returncode != OPTION_INVALID_VALUE:
            return compress_type
    return "gz"


def render_ini(sections: Mapping[str, Mapping[str, str]]) -> str:
    """pgBackRest's configuration format. A newline in a value could smuggle in options."""
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        for key, value in options.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"newline in configuration value of {key}")
            lines.append(f"{key}={value}")
        lines.append("")
    return "\n".join(lines)


def read_ini_option(path: Path, key: str) -> str | None:
    """The first value of `key` in a configuration file, or None."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


@dataclass(frozen=True)
class S3Repository:
    """Where an S3 repository lives, from the environment. pgBackRest reaches S3 over TLS
    only, so the endpoint must serve HTTPS (moto's plain-HTTP server cannot stand in).

    Keys are written into the 0600 configuration file rather than passed in the environment
    because archive_command runs in the server's environment, which does not carry them.
    Without keys in the environment, pgBackRest fetches credentials itself (instance role).
    """

    bucket: str
    endpoint: str
    region: str
    path: str
    uri_style: str
    verify_tls: bool
    key: str | None
    key_secret: str | None
    token: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Repository:
        bucket = environ.get("PGFLEET_BACKUP_S3_BUCKET")
        if not bucket:
            raise EngineError("repo_type s3 needs PGFLEET_BACKUP_S3_BUCKET")
        region = environ.get("PGFLEET_BACKUP_S3_REGION") or environ.get("AWS_REGION") or "us-east-1"
        return cls(
            bucket=bucket,
            endpoint=environ.get("PGFLEET_BACKUP_S3_ENDPOINT", f"s3.{region}.amazonaws.com"),
            region=region,
            path=environ.get("PGFLEET_BACKUP_S3_PATH", "/pgfleet"),
            uri_style=environ.get("PGFLEET_BACKUP_S3_URI_STYLE", "host"),
            verify_tls=environ.get("PGFLEET_BACKUP_S3_VERIFY_TLS", "y") != "n",
            key=environ.get("AWS_ACCESS_KEY_ID"),
            key_secret=environ.get("AWS_SECRET_ACCESS_KEY"),
            token=environ.get("AWS_SESSION_TOKEN"),
        )

    def options(self) -> dict[str, str]:
        options = {
            "repo1-type": "s3",
            "repo1-path": self.path,
            "repo1-s3-bucket": self.bucket,
            "repo1-s3-endpoint": self.endpoint,
            "repo1-s3-region": self.region,
            "repo1-s3-uri-style": self.uri_style,
            "repo1-storage-verify-tls": "y" if self.verify_tls else "n",
        }
        if self.key and self.key_secret:
            options.update({"repo1-s3-key": self.key, "repo1-s3-key-secret": self.key_secret})
            if self.token:
                options["repo1-s3-token"] = self.token
        else:
            options["repo1-s3-key-type"] = "auto"
        return options


# ---------------------------------------------------------------------------------------------
# Reading pgBackRest's output


def parsed_json(output: str, command: str) -> Any:
    try:
        return json.loads(output)
    except json.JSONDecodeError as exc:
        raise EngineError(f"pgBackRest {command} printed unreadable JSON: {exc}") from exc


def clamp_percent(percent: float) -> int:
    return max(0, min(100, int(percent)))


def too_early(stanza: str, target: datetime, earliest: datetime) -> str:
    return (
        f"target time {target.isoformat()} is before the earliest restorable time "
        f"{earliest.isoformat()} of stanza {stanza!r}"
    )


def utc(epoch: int | float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def as_utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime; a naive one is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def segment_range(start: str, stop: str) -> list[str]:
    """Every WAL segment name from `start` to `stop` inclusive, on `start`'s timeline."""
    timeline = start[:8]
    first = int(start[8:16], 16) * SEGMENTS_PER_LOG + int(start[16:], 16)
    last = int(stop[8:16], 16) * SEGMENTS_PER_LOG + int(stop[16:], 16)
    return [
        f"{timeline}{number // SEGMENTS_PER_LOG:08X}{number % SEGMENTS_PER_LOG:08X}"
        for number in range(first, last + 1)
    ]


def parse_backup(entry: Mapping[str, Any]) -> BackupInfo:
    """One element of `backup` in `pgbackrest info --output=json`."""
    archive = entry.get("archive") or {}
    lsn = entry.get("lsn") or {}
    info = entry.get("info") or {}
    databases = entry.get("database-ref")
    return BackupInfo(
        backup_id=entry["label"],
        type=entry["type"],
        started_at=utc(entry["timestamp"]["start"]),
        finished_at=utc(entry["timestamp"]["stop"]),
        size_bytes=int(info.get("size", 0)),
        repo_size_bytes=int((info.get("repository") or {}).get("delta", 0)),
        wal_start=archive.get("start") or "",
        wal_stop=archive.get("stop") or "",
        lsn_start=lsn.get("start") or "",
        lsn_stop=lsn.get("stop") or "",
        database_list=[db["name"] for db in databases] if databases is not None else None,
        prior_backup_id=entry.get("prior"),
        references=tuple(entry.get("reference") or ()),
    )


@dataclass(frozen=True)
class Finding:
    """One problem `verify` found, with what it concerns so that a single backup's
    verification can keep only its own problems."""

    text: str
    backup_id: str | None = None
    wal_range: tuple[str, str] | None = None
    wal_exclusive: bool = False  # a gap: the bounds themselves are present
    summary: bool = False  # a count that repeats per-file findings

    def concerns(self, labels: set[str], wal_start: str, wal_stop: str) -> bool:
        if self.backup_id is not None:
            return self.backup_id in labels
        if self.wal_range is not None:
            first, last = self.wal_range
            if self.wal_exclusive:
                return first < wal_stop and last > wal_start
            return first <= wal_stop and last >= wal_start
        return not self.summary


def log_records(stderr: str) -> list[tuple[str, str]]:
    """pgBackRest's stderr as (level, message) records, continuation lines joined."""
    records: list[tuple[str, str]] = []
    for line in stderr.splitlines():
        match = LOG_RECORD_RE.match(line)
        if match:
            records.append((match[1], match[2].strip()))
        elif records and line.strip():
            level, text = records[-1]
            records[-1] = (level, f"{text} {line.strip()}")
    return records


def finding_for(text: str) -> Finding:
    """A per-file problem names a WAL segment or a backup's file; say which."""
    segment = SEGMENT_RE.search(text)
    if segment:
        return Finding(text, wal_range=(segment[0], segment[0]))
    label = LABEL_RE.search(text)
    return Finding(text, backup_id=label[0] if label else None)


def wal_gap_findings(ranges: list[tuple[str, str, str]]) -> list[Finding]:
    """Gaps between the continuous WAL ranges verify lists (at detail level), per timeline.
    A new timeline starting elsewhere is not a gap."""
    spans: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for archive_id, start, stop in ranges:
        spans[(archive_id, start[:8])].append((start, stop))
    findings = []
    for (archive_id, _), timeline_spans in spans.items():
        timeline_spans.sort()
        for (_, before), (after, _) in zip(timeline_spans, timeline_spans[1:], strict=False):
            findings.append(
                Finding(
                    f"archive {archive_id}: WAL missing after {before} and before {after}; "
                    "point-in-time recovery cannot cross this gap",
                    wal_range=(before, after),
                    wal_exclusive=True,
                )
            )
    return findings


def nonzero_counts(line: str) -> str:
    """'missing: 0, checksum invalid: 1' -> 'checksum invalid: 1'."""
    parts = [part.strip() for part in line.split(",")]
    return ", ".join(part for part in parts if part and not part.endswith(": 0"))


def summary_findings(stdout: str) -> tuple[str, list[Finding]]:
    """The overall status and the invalid backups and archives of verify's text summary."""
    status = ""
    findings: list[Finding] = []
    lines = [line.strip() for line in stdout.splitlines()]
    for i, line in enumerate(lines):
        counts = nonzero_counts(lines[i + 1]) if i + 1 < len(lines) else ""
        if line.startswith("status:"):
            status = line.partition(":")[2].strip()
        elif match := re.match(r"backup: (\S+), status: ([^,]+)", line):
            if match[2] != "valid":
                text = f"backup {match[1]} is {match[2]}" + (f" ({counts})" if counts else "")
                findings.append(Finding(text, backup_id=match[1], summary=True))
        elif match := re.match(r"archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)", line):
            if match[2] != match[3]:
                bad = int(match[2]) - int(match[3])
                text = f"archive {match[1]}: {bad} of {match[2]} WAL segments invalid" + (
                    f" ({counts})" if counts else ""
                )
                findings.append(Finding(text, summary=True))
    return status, findings


def verify_findings(stdout: str, stderr: str) -> tuple[str, list[Finding]]:
    """Everything `pgbackrest verify --output=text --verbose --log-level-stderr=detail`
    reports as wrong: per-file problems (logged at info level), warnings and errors, invalid
    backups and archives from the summary, and gaps in the archived WAL."""
    findings: list[Finding] = []
    ranges: list[tuple[str, str, str]] = []
    for level, text in log_records(stderr):
        if level == "DETAIL":
            if match := WAL_RANGE_RE.search(text):
                ranges.append((match[1], match[2], match[3]))
        elif level in ("INFO", "WARN", "ERROR"):
            # The summary is repeated as an info record; the command's begin/end lines are not
            # findings either.
            if not text.startswith(("verify command", "stanza:")):
                findings.append(finding_for(text))
    status, summary = summary_findings(stdout)
    return status, [*findings, *summary, *wal_gap_findings(ranges)]


# ---------------------------------------------------------------------------------------------


class LocalPgBackRest(BackupEngine):
    """pgBackRest with a repository under `home` (posix) or in S3 (`repo_type="s3"`, settings
    from the environment, see `S3Repository`; only posix is exercised by the tests).

    `cipher_passphrase_for(stanza)` returns the stanza's repository passphrase (from the
    Secrets port); it must return the same value for the life of the stanza. Without it, a
    random passphrase is generated once per stanza and kept in the stanza's configuration
    file only: losing that file then loses the backups. `encrypt=False` turns encryption off.
    """

    def __init__(
        self,
        home: Path,
        cipher_passphrase_for: Callable[[str], str] | None = None,
        repo_type: str = "posix",
        *,
        encrypt: bool = True,
        binary: str | None = None,
        long_timeout: float = LONG_TIMEOUT,
    ) -> None:
        if repo_type not in REPO_TYPES:
            raise ValueError(f"unknown repo_type {repo_type!r}: use one of {', '.join(REPO_TYPES)}")
        self._home = Path(home)
        # stanza -> (execId of the backup, the last percentage read of it)
        self._last_percent: dict[str, tuple[Any, int]] = {}
        self._passphrase_for = cipher_passphrase_for
        self._repo_type = repo_type
        self._encrypt = encrypt
        self._binary = binary or shutil.which("pgbackrest") or "/usr/bin/pgbackrest"
        self._long_timeout = long_timeout

    # -- paths and configuration ----------------------------------------------------------

    @property
    def repo_path(self) -> Path:
        return self._home / REPO_DIR

    @property
    def config_dir(self) -> Path:
        return self._home / CONFIG_DIR

    def config_path(self, stanza: str) -> Path:
        return self.config_dir / f"{checked_stanza(stanza)}.conf"

    def _prepare_dirs(self) -> None:
        for directory in (self.config_dir, *self._own_dirs().values()):
            process.make_owned_dir(directory, 0o700)
        if self._repo_type == "posix":
            process.make_owned_dir(self.repo_path, 0o750)
        # The data-plane user must reach home (it may sit under /root when running as root).
        process.ensure_traversable(self._home)

    def _own_dirs(self) -> dict[str, Path]:
        return {name: self.config_dir / name for name in ("log", "lock", "spool")}

    def _repo_options(self) -> dict[str, str]:
        if self._repo_type == "s3":
            return S3Repository.from_env(os.environ).options()
        return {"repo1-type": "posix", "repo1-path": str(self.repo_path)}

    def _cipher_options(self, stanza: str) -> dict[str, str]:
        if not self._encrypt:
            return {}
        if self._passphrase_for is not None:
            passphrase = self._passphrase_for(stanza)
        else:
            # Keep the passphrase an earlier call generated: the repository is encrypted with it.
            kept = read_ini_option(self.config_path(stanza), "repo1-cipher-pass")
            passphrase = kept or secrets.token_urlsafe(48)
        if not passphrase:
            raise EngineError(f"no repository passphrase for stanza {stanza!r}")
        return {"repo1-cipher-type": CIPHER_TYPE, "repo1-cipher-pass": passphrase}

    def _write_config(
        self, stanza: str, pg_data_dir: str | Path, pg_socket_dir: str | Path, pg_port: int
    ) -> None:
        self._prepare_dirs()
        dirs = self._own_dirs()
        global_options = {
            **self._repo_options(),
            **self._cipher_options(stanza),
            "repo1-retention-full": NO_AUTOMATIC_EXPIRY,
            "log-path": str(dirs["log"]),
            "lock-path": str(dirs["lock"]),
            "spool-path": str(dirs["spool"]),
            # Results come from --output on stdout; problems from stderr.
            "log-level-console": "off",
            "log-level-stderr": "warn",
            "log-level-file": "info",
            "start-fast": "y",
            "process-max": "2",
            "compress-type": supported_compress_type(self._binary),
            "archive-async": "n",
        }
        server_options = {
            "pg1-path": str(pg_data_dir),
            "pg1-socket-path": str(pg_socket_dir),
            "pg1-port": str(int(pg_port)),
            "pg1-user": "postgres",
        }
        content = render_ini({"global": global_options, stanza: server_options})
        process.write_owned_file(self.config_path(stanza), content, 0o600)

    # -- running commands -----------------------------------------------------------------

    def _run(
        self,
        stanza: str,
        command: str,
        *options: str,
        arguments: Sequence[str] = (),
        timeout: float = COMMAND_TIMEOUT,
        background: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        config = self.config_path(stanza)
        if not config.exists():
            raise EngineError(f"stanza {stanza!r} is not configured: call archive_settings first")
        argv = pgbackrest_argv(
            self._binary, command, options, config=config, stanza=stanza, arguments=arguments
        )
        try:
            return process.run(
                argv, timeout=timeout, cwd=self.config_dir, nice=BACKGROUND_NICE if background else 0
            )
        except EngineError as exc:
            raise EngineError(f"pgBackRest {command} of stanza {stanza!r}: {exc}") from exc

    def _info(self, stanza: str, *options: str) -> dict[str, Any]:
        """The stanza's entry of `pgbackrest info --output=json`; {} when not configured."""
        if not self.config_path(stanza).exists():
            return {}
        entries = parsed_json(self._run(stanza, "info", "--output=json", *options).stdout, "info")
        return next((entry for entry in entries if entry.get("name") == stanza), {})

    @staticmethod
    def _backups_of(stanza: str, info: Mapping[str, Any]) -> list[BackupInfo]:
        status = info.get("status") or {}
        # 0 ok, 1 missing stanza path, 2 no valid backups: anything else is a broken repository.
        if status.get("code", 0) not in (0, 1, 2):
            repos = "; ".join(
                f"repo{repo.get('key')}: {(repo.get('status') or {}).get('message')}"
                for repo in info.get("repo") or []
            )
            raise EngineError(f"stanza {stanza!r}: {status.get('message')} ({repos})")
        return [parse_backup(entry) for entry in info.get("backup") or []]

    def _backup(self, stanza: str, backup_id: str) -> BackupInfo:
        """One backup with its database list (read from its manifest)."""
        info = self._info(stanza, f"--set={backup_id}")
        for backup in self._backups_of(stanza, info):
            if backup.backup_id == backup_id:
                return backup
        raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")

    def _newest_wal_time(self, stanza: str, info: Mapping[str, Any]) -> datetime | None:
        """When the newest archived WAL segment reached the repository. info names the
        segment but not its time; the repository listing has it."""
        archives = info.get("archive") or []
        if not archives:
            return None
        current = max(archives, key=lambda archive: (archive.get("database") or {}).get("id", 0))
        newest = current.get("max")
        if not newest:
            return None
        path = f"archive/{stanza}/{current['id']}/{newest[:16]}"
        listing = parsed_json(
            self._run(stanza, "repo-ls", "--output=json", arguments=[path]).stdout, "repo-ls"
        )
        times = [
            meta["time"]
            for name, meta in listing.items()
            if name.startswith(newest) and meta.get("type") == "file" and "time" in meta
        ]
        return utc(max(times)) if times else None

    # -- the port -------------------------------------------------------------------------

    def archive_settings(
        self,
        stanza: str,
        pg_data_dir: str | Path,
        pg_socket_dir: str | Path,
        pg_port: int,
        pg_version: str | None = None,
    ) -> dict[str, str]:
        self._write_config(stanza, pg_data_dir, pg_socket_dir, pg_port)
        command = pgbackrest_argv(
            self._binary,
            "archive-push",
            [PG1_PATH_FROM_CWD],
            config=self.config_path(stanza),
            stanza=stanza,
            arguments=["%p"],
        )
        # PostgreSQL runs archive_command through the shell and expands %-escapes in it: quote
        # for the shell, double any % of a path, and leave %p and the shell's $(pwd) alone.
        raw = ("%p", PG1_PATH_FROM_CWD)
        quoted = " ".join(arg if arg in raw else shlex.quote(arg).replace("%", "%%") for arg in command)
        return {"archive_mode": "on", "archive_command": quoted, "archive_timeout": "60"}

    def create_stanza(
        self, stanza: str, pg_data_dir: str | Path, pg_socket_dir: str | Path, pg_port: int
    ) -> str:
        self._write_config(stanza, pg_data_dir, pg_socket_dir, pg_port)
        existed = (self._info(stanza).get("status") or {}).get("code") != 1
        # stanza-create is itself idempotent and checks that an existing stanza belongs to
        # this server (system identifier and version).
        self._run(stanza, "stanza-create", background=True)
        return f"stanza {stanza!r} {'already existed' if existed else 'created'} in the repository"

    def check(self, stanza: str) -> str:
        self._run(stanza, "check")
        return f"WAL of stanza {stanza!r} reaches the repository"

    def backup(self, stanza: str, type: str, compress_level: int | None = None) -> BackupInfo:
        options = [f"--type={backup_type(type)}"]
        if compress_level is not None:
            options.append(f"--compress-level={int(compress_level)}")
        before = {backup.backup_id for backup in self.list_backups(stanza)}
        self._run(stanza, "backup", *options, timeout=self._long_timeout, background=True)
        new = [backup for backup in self.list_backups(stanza) if backup.backup_id not in before]
        if not new:
            raise EngineError(f"pgBackRest reported success but stanza {stanza!r} has no new backup")
        log.info("stanza %s: %s backup %s complete", stanza, new[-1].type, new[-1].backup_id)
        return self._backup(stanza, new[-1].backup_id)

    def cancel_backup(self, stanza: str) -> str | None:
        if not self.config_path(stanza).exists() or self.backup_progress(stanza) is None:
            return None
        # stop --force signals every process holding a lock of the stanza (the backup, and an
        # archive-push PostgreSQL retries); start accepts commands again.
        self._run(stanza, "stop", "--force")
        try:
            deadline = time.monotonic() + CANCEL_TIMEOUT
            while self.backup_progress(stanza) is not None:
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"the backup of stanza {stanza!r} did not stop within {CANCEL_TIMEOUT:.0f}s"
                    )
                time.sleep(0.1)
        finally:
            self._run(stanza, "start")
        return f"cancelled the running backup of stanza {stanza!r}"

    def backup_progress(self, stanza: str) -> int | None:
        lock = ((self._info(stanza).get("status") or {}).get("lock") or {}).get("backup") or {}
        if not lock.get("held"):
            self._last_percent.pop(stanza, None)
            return None
        # Newer pgBackRest releases put sizes in the JSON. 2.45 keeps the percentage only in
        # its lock file (which its text output quotes, but unreliably: see _lock_percent).
        if lock.get("size") and "size-cplt" in lock:
            return clamp_percent(100 * float(lock["size-cplt"]) / float(lock["size"]))
        return self._lock_percent(stanza)

    def _lock_percent(self, stanza: str) -> int | None:
        """The percentage in the backup lock file: {"execId", "pid", "pctCplt": hundredths},
        with no pctCplt until the files to copy are listed. pgBackRest rewrites the file in
        place, so a read can find it empty: read again."""
        path = self._own_dirs()["lock"] / f"{stanza}-backup.lock"
        for _ in range(LOCK_READ_ATTEMPTS):
            try:
                content = json.loads(path.read_text())
            except FileNotFoundError:
                return None  # it ended since info looked
            except json.JSONDecodeError:
                time.sleep(0.005)
                continue
            percent = clamp_percent(float(content.get("pctCplt", 0)) / 100)
            execution, last = self._last_percent.get(stanza, (None, 0))
            if execution == content.get("execId"):
                percent = max(percent, last)
            self._last_percent[stanza] = (content.get("execId"), percent)
            return percent
        # Caught mid-rewrite every time (a niced backup is preempted more often): the last
        # figure read of this backup, never a lower one.
        return self._last_percent.get(stanza, (None, 0))[1]

    def list_backups(self, stanza: str) -> list[BackupInfo]:
        return self._backups_of(stanza, self._info(stanza))

    def restorable_window(self, stanza: str) -> RestorableWindow | None:
        info = self._info(stanza)
        backups = self._backups_of(stanza, info)
        if not backups:
            return None
        # Stop times are truncated to the second: one second later the backup is surely
        # consistent, and PostgreSQL refuses a target before that.
        earliest = min(backup.finished_at for backup in backups) + ONE_SECOND
        latest = max(backup.finished_at for backup in backups) + ONE_SECOND
        newest_wal = self._newest_wal_time(stanza, info)
        if newest_wal is not None:
            latest = max(latest, newest_wal + ONE_SECOND)
        return RestorableWindow(earliest=earliest, latest=latest)

    def verify(self, stanza: str, backup_id: str | None = None) -> VerifyResult:
        backups = self.list_backups(stanza)
        chosen = None
        if backup_id is not None:
            chosen = next((backup for backup in backups if backup.backup_id == backup_id), None)
            if chosen is None:
                raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        # pgBackRest 2.45 accepts --set for verify but checks the whole repository anyway; keep
        # what concerns the backup instead. Its exit code is 0 even when it finds problems.
        proc = self._run(
            stanza,
            "verify",
            "--output=text",
            "--verbose",
            "--log-level-stderr=detail",
            timeout=self._long_timeout,
        )
        status, findings = verify_findings(proc.stdout, proc.stderr)
        if chosen is not None:
            labels = {chosen.backup_id, *chosen.references}
            findings = [f for f in findings if f.concerns(labels, chosen.wal_start, chosen.wal_stop)]
        elif status != "ok" and not findings:
            findings = [Finding(f"pgBackRest reports status {status or 'unknown'} without details")]
        return VerifyResult(ok=not findings, findings=[finding.text for finding in findings])

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
        if moment is not None:
            recovery, outcome = self._time_recovery(stanza, chosen, moment, exact)
        elif backup_id is not None:
            recovery = ["--type=immediate", "--target-action=promote"]
            outcome = f"on start it recovers to the end of backup {chosen.backup_id} and promotes"
        else:
            recovery, outcome = [], REPLAY_ALL
        # archive-mode=off: the restored server shares the source's configuration, including
        # its archive_command, and must never push its WAL into the source stanza.
        options = [
            f"--pg1-path={target}",
            "--archive-mode=off",
            f"--set={chosen.backup_id}",
            f"--process-max={RESTORE_PROCESS_MAX}",
            *recovery,
        ]
        if delta:
            options.append("--delta")
        # 0700 as PostgreSQL requires; reaching it is the caller's layout (the local engine's
        # data directories sit under the home that _prepare_dirs makes traversable).
        process.make_owned_dir(target, 0o700)
        self._run(stanza, "restore", *options, timeout=self._long_timeout)
        reason = f"restored backup {chosen.backup_id} of stanza {stanza!r} into {target}; {outcome}"
        log.info("%s", reason)
        return reason

    def _backup_to_restore(self, stanza: str, backup_id: str | None, target: datetime | None) -> BackupInfo:
        """The named backup; else the newest one surely consistent before `target` (chosen
        here rather than by pgBackRest, which compares its truncated stop times); else the
        newest."""
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

    def _time_recovery(
        self, stanza: str, chosen: BackupInfo, target: datetime, exact: bool = False
    ) -> tuple[list[str], str]:
        """Restore options and outcome for recovery to `target` from `chosen`."""
        if target < chosen.finished_at + ONE_SECOND:
            raise EngineError(too_early(stanza, target, chosen.finished_at + ONE_SECOND))
        window = None if exact else self.restorable_window(stanza)
        if window is not None and target >= window.latest:
            # Nothing archived is later than the target. A time target would fail instead:
            # PostgreSQL stops only at a commit after the target, and there is none.
            return [], f"{REPLAY_ALL} (target {target.isoformat()} is past the newest archived WAL)"
        stamp = target.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return (
            ["--type=time", f"--target={stamp}", "--target-action=promote"],
            f"on start it recovers to {target.isoformat()} and promotes",
        )

    def check_structure(self, stanza: str, backup_id: str) -> VerifyResult:
        every = {entry["label"]: entry for entry in self._info(stanza).get("backup") or []}
        info = self._info(stanza, f"--set={backup_id}")
        entry = next((e for e in info.get("backup") or [] if e.get("label") == backup_id), None)
        if entry is None:
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        findings = []
        if entry.get("database-ref") is None:
            findings.append(f"backup {backup_id}: its manifest could not be read (no database list)")
        for reference in entry.get("reference") or ():
            if reference not in every:
                findings.append(f"backup {backup_id} needs files of backup {reference}, which is missing")
        archive = entry.get("archive") or {}
        start, stop = archive.get("start"), archive.get("stop")
        if not start or not stop:
            findings.append(f"backup {backup_id}: no WAL range is recorded")
        else:
            missing = self._missing_segments(stanza, info, entry, start, stop)
            if missing:
                findings.append(
                    f"backup {backup_id}: WAL segment(s) {', '.join(missing)} missing from the archive "
                    f"(it needs {start} to {stop} to become consistent)"
                )
        return VerifyResult(ok=not findings, findings=findings)

    def _missing_segments(
        self, stanza: str, info: Mapping[str, Any], entry: Mapping[str, Any], start: str, stop: str
    ) -> list[str]:
        """Segments from `start` to `stop` without a file in the backup's archive."""
        database = (entry.get("database") or {}).get("id")
        archive_id = next(
            (a["id"] for a in info.get("archive") or [] if (a.get("database") or {}).get("id") == database),
            None,
        )
        wanted = segment_range(start, stop)
        if archive_id is None:
            return wanted
        present: set[str] = set()
        for directory in sorted({segment[:16] for segment in wanted}):
            path = f"archive/{stanza}/{archive_id}/{directory}"
            listing = parsed_json(
                self._run(stanza, "repo-ls", "--output=json", arguments=[path]).stdout, "repo-ls"
            )
            # Segments are stored as <segment>-<sha1>[.ext]; <segment>.<offset>.backup files
            # sit beside them and do not count.
            present |= {
                name[:24]
                for name, meta in listing.items()
                if meta.get("type") == "file" and (len(name) == 24 or name[24:25] == "-")
            }
        return [segment for segment in wanted if segment not in present]

    def repository(self, stanza: str) -> str:
        return f"pgBackRest, encrypted aes-256-cbc with the stanza's passphrase from Secrets, {self.location(stanza)}"

    def location(self, stanza: str) -> str:
        checked_stanza(stanza)
        if self._repo_type == "s3":
            repo = S3Repository.from_env(os.environ)
            return f"s3://{repo.bucket}{repo.path.rstrip('/')}/backup/{stanza}"
        return f"posix:{self.repo_path / 'backup' / stanza}"

    def expire_backup(self, stanza: str, backup_id: str) -> str:
        before = [backup.backup_id for backup in self.list_backups(stanza)]
        if backup_id not in before:
            return f"backup {backup_id} already gone from stanza {stanza!r}"
        self._run(stanza, "expire", f"--set={backup_id}", timeout=self._long_timeout)
        kept = {backup.backup_id for backup in self.list_backups(stanza)}
        removed = [label for label in before if label not in kept]
        return f"expired {', '.join(removed)} from stanza {stanza!r}; kept {len(kept)} backup(s)"

    def expire(self, stanza: str, retention_full: int) -> str:
        if retention_full < 1:
            raise ValueError("retention_full must be at least 1")
        before = [backup.backup_id for backup in self.list_backups(stanza)]
        self._run(stanza, "expire", f"--repo1-retention-full={retention_full}", timeout=self._long_timeout)
        kept = {backup.backup_id for backup in self.list_backups(stanza)}
        removed = [label for label in before if label not in kept]
        if not removed:
            return f"nothing to expire: {len(kept)} backup(s) within retention"
        return f"expired {len(removed)} backup(s): {', '.join(removed)}; kept {len(kept)}"

    def delete_stanza(self, stanza: str) -> str:
        config = self.config_path(stanza)
        if not config.exists():
            return f"stanza {stanza!r} not configured: nothing to delete"
        # stanza-delete requires the stanza stopped; --force because the server may still
        # run (its archive_command fails from now on).
        self._run(stanza, "stop")
        self._run(stanza, "stanza-delete", "--force")
        self._remove_local_files(stanza)
        return f"deleted stanza {stanza!r}: backups, archived WAL and configuration"

    def _remove_local_files(self, stanza: str) -> None:
        dirs = self._own_dirs()
        (dirs["lock"] / f"{stanza}.stop").unlink(missing_ok=True)
        for command in LOGGED_COMMANDS:
            (dirs["log"] / f"{stanza}-{command}.log").unlink(missing_ok=True)
        # The configuration goes last: while it exists, a retry can finish the deletion.
        self.config_path(stanza).unlink(missing_ok=True)
