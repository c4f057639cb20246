"""The local RestoreHost and the pgBackRest additions against a real server of the local engine:
setting a data directory aside and rolling back, recovery alone (a target after the last
commit included), encrypted single-database dumps, scratch servers, structure checks and
expiry of single backups. The tests share one server and run in file order."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine
from pgfleet.adapters.engines.local.pgbackrest import LocalPgBackRest
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.adapters.engines.local.restore_host import LocalRestoreHost
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ServerSpec
from pgfleet.ports.restore_host import ServerLocation
from tests.helpers import scratch_home

PASSPHRASE = "integration-passphrase-0123456789-abcdef"
STANZA = "srv-1"

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/postgresql/15/bin/postgres").exists() or not Path("/usr/bin/pgbackrest").exists(),
    reason="needs PostgreSQL 15 and pgBackRest",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Rig:
    def __init__(self, home: Path) -> None:
        self.engine = LocalPostgresEngine(home / "data")
        dead_etcd = "http://127.0.0.1:9"  # no cluster here
        self.host = LocalRestoreHost(
            home, self.engine, LocalPatroniEngine(home / "data", dead_etcd), dead_etcd
        )
        self.backups = LocalPgBackRest(home, cipher_passphrase_for=lambda stanza: PASSPHRASE)
        port = free_port()
        self.location = self.host.server_location(STANZA, port)
        loc = self.location
        self.archive = self.backups.archive_settings(STANZA, loc.data_dir, loc.socket_dir, loc.port)
        self.spec = ServerSpec(
            server_id=STANZA, version="15", port=port, memory_mb=512, settings=self.archive
        )

    def sql(
        self, statement: str, params: tuple[Any, ...] = (), database: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        with self.engine.connect(STANZA, database) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with scratch_home("pgfleet-rh-") as home:
        rig = Rig(home)
        rig.engine.provision(rig.spec)
        rig.engine.start(rig.spec)
        try:
            rig.backups.create_stanza(
                STANZA, rig.location.data_dir, rig.location.socket_dir, rig.location.port
            )
            rig.sql("CREATE TABLE items (n int)")
            rig.sql("INSERT INTO items SELECT generate_series(1, 100)")
            first = rig.backups.backup(STANZA, "full")
            # A backup serves targets from one second after its (truncated) stop time.
            time.sleep(max(0.0, (first.finished_at - datetime.now(UTC)).total_seconds() + 1.2))
            yield rig
        finally:
            rig.host.remove_scratch("scr-test")
            rig.engine.destroy(STANZA)


def test_archive_command_works_whatever_the_stanza_names_as_pg1(rig: Rig) -> None:
    command = rig.archive["archive_command"]
    assert '--pg1-path="$(pwd -P)"' in command and command.endswith("archive-push %p")
    # Point the stanza elsewhere (as for a cluster's primary): archiving goes on.
    other = ServerLocation(Path("/nonexistent/data"), rig.location.socket_dir, rig.location.port)
    rig.backups.archive_settings(STANZA, other.data_dir, other.socket_dir, other.port)
    failed_before = rig.sql("SELECT failed_count FROM pg_stat_archiver")[0][0]
    segment = rig.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    deadline = time.monotonic() + 30
    while (rig.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") < segment:
        assert time.monotonic() < deadline, "segment not archived"
        time.sleep(0.1)
    assert rig.sql("SELECT failed_count FROM pg_stat_archiver")[0][0] == failed_before
    loc = rig.location
    rig.backups.archive_settings(STANZA, loc.data_dir, loc.socket_dir, loc.port)


def test_set_aside_roll_back_and_recover_past_the_last_commit(rig: Rig) -> None:
    loc, root = rig.location, rig.location.data_dir.parent
    rig.sql("INSERT INTO items SELECT generate_series(101, 150)")
    target = datetime.now(UTC)  # nothing is committed after it
    rig.backups.check(STANZA)
    rig.engine.stop(STANZA)
    rig.host.set_aside(loc)
    assert (root / "data.previous" / "PG_VERSION").exists() and not any(loc.data_dir.iterdir())
    assert "removed a partial restore" in rig.host.set_aside(loc)  # repeatable
    rig.backups.restore(STANZA, None, target, loc.data_dir, exact=True)
    # A roll-back puts the original back untouched.
    assert "put the set-aside data directory back" in rig.host.roll_back(loc)
    assert "nothing to roll back" in rig.host.roll_back(loc)
    rig.engine.start(rig.spec)
    assert rig.sql("SELECT count(*) FROM items") == [(150,)]
    rig.engine.stop(STANZA)

    rig.host.set_aside(loc)
    rig.backups.restore(STANZA, None, target, loc.data_dir, exact=True)
    reason = rig.host.recover(loc, rig.archive)
    assert "no commit after the target" in reason, reason
    assert "already recovered" in rig.host.recover(loc, rig.archive)
    auto_conf = (loc.data_dir / "postgresql.auto.conf").read_text()
    assert (
        "restore_command" not in auto_conf and "archive_mode" not in auto_conf and "pgfleet" not in auto_conf
    )
    rig.engine.start(rig.spec)
    assert rig.sql("SELECT count(*) FROM items") == [(150,)]
    assert rig.sql("SELECT timeline_id > 1 FROM pg_control_checkpoint()") == [(True,)]
    assert "deleted the replaced data directory" in rig.host.discard_previous(loc)
    assert not (root / "data.previous").exists() and not (root / "restore-in-progress").exists()
    # The stanza goes on: the new timeline reaches it.
    assert "reaches the repository" in rig.backups.check(STANZA)


def test_set_aside_refuses_a_running_server(rig: Rig) -> None:
    with pytest.raises(EngineError, match="stop it before a restore"):
        rig.host.set_aside(rig.location)


def test_encrypted_dump_and_restore_of_one_database(rig: Rig, tmp_path: Path) -> None:
    rig.sql("CREATE ROLE tenant_x_owner NOLOGIN")
    rig.sql("CREATE DATABASE tenant_x OWNER tenant_x_owner")
    rig.sql("REVOKE ALL ON DATABASE tenant_x FROM PUBLIC")
    rig.sql("ALTER DATABASE tenant_x CONNECTION LIMIT 7")
    rig.sql("COMMENT ON DATABASE tenant_x IS 'kept by a restore'")
    rig.sql("SET ROLE tenant_x_owner; CREATE TABLE notes AS SELECT g AS id FROM generate_series(1, 200) g",
            database="tenant_x")  # fmt: skip
    dump = rig.host.dump_path(STANZA, "bkp-000000000001")
    size = rig.host.dump_database(rig.location, "tenant_x", dump, PASSPHRASE)
    assert size == dump.stat().st_size > 0 and not dump.read_bytes().startswith(b"PGDMP")
    rig.sql("DELETE FROM notes WHERE id > 5", database="tenant_x")
    rig.sql("INSERT INTO items VALUES (-1)")  # another database: untouched by the restore
    reason = rig.host.restore_database(rig.location, "tenant_x", dump, PASSPHRASE)
    assert "database tenant_x restored" in reason and "as tenant_x_owner" in reason, reason
    assert rig.sql("SELECT count(*) FROM notes", database="tenant_x") == [(200,)]
    # What the database was besides its content stays: owner, limit, comment, privileges.
    assert rig.sql(
        "SELECT pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database'),"
        " has_database_privilege('public', oid, 'CONNECT') FROM pg_database WHERE datname = 'tenant_x'"
    ) == [("tenant_x_owner", 7, "kept by a restore", False)]
    assert rig.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'notes'", database="tenant_x") == [
        ("tenant_x_owner",)
    ]
    assert rig.sql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgfleet%%'") == [(0,)]  # logins gone
    assert rig.sql("SELECT count(*) FROM items WHERE n = -1") == [(1,)]
    assert rig.sql("SELECT count(*) FROM pg_database WHERE datname LIKE %s", ("%pgfleet_prev",)) == [(0,)]
    # A wrong passphrase fails and leaves the database as it was.
    rig.sql("DELETE FROM notes WHERE id > 100", database="tenant_x")
    with pytest.raises(EngineError):
        rig.host.restore_database(rig.location, "tenant_x", dump, "wrong-passphrase-wrong-passphrase")
    assert rig.sql("SELECT count(*) FROM notes", database="tenant_x") == [(100,)]
    with pytest.raises(EngineError, match="does not exist"):
        rig.host.dump_database(rig.location, "no_such_db", dump, PASSPHRASE)
    assert "deleted" in rig.host.delete_dump(dump) and "already" in rig.host.delete_dump(dump)


def test_a_dump_of_superuser_objects_is_not_restored_as_a_superuser(rig: Rig) -> None:
    rig.sql("CREATE DATABASE made_by_the_superuser")
    rig.sql("CREATE TABLE kept AS SELECT 1 AS one", database="made_by_the_superuser")
    dump = rig.host.dump_path(STANZA, "bkp-000000000002")
    rig.host.dump_database(rig.location, "made_by_the_superuser", dump, PASSPHRASE)
    rig.sql("INSERT INTO kept VALUES (2)", database="made_by_the_superuser")
    with pytest.raises(
        EngineError, match="cannot restore objects owned by postgres: a restore never runs as a superuser"
    ):
        rig.host.restore_database(rig.location, "made_by_the_superuser", dump, PASSPHRASE)
    with pytest.raises(EngineError, match="cannot restore as 'postgres'"):
        rig.host.restore_database(rig.location, "made_by_the_superuser", dump, PASSPHRASE, owner="postgres")
    # Refused before anything changed.
    assert rig.sql("SELECT count(*) FROM kept", database="made_by_the_superuser") == [(2,)]
    assert rig.sql("SELECT count(*) FROM pg_database WHERE datname LIKE %s", ("%pgfleet_prev",)) == [(0,)]
    rig.sql("DROP DATABASE made_by_the_superuser")
    rig.host.delete_dump(dump)


def test_scratch_server_consistency(rig: Rig) -> None:
    label = rig.backups.list_backups(STANZA)[-1].backup_id
    location = rig.host.prepare_scratch("scr-test")
    rig.backups.restore(STANZA, label, None, location.data_dir)
    assert "recovered and promoted" in rig.host.start_scratch(location)
    assert rig.host.start_scratch(location) == "already running"
    report = rig.host.check_consistency(location)
    assert report.ok, report.findings
    assert "postgres" in report.databases and report.tables >= 1 and report.rows >= 100
    assert "removed" in rig.host.remove_scratch("scr-test")
    assert not location.data_dir.parent.exists()


def test_structure_check_and_expiry_of_single_backups(rig: Rig) -> None:
    first = rig.backups.list_backups(STANZA)[0]
    second = rig.backups.backup(STANZA, "full")
    assert rig.backups.check_structure(STANZA, second.backup_id).ok
    assert rig.backups.location(STANZA).endswith(f"backup-repo/backup/{STANZA}")
    assert "expired" in rig.backups.expire_backup(STANZA, first.backup_id)
    assert first.backup_id not in {b.backup_id for b in rig.backups.list_backups(STANZA)}
    assert "already gone" in rig.backups.expire_backup(STANZA, first.backup_id)
    with pytest.raises(EngineError, match="cannot be expired"):
        rig.backups.expire_backup(STANZA, second.backup_id)
    # A WAL segment the backup needs, removed from the archive: the structure check says which.
    archive = rig.backups.repo_path / "archive" / STANZA
    (needed,) = [p for p in archive.rglob(f"{second.wal_start}-*") if p.is_file()]
    needed.unlink()
    result = rig.backups.check_structure(STANZA, second.backup_id)
    assert not result.ok and second.wal_start in result.findings[0] and "missing" in result.findings[0]
