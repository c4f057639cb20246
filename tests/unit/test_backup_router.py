"""The backup router sends each stanza to the tool of its server's major version, remembers
it, and keeps a stanza's earlier backups reachable after an in-place upgrade moves it on."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from pgfleet.adapters.engines.local.backup_router import BARMAN, PGBACKREST, BackupRouter
from pgfleet.core.errors import EngineError
from tests.unit.backup_fakes import FakeBackupEngine


def data_dir(root: Path, version: str | None) -> Path:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    if version is None:
        (data / "PG_VERSION").unlink(missing_ok=True)
    else:
        (data / "PG_VERSION").write_text(f"{version}\n")
    return data


@pytest.fixture
def tools() -> tuple[FakeBackupEngine, FakeBackupEngine]:
    pgbackrest, barman = FakeBackupEngine(), FakeBackupEngine()
    barman._clock = itertools.count(100)  # its backups come later
    return pgbackrest, barman


def test_each_stanza_goes_to_the_tool_of_its_version(tmp_path: Path, tools: tuple) -> None:
    pgbackrest, barman = tools
    router = BackupRouter(tmp_path, pgbackrest, barman)
    assert router.tool_of("pgi-made-earlier") == PGBACKREST  # no record: as before the router

    router.archive_settings("pgi-fifteen", data_dir(tmp_path / "a", "15"), tmp_path, 5432)
    # Not created yet: the caller's version decides.
    router.archive_settings("pgi-eighteen", tmp_path / "missing", tmp_path, 5433, pg_version="18")
    assert (router.tool_of("pgi-fifteen"), router.tool_of("pgi-eighteen")) == (PGBACKREST, BARMAN)
    assert set(pgbackrest.stanzas) == {"pgi-fifteen"} and set(barman.stanzas) == {"pgi-eighteen"}

    # Later calls without a data directory or a version keep the recorded tool.
    router.archive_settings("pgi-eighteen", tmp_path / "missing", tmp_path, 5433)
    assert router.tool_of("pgi-eighteen") == BARMAN
    info = router.backup("pgi-eighteen", "full")
    assert [b.backup_id for b in router.list_backups("pgi-eighteen")] == [info.backup_id]
    assert router.list_backups("pgi-fifteen") == []

    router.delete_stanza("pgi-eighteen")
    assert "pgi-eighteen" not in barman.stanzas and router.tool_of("pgi-eighteen") == PGBACKREST


def test_an_upgrade_moves_the_stanza_and_keeps_its_earlier_backups(tmp_path: Path, tools: tuple) -> None:
    pgbackrest, barman = tools
    router = BackupRouter(tmp_path, pgbackrest, barman)
    stanza = "pgi-upgraded"
    router.archive_settings(stanza, data_dir(tmp_path, "15"), tmp_path, 5432)
    before = router.backup(stanza, "full")

    # pg_upgrade rewrote PG_VERSION: Barman takes the stanza over.
    router.archive_settings(stanza, data_dir(tmp_path, "18"), tmp_path, 5432)
    assert router.tools_of(stanza) == [BARMAN, PGBACKREST]
    router.create_stanza(stanza, tmp_path / "data", tmp_path, 5432)
    window = router.restorable_window(stanza)  # the earlier tool's, until Barman has a backup
    assert window is not None and window.earliest == before.finished_at + timedelta(seconds=1)
    assert router.check(stanza) and "pgi-upgraded" in barman.stanzas
    after = router.backup(stanza, "full")
    assert [b.backup_id for b in router.list_backups(stanza)] == [before.backup_id, after.backup_id]

    # A call about one backup goes to the tool holding it.
    router.restore(stanza, before.backup_id, None, tmp_path / "restored")
    assert pgbackrest.restores[-1]["backup_id"] == before.backup_id
    pgbackrest.corrupted.add(before.backup_id)
    assert not router.verify(stanza, before.backup_id).ok and router.verify(stanza, after.backup_id).ok
    assert not router.verify(stanza).ok
    with pytest.raises(EngineError, match="not found"):
        router.verify(stanza, "no-such-backup")
    router.restore(stanza, None, None, tmp_path / "latest")
    assert barman.restores[-1]["backup_id"] is None

    # Retention spans both: with one full backup kept by Barman, the earlier tool is emptied.
    router.expire(stanza, 1)
    assert [b.backup_id for b in router.list_backups(stanza)] == [after.backup_id]
    assert router.tools_of(stanza) == [BARMAN] and stanza not in pgbackrest.stanzas
