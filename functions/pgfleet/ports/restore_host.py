"""The RestoreHost port: the side of backups and restores that concerns a server's own files
and processes rather than the backup repository (that is the BackupEngine's).

A restore replaces a server's data directory. The host makes that safe: the current data
directory is first *set aside* (kept whole), the restore lays out a new one in its place,
PostgreSQL replays WAL up to the target on its own (`recover`), and only then is the set-aside
directory discarded; `roll_back` puts it back at any point before that. The host also runs
throwaway *scratch* servers from a backup, to check what a backup holds or to copy one
database out of it, and copies single databases between servers (`dump_database` /
`restore_database`).

Services call it from Operation steps that may be retried after a crash at any point: every
method is idempotent unless it says otherwise. Methods raise `EngineError` with a readable
message when the host refuses or fails, never backend-specific exceptions. Identifiers are
quoted by the host; nothing a caller passes is formatted into SQL.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerLocation:
    """Where one server's files are. `port` names its unix socket file (a server run by the
    host itself listens on that socket only, never on TCP)."""

    data_dir: Path
    socket_dir: Path
    port: int


@dataclass(frozen=True)
class ConsistencyReport:
    """What a consistency check of a running server found. `findings` are readable
    sentences, one problem each; empty when everything checked out."""

    databases: list[str]
    tables: int
    rows: int
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


class RestoreHost(abc.ABC):
    """Files and processes of restores. See the module docstring for the contract."""

    # -- where things are -------------------------------------------------------------------

    @abc.abstractmethod
    def server_location(self, server_id: str, port: int) -> ServerLocation:
        """Where the single server `server_id` (of the Engine) keeps its files, whether or not
        it exists yet."""

    @abc.abstractmethod
    def node_location(self, cluster_id: str, node_id: str, port: int) -> ServerLocation:
        """Where node `node_id` of cluster `cluster_id` (of the ClusterEngine) keeps its files."""

    @abc.abstractmethod
    def scratch_location(self, scratch_id: str) -> ServerLocation:
        """Where the scratch server `scratch_id` keeps its files (see `start_scratch`)."""

    # -- replacing a data directory ---------------------------------------------------------

    @abc.abstractmethod
    def set_aside(self, location: ServerLocation) -> str:
        """Prepare `location` for a restore: keep its current data directory whole beside it
        (if it has one) and leave an empty data directory in its place. No server may run
        on it. Idempotent: once set aside, a later call empties the data directory again
        (removing a partial restore) and keeps what was set aside first."""

    @abc.abstractmethod
    def roll_back(self, location: ServerLocation) -> str:
        """Undo `set_aside`: remove whatever a restore left in the data directory and put the
        set-aside one back. Idempotent; nothing to undo is not an error. The server must not
        run."""

    @abc.abstractmethod
    def discard_previous(self, location: ServerLocation) -> str:
        """Commit a restore: delete the set-aside data directory. Idempotent."""

    @abc.abstractmethod
    def recover(
        self,
        location: ServerLocation,
        settings: dict[str, str],
        cluster_id: str | None = None,
        keep_running: bool = False,
    ) -> str:
        """Run PostgreSQL on a freshly restored data directory, alone and on its unix socket
        only, until it has replayed WAL to its recovery target and promoted; then shut it down
        cleanly and remove the recovery settings the restore wrote, so that from its next
        start the server's own configuration decides (archiving included).

        `settings` apply to this one run only (archiving into the right stanza while the new
        timeline begins, or nothing). With `cluster_id`, the directory becomes the first node
        of that cluster: its replication and rewind roles get that cluster's passwords.

        With `keep_running`, the server runs as its own configuration says (a single server,
        provisioned first) rather than alone, and is left running once promoted, saving a
        stop and a start; `settings` then persist until its next restart, so they must agree
        with its configuration.

        Idempotent: a directory that has already recovered is left as it is. Blocks while WAL
        is replayed (bounded by a long timeout). Raises EngineError when recovery fails, with
        the end of the server's log.
        """

    @abc.abstractmethod
    def reset_cluster_state(self, cluster_id: str) -> str:
        """Forget what the HA layer remembers of the cluster's last leader (leader, status,
        history, members), keeping its identity and configuration, so that a restored node
        may lead although its WAL position is behind the old leader's. Every node must be
        stopped. Idempotent."""

    # -- scratch servers ----------------------------------------------------------------------

    @abc.abstractmethod
    def prepare_scratch(self, scratch_id: str) -> ServerLocation:
        """An empty data directory for scratch server `scratch_id`, removing whatever an earlier
        attempt left (a running scratch server included). Returns its location."""

    @abc.abstractmethod
    def start_scratch(self, location: ServerLocation) -> str:
        """Start the restored scratch server at `location` on its unix socket only, without
        archiving, and wait until it has recovered and promoted. Idempotent: a running
        scratch server is left alone."""

    @abc.abstractmethod
    def check_consistency(self, location: ServerLocation) -> ConsistencyReport:
        """Check every database of the running server at `location`: indexes and heap with
        amcheck (pg_amcheck), and every table read to the end (row counts). Installs amcheck
        where it is missing, so use it on scratch servers. Blocks while it reads."""

    @abc.abstractmethod
    def remove_scratch(self, scratch_id: str) -> str:
        """Stop scratch server `scratch_id` and delete its files. Idempotent."""

    # -- single databases ---------------------------------------------------------------------

    @abc.abstractmethod
    def dump_database(
        self,
        location: ServerLocation,
        database: str,
        dump_file: Path,
        passphrase: str,
        schema: str | None = None,
    ) -> int:
        """Write a logical dump of `database` (only `schema` of it, when given) of the running
        server at `location` to `dump_file`, encrypted with `passphrase`. Overwrites an earlier
        attempt. Returns the size of the file in bytes. Raises EngineError for a missing
        database."""

    @abc.abstractmethod
    def restore_database(
        self,
        location: ServerLocation,
        database: str,
        dump_file: Path,
        passphrase: str | None,
        owner: str | None = None,
        schema: str | None = None,
    ) -> str:
        """Make `database` (only `schema` of it, when given) of the running server at
        `location` what `dump_file` holds, leaving every other database untouched. The file
        is a pg_dump custom-format archive, encrypted with `passphrase` (as `dump_database`
        writes it) or plain when `passphrase` is None (as a tenant's final dump is written).

        A dump holds its owners' code (a CHECK constraint calling their function runs for
        every row loaded), so nothing of it is ever restored with a superuser's privileges:
        each object is restored by the role that owns it in the dump when that role exists
        here and is an application's or tenant's (no superuser, CREATEROLE, CREATEDB,
        REPLICATION or BYPASSRLS, not a role of the platform), else by `owner`; when some
        object has neither, nothing changes and EngineError says whose objects they are.

        The current database (or schema) is renamed aside first and dropped only once the
        dump is restored, so a failed restore leaves it as it was. A restored database keeps
        the replaced one's owner, comment, connection limit and privileges; without one it
        belongs to `owner` when given, else to the superuser. Schemas are created by the host
        itself, owned as in the dump. Large objects follow the server's policy (only an
        application role that owns the database may write them). Idempotent. Returns a short
        reason."""

    @abc.abstractmethod
    def delete_dump(self, dump_file: Path) -> str:
        """Remove a dump file. Idempotent."""

    @abc.abstractmethod
    def dump_path(self, stanza: str, backup_id: str) -> Path:
        """Where the logical dump `backup_id` of the resource archived in `stanza` is kept."""
