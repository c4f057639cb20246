"""The BackupEngine port: physical backups, verification, restore and point-in-time recovery.

A backup engine keeps backups of a server in a repository under a *stanza* (one stanza per
server or cluster: the name backups and archived WAL are filed under). Continuous WAL archiving
into the stanza, plus full/incremental/differential backups, make every moment between the
oldest backup and the newest archived WAL restorable.

The order of use is: `archive_settings` (apply them to the server and restart it) ->
`create_stanza` -> `backup` ... -> `restore` -> `expire`/`expire_backup` ... -> `delete_stanza`.

Services call it from Operation steps that may be retried after a crash at any point. Methods
that only declare or read state are idempotent; `backup` and `restore` are not (see each).
Every method raises `EngineError` (from `pgfleet.core.errors`) with a readable message when the
backend refuses or fails, and `ValueError` for arguments that can never be valid (an unknown
backup type, a malformed stanza name); never backend-specific exceptions.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# The API's names (the seeds say FULL / INCREMENTAL / DIFFERENTIAL) and pgBackRest's short
# names both map to the short names that `BackupInfo.type` carries.
BACKUP_TYPES: dict[str, str] = {
    "full": "full",
    "incremental": "incr",
    "incr": "incr",
    "differential": "diff",
    "diff": "diff",
}


def backup_type(value: str) -> str:
    """The short backup type ("full", "incr", "diff") for an API or short name, any case.
    Raises ValueError for anything else."""
    try:
        return BACKUP_TYPES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown backup type {value!r}: use full, incremental or differential") from None


@dataclass(frozen=True)
class BackupInfo:
    """One backup in the repository.

    `size_bytes` is the size of the database the backup restores to; `repo_size_bytes` is what
    this backup itself stored in the repository (compressed, encrypted, without the files it
    references in prior backups). Times are timezone-aware UTC, to the second.
    """

    backup_id: str  # the engine's label, e.g. pgBackRest "20250101-101500F_20250101-111500I"
    type: str  # "full" | "incr" | "diff"
    started_at: datetime
    finished_at: datetime
    size_bytes: int
    repo_size_bytes: int
    wal_start: str  # first WAL segment the backup needs to become consistent
    wal_stop: str  # last WAL segment the backup needs to become consistent
    lsn_start: str
    lsn_stop: str
    # None when not read: listing backups does not open every backup's manifest.
    database_list: list[str] | None = None
    prior_backup_id: str | None = None  # the backup an incr/diff backup is based on
    references: tuple[str, ...] = field(default_factory=tuple)  # every backup it needs files from


@dataclass(frozen=True)
class RestorableWindow:
    """The span of times a point-in-time restore can target, both ends inclusive and
    timezone-aware. `latest` moves forward as WAL is archived."""

    earliest: datetime
    latest: datetime


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking backups and archived WAL against their checksums. `findings`
    are readable sentences, one problem each; empty when `ok`."""

    ok: bool
    findings: list[str] = field(default_factory=list)


class BackupEngine(abc.ABC):
    """Backs up and restores servers. See the module docstring for the contract shared by
    every method."""

    @abc.abstractmethod
    def archive_settings(
        self,
        stanza: str,
        pg_data_dir: str | Path,
        pg_socket_dir: str | Path,
        pg_port: int,
        pg_version: str | None = None,
    ) -> dict[str, str]:
        """The PostgreSQL settings that archive the server's WAL into `stanza`:
        archive_mode=on, an archive_command, and archive_timeout=60 (so at most about a minute
        of committed work is missing from the archive on an active server); an engine may add
        settings its backups need (summarize_wal for incremental pg_basebackup).

        `pg_version` is the server's major version, for a server whose data directory does
        not exist yet (its PG_VERSION file, when there, wins): an engine that serves several
        tools chooses by it.

        Also records where the server lives (data directory, socket directory, port) for the
        stanza's later commands: for a cluster, call it again with the current primary before
        `check` or `backup`. The archive_command itself does not depend on that record (it
        names the directory the server runs in), so one command serves every node of a
        cluster. Idempotent: calling it again rewrites the same configuration.
        archive_mode needs a server restart to take effect; the caller applies the settings.
        Returns quickly (no server contact).
        """

    @abc.abstractmethod
    def create_stanza(
        self, stanza: str, pg_data_dir: str | Path, pg_socket_dir: str | Path, pg_port: int
    ) -> str:
        """Create the stanza in the repository for the server at `pg_data_dir`.

        The server must be running (the engine reads its system identifier and version).
        Idempotent: an existing stanza for the same server is left as it is. Raises EngineError
        when the stanza exists for a different server. Blocks for a few seconds at most.
        Returns a short reason.
        """

    @abc.abstractmethod
    def check(self, stanza: str) -> str:
        """Confirm that archiving works end to end: forces a WAL switch on the running server
        and waits (up to about 60 s) until the segment reaches the repository. Raises
        EngineError when it does not. Changes nothing but the WAL position; safe to repeat."""

    @abc.abstractmethod
    def backup(self, stanza: str, type: str, compress_level: int | None = None) -> BackupInfo:
        """Take a backup of the running server and block until it is complete and its WAL is
        archived (hours for a large database; bounded by the engine's long timeout).

        `type` is full, incremental or differential (API or short names). An incremental or
        differential backup without a prior full backup becomes a full one; the returned
        `BackupInfo.type` says what was taken. Not idempotent: each call takes a new backup. A
        backup interrupted by a crash is resumed or discarded by the next one. Raises
        EngineError when another backup of the stanza is running.
        """

    @abc.abstractmethod
    def cancel_backup(self, stanza: str) -> str | None:
        """Terminate the backup of the stanza running now, if one runs, and wait (up to about
        a minute) until it has stopped; the caller whose `backup` call it was gets EngineError.
        Commands of the stanza are refused while it stops (archive_command too: PostgreSQL
        keeps the WAL and retries), and accepted again afterwards. For a delete that keeps no
        backup: it need not wait for one nobody will restore. Idempotent; returns a short
        reason when it cancelled one, None when none ran."""

    @abc.abstractmethod
    def backup_progress(self, stanza: str) -> int | None:
        """Percent complete (0-100) of the backup running now, or None when none runs.
        Returns immediately; never raises for a stanza without backups."""

    @abc.abstractmethod
    def list_backups(self, stanza: str) -> list[BackupInfo]:
        """Every backup of the stanza, oldest first. An unknown stanza has none. Read-only."""

    @abc.abstractmethod
    def restorable_window(self, stanza: str) -> RestorableWindow | None:
        """The times a point-in-time restore can target, or None without any backup.

        `earliest` is just after the oldest backup became consistent; `latest` is just after
        the newest archived WAL segment reached the repository. Read-only.
        """

    @abc.abstractmethod
    def verify(self, stanza: str, backup_id: str | None = None) -> VerifyResult:
        """Check backup files and archived WAL against the checksums recorded when they were
        written, and look for gaps in the archived WAL.

        With `backup_id`, only findings that affect that backup count: its own files, the
        files it references in prior backups, and the WAL it needs to become consistent.
        Read-only; blocks while it reads the repository (minutes for a large one). Raises
        EngineError for an unknown `backup_id` or when the repository cannot be read at all.
        """

    @abc.abstractmethod
    def restore(
        self,
        stanza: str,
        backup_id: str | None,
        target_time: datetime | None,
        target_dir: str | Path,
        delta: bool = False,
        exact: bool = False,
    ) -> str:
        """Lay out a data directory at `target_dir` from the stanza's backups, ready to start.

        - neither: the newest backup, then every archived WAL (the latest state);
        - `backup_id` only: that backup, recovered just to its consistent point;
        - `target_time` (with or without `backup_id`): point-in-time recovery; the engine
          picks the newest backup consistent before it unless `backup_id` is given. A naive
          datetime is read as UTC. Raises EngineError for a target before the restorable
          window (or before the given backup); a target past its end replays every archived
          WAL, which is the same state. With `exact`, the target is kept as it is: the caller
          archives WAL up to it before the server starts, and handles a recovery that ends
          before the target (nothing was committed after it) by replaying everything.

        The server replays WAL and promotes itself when the caller starts it. The restored
        configuration has archiving off (archive_mode=off in postgresql.auto.conf, which wins
        over include files), so the restored server never archives into the source stanza;
        turn archiving on for a new stanza explicitly.

        `target_dir` must be missing or empty and no server may run on it; with `delta`, an
        existing data directory is overwritten in place, copying only what differs. Not
        idempotent as such: a restore interrupted part-way leaves a directory that cannot
        start (its pg_control is written last); repeat it with `delta=True`. Blocks until the
        files are in place. Returns a short reason.
        """

    @abc.abstractmethod
    def check_structure(self, stanza: str, backup_id: str) -> VerifyResult:
        """Check that a backup is complete as recorded, without reading file contents: its
        manifest is readable, every backup it references is still there, and every WAL
        segment from its start to its stop segment is in the archive. Read-only and quick.
        Raises EngineError for an unknown `backup_id`."""

    def repository(self, stanza: str) -> str:
        """The stanza's tool, its protection and where it lives, in a few words for people
        ("pgBackRest, encrypted aes-256-cbc, posix:/..."). No repository access."""
        return self.location(stanza)

    @abc.abstractmethod
    def location(self, stanza: str) -> str:
        """Where the stanza's backups live, for people: "posix:/path/backup/<stanza>" or
        "s3://bucket/path/backup/<stanza>". No repository access."""

    @abc.abstractmethod
    def expire_backup(self, stanza: str, backup_id: str) -> str:
        """Remove one backup, the incremental and differential backups that depend on it, and
        the archived WAL no remaining backup needs. Idempotent: a backup already gone is not
        an error. Raises EngineError when the backup is the stanza's newest full backup
        (the repository always keeps one; `delete_stanza` removes everything). Returns a
        short reason naming what was removed."""

    @abc.abstractmethod
    def expire(self, stanza: str, retention_full: int) -> str:
        """Keep the newest `retention_full` full backups (and the incrementals and
        differentials based on them, and the WAL they need); remove older ones. Idempotent.
        Returns a short reason naming what was removed."""

    @abc.abstractmethod
    def delete_stanza(self, stanza: str) -> str:
        """Remove the stanza's backups, archived WAL and configuration. Idempotent: a missing
        stanza is not an error. Turn off archiving on the server first: its archive_command
        fails from now on. Returns a short reason."""
