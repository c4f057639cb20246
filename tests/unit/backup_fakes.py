"""In-memory fakes of the BackupEngine and RestoreHost ports (used by FakePorts)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import BackupEngine, BackupInfo, RestorableWindow, VerifyResult, backup_type
from pgfleet.ports.restore_host import ConsistencyReport, RestoreHost, ServerLocation


class FakeBackupEngine(BackupEngine):
    """Stanzas with backups in memory. `fail_on` makes a method raise EngineError;
    `corrupted` holds labels whose verification fails; `progress` is what backup_progress
    reports per stanza."""

    def __init__(self) -> None:
        self.stanzas: dict[str, dict[str, Any]] = {}
        self.fail_on: set[str] = set()
        self.corrupted: set[str] = set()
        self.progress: dict[str, int] = {}
        self.restores: list[dict[str, Any]] = []
        self._clock = itertools.count(1)
        self._epoch = datetime.now(UTC) - timedelta(hours=1)

    def _check(self, method: str) -> None:
        if method in self.fail_on:
            raise EngineError(f"{method} failed (injected)")

    def _stanza(self, stanza: str) -> dict[str, Any]:
        if stanza not in self.stanzas:
            raise EngineError(f"stanza {stanza!r} is not configured: call archive_settings first")
        return self.stanzas[stanza]

    def archive_settings(
        self, stanza: str, pg_data_dir: Any, pg_socket_dir: Any, pg_port: int, pg_version: str | None = None
    ) -> dict[str, str]:
        self._check("archive_settings")
        entry = self.stanzas.setdefault(stanza, {"created": False, "backups": []})
        entry["pg1"] = (str(pg_data_dir), str(pg_socket_dir), pg_port)
        return {
            "archive_mode": "on",
            "archive_command": f"pgbackrest --stanza={stanza} archive-push %p",
            "archive_timeout": "60",
        }

    def create_stanza(self, stanza: str, pg_data_dir: Any, pg_socket_dir: Any, pg_port: int) -> str:
        self._check("create_stanza")
        entry = self._stanza(stanza)
        existed, entry["created"] = entry["created"], True
        return f"stanza {stanza!r} {'already existed' if existed else 'created'}"

    def check(self, stanza: str) -> str:
        self._check("check")
        self._stanza(stanza)
        return f"WAL of stanza {stanza!r} reaches the repository"

    def backup(self, stanza: str, type: str, compress_level: int | None = None) -> BackupInfo:
        self._check("backup")
        entry = self._stanza(stanza)
        short = backup_type(type)
        fulls = [b for b in entry["backups"] if b.type == "full"]
        if short != "full" and not fulls:
            short = "full"
        tick = next(self._clock)
        started = self._epoch + timedelta(minutes=tick)
        stamp = started.strftime("%Y%m%d-%H%M%S")
        prior = entry["backups"][-1] if short != "full" else None
        label = f"{stamp}F" if prior is None else f"{fulls[-1].backup_id}_{stamp}{short[0].upper()}"
        references = (
            ()
            if prior is None
            else (
                fulls[-1].backup_id,
                *([prior.backup_id] if short == "incr" and prior.type != "full" else []),
            )
        )
        info = BackupInfo(
            backup_id=label, type=short, started_at=started, finished_at=started + timedelta(seconds=5),
            size_bytes=50_000_000, repo_size_bytes=5_000_000 if short == "full" else 100_000,
            wal_start=f"0000000100000000000000{tick:02X}", wal_stop=f"0000000100000000000000{tick:02X}",
            lsn_start="0/1000028", lsn_stop="0/1000100", prior_backup_id=prior.backup_id if prior else None,
            references=references,
        )  # fmt: skip
        entry["backups"].append(info)
        return info

    def cancel_backup(self, stanza: str) -> str | None:
        self._check("cancel_backup")
        return None  # backups here end before the call that takes them returns

    def backup_progress(self, stanza: str) -> int | None:
        return self.progress.get(stanza)

    def list_backups(self, stanza: str) -> list[BackupInfo]:
        return list(self.stanzas.get(stanza, {}).get("backups", []))

    def restorable_window(self, stanza: str) -> RestorableWindow | None:
        backups = self.list_backups(stanza)
        if not backups:
            return None
        return RestorableWindow(backups[0].finished_at + timedelta(seconds=1), datetime.now(UTC))

    def verify(self, stanza: str, backup_id: str | None = None) -> VerifyResult:
        self._check("verify")
        labels = {b.backup_id: b for b in self.list_backups(stanza)}
        if backup_id is not None and backup_id not in labels:
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        wanted = {backup_id, *labels[backup_id].references} if backup_id else set(labels)
        bad = sorted(wanted & self.corrupted)
        return VerifyResult(
            ok=not bad, findings=[f"invalid checksum '{label}/pg_data/base/5/16384.zst'" for label in bad]
        )

    def check_structure(self, stanza: str, backup_id: str) -> VerifyResult:
        if backup_id not in {b.backup_id for b in self.list_backups(stanza)}:
            raise EngineError(f"backup {backup_id!r} not found in stanza {stanza!r}")
        return VerifyResult(ok=True)

    def location(self, stanza: str) -> str:
        return f"posix:/fake/backup-repo/backup/{stanza}"

    def restore(self, stanza: str, backup_id: str | None, target_time: datetime | None, target_dir: Any, delta: bool = False, exact: bool = False) -> str:  # fmt: skip
        self._check("restore")
        backups = self.list_backups(stanza)
        if not backups:
            raise EngineError(f"stanza {stanza!r} has no backup to restore")
        self.restores.append(
            {
                "stanza": stanza,
                "backup_id": backup_id,
                "target_time": target_time,
                "target_dir": str(target_dir),
            }
        )
        return f"restored {backup_id or backups[-1].backup_id} of {stanza} into {target_dir}"

    def expire_backup(self, stanza: str, backup_id: str) -> str:
        entry = self._stanza(stanza)
        fulls = [b for b in entry["backups"] if b.type == "full"]
        if fulls and fulls[-1].backup_id == backup_id:
            raise EngineError(
                f"full backup {backup_id} cannot be expired until another full backup has been created"
            )
        gone = [b for b in entry["backups"] if b.backup_id == backup_id or backup_id in b.references]
        entry["backups"] = [b for b in entry["backups"] if b not in gone]
        return f"expired {', '.join(b.backup_id for b in gone) or 'nothing'}"

    def expire(self, stanza: str, retention_full: int) -> str:
        return "nothing to expire"

    def delete_stanza(self, stanza: str) -> str:
        self.stanzas.pop(stanza, None)
        return f"deleted stanza {stanza!r}"

    def add_minutes(self, stanza: str, minutes: int) -> None:
        """Move the stanza's backups into the past (tests of windows and retention)."""
        entry = self._stanza(stanza)
        shift = timedelta(minutes=minutes)
        entry["backups"] = [
            replace(b, started_at=b.started_at - shift, finished_at=b.finished_at - shift)
            for b in entry["backups"]
        ]


class FakeRestoreHost(RestoreHost):
    """Records what a restore did; `fail_on` makes a method raise EngineError."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_on: set[str] = set()
        self.findings: list[str] = []
        self.dumps: dict[str, str] = {}

    def _call(self, method: str, subject: Any) -> None:
        if method in self.fail_on:
            raise EngineError(f"{method} failed (injected)")
        self.calls.append((method, str(subject)))

    def server_location(self, server_id: str, port: int) -> ServerLocation:
        return ServerLocation(
            Path(f"/fake/servers/{server_id}/data"), Path(f"/fake/servers/{server_id}/socket"), port
        )

    def node_location(self, cluster_id: str, node_id: str, port: int) -> ServerLocation:
        root = Path(f"/fake/clusters/{cluster_id}/{node_id}")
        return ServerLocation(root / "data", root / "socket", port)

    def scratch_location(self, scratch_id: str) -> ServerLocation:
        return ServerLocation(
            Path(f"/fake/scratch/{scratch_id}/data"), Path(f"/fake/scratch/{scratch_id}/socket"), 5432
        )

    def set_aside(self, location: ServerLocation) -> str:
        self._call("set_aside", location.data_dir)
        return "set aside"

    def roll_back(self, location: ServerLocation) -> str:
        self._call("roll_back", location.data_dir)
        return "rolled back"

    def discard_previous(self, location: ServerLocation) -> str:
        self._call("discard_previous", location.data_dir)
        return "discarded"

    def recover(
        self,
        location: ServerLocation,
        settings: dict[str, str],
        cluster_id: str | None = None,
        keep_running: bool = False,
    ) -> str:
        self._call("recover", location.data_dir)
        return "recovered"

    def reset_cluster_state(self, cluster_id: str) -> str:
        self._call("reset_cluster_state", cluster_id)
        return "reset"

    def prepare_scratch(self, scratch_id: str) -> ServerLocation:
        self._call("prepare_scratch", scratch_id)
        return self.scratch_location(scratch_id)

    def start_scratch(self, location: ServerLocation) -> str:
        self._call("start_scratch", location.data_dir)
        return "started"

    def check_consistency(self, location: ServerLocation) -> ConsistencyReport:
        self._call("check_consistency", location.data_dir)
        return ConsistencyReport(["app", "postgres"], 3, 42, list(self.findings))

    def remove_scratch(self, scratch_id: str) -> str:
        self._call("remove_scratch", scratch_id)
        return "removed"

    def dump_database(self, location: ServerLocation, database: str, dump_file: Path, passphrase: str, schema: str | None = None) -> int:  # fmt: skip
        self._call("dump_database", database)
        self.dumps[str(dump_file)] = database
        return 1234

    def restore_database(self, location: ServerLocation, database: str, dump_file: Path, passphrase: str | None, owner: str | None = None, schema: str | None = None) -> str:  # fmt: skip
        self._call("restore_database", f"{database}<-{dump_file}")
        return f"database {database} restored"

    def delete_dump(self, dump_file: Path) -> str:
        self.dumps.pop(str(dump_file), None)
        return "deleted"

    def dump_path(self, stanza: str, backup_id: str) -> Path:
        return Path(f"/fake/logical-backups/{stanza}/{backup_id}.dump.enc")
