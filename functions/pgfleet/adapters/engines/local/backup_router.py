"""One BackupEngine over two tools: pgBackRest for the versions it supports, Barman for the
newer ones (Debian's pgBackRest 2.45 cannot back up PostgreSQL 18).

A stanza's tool is chosen whenever the stanza is pointed at a server (`archive_settings`,
`create_stanza`): by the major version in the data directory's PG_VERSION, or, for a server
not created yet, the version the caller gives. The choice is recorded in
`home/backup-tools/<stanza>` (one small file per stanza, written atomically, read by every
process of the stack): the current tool on the first line, then the tools that served the
stanza before (an in-place major upgrade from 15 to 18 moves a stanza from pgBackRest to
Barman; its earlier backups stay where they are, listed, verifiable and restorable by id). A
stanza without a record is pgBackRest's: every stanza made before this router existed is.

New archiving, checks and backups go to the current tool; a call about one backup goes to the
tool holding it; listings and retention span every tool of the stanza.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.barman import checked_stanza
from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import BackupEngine, BackupInfo, RestorableWindow, VerifyResult

log = logging.getLogger(__name__)

PGBACKREST = "pgbackrest"
BARMAN = "barman"
RECORD_DIR = "backup-tools"
# The newest major version pgfleet backs up with Debian bookworm's pgBackRest (2.45, released
# before PostgreSQL 16): newer ones go to Barman.
PGBACKREST_NEWEST_MAJOR = 15


def tool_for_version(version: str) -> str:
    """The tool that backs up a server of major `version`."""
    if version.isdigit() and int(version) > PGBACKREST_NEWEST_MAJOR:
        return BARMAN
    return PGBACKREST


class BackupRouter(BackupEngine):
    """Sends each stanza's calls to `pgbackrest` or `barman` (see the module docstring)."""

    def __init__(self, home: Path, pgbackrest: BackupEngine, barman: BackupEngine) -> None:
        self._home = Path(home)
        self._records = self._home / RECORD_DIR
        self._engines = {PGBACKREST: pgbackrest, BARMAN: barman}

    # -- which tool ---------------------------------------------------------------------------

    def tools_of(self, stanza: str) -> list[str]:
        """The stanza's tools, current first; [pgBackRest] for a stanza without a record."""
        try:
            lines = (self._records / checked_stanza(stanza)).read_text().split()
        except FileNotFoundError:
            return [PGBACKREST]
        tools = [tool for tool in dict.fromkeys(lines) if tool in self._engines]
        return tools or [PGBACKREST]

    def tool_of(self, stanza: str) -> str:
        """The tool that archives and backs up `stanza` now."""
        return self.tools_of(stanza)[0]

    def _choose(self, stanza: str, pg_data_dir: str | Path, pg_version: str | None) -> BackupEngine:
        """The tool for the server at `pg_data_dir`, recorded as the stanza's current one."""
        record = self._records / checked_stanza(stanza)
        try:
            version: str | None = (Path(pg_data_dir) / "PG_VERSION").read_text().strip()
        except OSError:
            version = pg_version
        recorded = self.tools_of(stanza) if record.exists() else []
        if version is None:
            tool = recorded[0] if recorded else PGBACKREST
        else:
            tool = tool_for_version(version)
        if not recorded or recorded[0] != tool:
            process.ensure_traversable(self._home)
            process.make_owned_dir(self._records, 0o700)
            tools = [tool, *(t for t in recorded if t != tool)]
            process.write_owned_file(record, "\n".join(tools) + "\n", 0o600)
            earlier = f" (before: {', '.join(recorded)})" if recorded else ""
            log.info("stanza %s: PostgreSQL %s, backed up with %s%s", stanza, version or "?", tool, earlier)
        return self._engines[tool]

    def _current(self, stanza: str) -> BackupEngine:
        return self._engines[self.tool_of(stanza)]

    def _all(self, stanza: str) -> list[BackupEngine]:
        return [self._engines[tool] for tool in self.tools_of(stanza)]

    def _holding(self, stanza: str, backup_id: str) -> BackupEngine | None:
        """The tool whose repository holds `backup_id`; None when none does."""
        engines = self._all(stanza)
        if len(engines) == 1:
            return engines[0]
        for engine in engines:
            if any(backup.backup_id == backup_id for backup in engine.list_backups(stanza)):
                return engine
        return None

    def _holding_or_current(self, stanza: str, backup_id: str) -> BackupEngine:
        return self._holding(stanza, backup_id) or self._current(stanza)

    # -- the port -----------------------------------------------------------------------------

    def archive_settings(
        self,
        stanza: str,
        pg_data_dir: str | Path,
        pg_socket_dir: str | Path,
        pg_port: int,
        pg_version: str | None = None,
    ) -> dict[str, str]:
        engine = self._choose(stanza, pg_data_dir, pg_version)
        return engine.archive_settings(stanza, pg_data_dir, pg_socket_dir, pg_port, pg_version=pg_version)

    def create_stanza(
        self, stanza: str, pg_data_dir: str | Path, pg_socket_dir: str | Path, pg_port: int
    ) -> str:
        return self._choose(stanza, pg_data_dir, None).create_stanza(
            stanza, pg_data_dir, pg_socket_dir, pg_port
        )

    def check(self, stanza: str) -> str:
        return self._current(stanza).check(stanza)

    def backup(self, stanza: str, type: str, compress_level: int | None = None) -> BackupInfo:
        return self._current(stanza).backup(stanza, type, compress_level)

    def cancel_backup(self, stanza: str) -> str | None:
        return self._current(stanza).cancel_backup(stanza)

    def backup_progress(self, stanza: str) -> int | None:
        return self._current(stanza).backup_progress(stanza)

    def list_backups(self, stanza: str) -> list[BackupInfo]:
        engines = self._all(stanza)
        if len(engines) == 1:
            return engines[0].list_backups(stanza)
        every = [backup for engine in engines for backup in engine.list_backups(stanza)]
        return sorted(every, key=lambda backup: (backup.started_at, backup.backup_id))

    def restorable_window(self, stanza: str) -> RestorableWindow | None:
        # WAL of one major version never replays onto a backup of another: the window is the
        # current tool's, or the earlier one's until the current tool has a backup.
        for engine in self._all(stanza):
            window = engine.restorable_window(stanza)
            if window is not None:
                return window
        return None

    def verify(self, stanza: str, backup_id: str | None = None) -> VerifyResult:
        if backup_id is not None:
            engine = self._holding(stanza, backup_id)
            if engine is None:
                raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
            return engine.verify(stanza, backup_id)
        results = [engine.verify(stanza) for engine in self._all(stanza)]
        return VerifyResult(
            ok=all(result.ok for result in results),
            findings=[finding for result in results for finding in result.findings],
        )

    def restore(
        self,
        stanza: str,
        backup_id: str | None,
        target_time: datetime | None,
        target_dir: str | Path,
        delta: bool = False,
        exact: bool = False,
    ) -> str:
        if backup_id is not None:
            engine = self._holding_or_current(stanza, backup_id)
        else:
            engine = next((e for e in self._all(stanza) if e.list_backups(stanza)), self._current(stanza))
        return engine.restore(stanza, backup_id, target_time, target_dir, delta=delta, exact=exact)

    def check_structure(self, stanza: str, backup_id: str) -> VerifyResult:
        return self._holding_or_current(stanza, backup_id).check_structure(stanza, backup_id)

    def repository(self, stanza: str) -> str:
        return self._current(stanza).repository(stanza)

    def location(self, stanza: str) -> str:
        return self._current(stanza).location(stanza)

    def expire_backup(self, stanza: str, backup_id: str) -> str:
        engine = self._holding(stanza, backup_id)
        if engine is None:
            return f"backup {backup_id} already gone from stanza {stanza!r}"
        if engine is not self._current(stanza) and self._current(stanza).list_backups(stanza):
            # The earlier tool's newest full backup is not the stanza's newest any more.
            backups = engine.list_backups(stanza)
            if len(backups) == 1 or all(
                b.backup_id == backup_id or backup_id in b.references for b in backups
            ):
                reason = engine.delete_stanza(stanza)
                self._forget(stanza, engine)
                return f"expired {backup_id}, the last backup(s) of the earlier tool: {reason}"
        return engine.expire_backup(stanza, backup_id)

    def expire(self, stanza: str, retention_full: int) -> str:
        engines = self._all(stanza)
        reasons = [engines[0].expire(stanza, retention_full)]
        kept = sum(1 for backup in engines[0].list_backups(stanza) if backup.type == "full")
        for engine in engines[1:]:
            if kept >= retention_full:
                reasons.append(f"earlier tool: {engine.delete_stanza(stanza)}")
                self._forget(stanza, engine)
            else:
                reasons.append(f"earlier tool: {engine.expire(stanza, retention_full - kept)}")
                kept += sum(1 for backup in engine.list_backups(stanza) if backup.type == "full")
        return "; ".join(reasons)

    def _forget(self, stanza: str, engine: BackupEngine) -> None:
        """Drop an earlier tool that holds nothing of the stanza any more."""
        tools = [tool for tool in self.tools_of(stanza) if self._engines[tool] is not engine]
        if tools:
            process.write_owned_file(self._records / checked_stanza(stanza), "\n".join(tools) + "\n", 0o600)

    def delete_stanza(self, stanza: str) -> str:
        reasons = [engine.delete_stanza(stanza) for engine in self._all(stanza)]
        # The record goes last: while it exists, a retry deletes with the same tools.
        (self._records / checked_stanza(stanza)).unlink(missing_ok=True)
        return "; ".join(reasons)
