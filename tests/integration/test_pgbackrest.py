"""pgBackRest against a real PostgreSQL 15 server: backups, verification, point-in-time
recovery, expiry.

The scenario test makes its own server in a temporary directory, archives it into an encrypted
posix repository, and restores it three ways into new data directories started on other
ports. A finalizer stops every server it started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.pgbackrest import LocalPgBackRest, verify_findings
from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import BackupInfo, backup_type

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "127.0.0.1"
STANZA = "src-1"
PASSPHRASE = "correct-horse-battery-staple-0123456789"

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists() or shutil.which("pgbackrest") is None,
    reason="PostgreSQL 15 or pgBackRest not installed",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_past(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Server:
    """A PostgreSQL server in a directory of its own: data/, sock/ and server.log."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.socket = root / "sock"
        self.logfile = root / "server.log"
        process.make_owned_dir(root, 0o700)
        process.make_owned_dir(self.socket, 0o700)

    def initdb(self) -> None:
        process.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            timeout=120,
        )

    def configure(self, settings: dict[str, str]) -> None:
        """Settings in an include file, as the local engine does."""
        lines = [f"{key} = {conf_value(value)}" for key, value in settings.items()]
        process.write_owned_file(self.data / "pgfleet.conf", "\n".join(lines) + "\n")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'pgfleet.conf'\n")

    def start(self) -> None:
        # Command-line settings win over the configuration a restore brought from the source.
        options = f"-p {self.port} -k {self.socket} -c listen_addresses={HOST}"
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile)]
        try:
            process.run([*pg_ctl, "-w", "-t", "60", "-o", options, "start"], timeout=90)
        except EngineError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            process.run(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False
            )

    def log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text().splitlines()[-15:])
        except FileNotFoundError:
            return "(no server log)"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            host=str(self.socket), port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def now(self) -> datetime:
        return self.query("SELECT clock_timestamp()")[0][0]

    def wait_promoted(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.query("SELECT pg_is_in_recovery()")[0][0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"server on port {self.port} still in recovery\n{self.log_tail()}")
            time.sleep(0.05)

    def rows_by_phase(self) -> dict[int, int]:
        return dict(self.query("SELECT phase, count(*)::int FROM items GROUP BY phase ORDER BY phase"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short (unix socket paths are limited) and traversable by the postgres user.
    root = Path(tempfile.mkdtemp(prefix="pgbr-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def servers(workdir: Path) -> Iterator[list[Server]]:
    """Every server a test starts; all are stopped when it ends, pass or fail."""
    started: list[Server] = []
    yield started
    for server in reversed(started):
        server.stop()


@pytest.fixture
def engine(workdir: Path) -> LocalPgBackRest:
    return LocalPgBackRest(workdir / "fleet", cipher_passphrase_for=lambda stanza: PASSPHRASE)


def insert_phase(server: Server, phase: int) -> None:
    server.query("INSERT INTO items (phase, n) SELECT %s, g FROM generate_series(1, 100) g", (phase,))


def timed(label: str, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    started = time.monotonic()
    result = action(*args, **kwargs)
    print(f"  {label}: {time.monotonic() - started:.2f} s")
    return result


def restore_and_start(
    engine: LocalPgBackRest,
    servers: list[Server],
    root: Path,
    *,
    backup_id: str | None = None,
    target_time: datetime | None = None,
) -> tuple[Server, str]:
    server = Server(root, free_port())
    servers.append(server)
    label = f"restore to {target_time.isoformat() if target_time else backup_id or 'latest'}"
    reason = timed(label, engine.restore, STANZA, backup_id, target_time, server.data)
    print(f"    {reason}")
    started = time.monotonic()
    server.start()
    server.wait_promoted()
    print(f"    recovery and promotion: {time.monotonic() - started:.2f} s")
    return server, reason


def repo_file_of(engine: LocalPgBackRest, backup: BackupInfo, relation_path: str) -> Path:
    """The repository file holding `relation_path` (e.g. base/5/16384) in `backup`."""
    directory = (
        engine.repo_path / "backup" / STANZA / backup.backup_id / "pg_data" / Path(relation_path).parent
    )
    name = Path(relation_path).name
    (found,) = [p for p in directory.iterdir() if p.name == name or p.name.startswith(name + ".")]
    return found


def corrupt(path: Path) -> None:
    """Flip 16 bytes in the middle, keeping size and owner."""
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(size // 2)
        chunk = fh.read(16)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))


def archived_wal(engine: LocalPgBackRest) -> list[str]:
    """Names of the WAL segments, history and backup-label files in the stanza's archive."""
    files = (engine.repo_path / "archive" / STANZA).rglob("*")
    return [p.name for p in files if p.is_file() and not p.name.startswith("archive.info")]


def test_backup_verify_point_in_time_restore_and_expire(
    engine: LocalPgBackRest, servers: list[Server], workdir: Path
) -> None:
    print()
    source = Server(workdir / "src", free_port())
    timed("initdb", source.initdb)
    settings = engine.archive_settings(STANZA, source.data, source.socket, source.port)
    source.configure(settings)
    servers.append(source)
    source.start()
    print(
        f"  {timed('create stanza', engine.create_stanza, STANZA, source.data, source.socket, source.port)}"
    )
    assert "already existed" in engine.create_stanza(STANZA, source.data, source.socket, source.port)
    engine.check(STANZA)

    source.query("CREATE TABLE items (phase int NOT NULL, n int NOT NULL)")
    source.query(
        "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 200000) g"
    )
    size = source.query("SELECT pg_size_pretty(pg_database_size('postgres'))")[0][0]
    print(f"  database size: {size}")

    # A backup is restorable only from one second after its (truncated) stop time on.
    full: BackupInfo = timed("full backup", engine.backup, STANZA, "full")
    wait_past(full.finished_at + timedelta(seconds=1.2))
    insert_phase(source, 1)
    t1 = source.now()
    time.sleep(0.05)
    insert_phase(source, 2)
    incr: BackupInfo = timed("incremental backup", engine.backup, STANZA, "incremental")
    wait_past(incr.finished_at + timedelta(seconds=1.2))
    t2 = source.now()
    time.sleep(0.05)
    insert_phase(source, 3)
    engine.check(STANZA)  # switches WAL and waits until phase 3 is in the archive

    # Both backups are listed, with sizes; the incremental is based on the full one.
    backups = engine.list_backups(STANZA)
    assert [(b.backup_id, b.type) for b in backups] == [(full.backup_id, "full"), (incr.backup_id, "incr")]
    assert all(b.size_bytes > 0 and b.repo_size_bytes > 0 for b in backups)
    assert backups[1].prior_backup_id == full.backup_id and full.backup_id in backups[1].references
    assert backups[1].repo_size_bytes < backups[0].repo_size_bytes
    assert full.database_list is not None and "postgres" in full.database_list
    assert full.lsn_start and full.lsn_stop and full.wal_start <= full.wal_stop
    assert engine.backup_progress(STANZA) is None
    print(f"  full: {full.size_bytes} bytes, {full.repo_size_bytes} in repo", end="; ")
    print(f"incremental: {incr.repo_size_bytes} in repo")

    window = engine.restorable_window(STANZA)
    assert window is not None and window.earliest <= t1 < t2 < window.latest

    # The repository is encrypted: its info files are unreadable without the passphrase.
    assert (engine.repo_path / "backup" / STANZA / "backup.info").read_bytes().startswith(b"Salted__")

    result = timed("verify", engine.verify, STANZA)
    assert result.ok and result.findings == []
    assert engine.verify(STANZA, incr.backup_id).ok

    # Each restore starts from the newest backup before its target and replays WAL from there.
    restored, reason = restore_and_start(engine, servers, workdir / "at-t1", target_time=t1)
    assert f"backup {full.backup_id} " in reason
    assert restored.rows_by_phase() == {1: 100}
    # It does not archive, and whatever it writes now stays out of the source stanza.
    assert restored.query("SHOW archive_mode") == [("off",)]
    insert_phase(restored, 9)
    restored.query("SELECT pg_switch_wal()")
    restored.stop()

    restored, reason = restore_and_start(engine, servers, workdir / "at-t2", target_time=t2)
    assert f"backup {incr.backup_id} " in reason
    assert restored.rows_by_phase() == {1: 100, 2: 100}
    restored.stop()

    restored, reason = restore_and_start(engine, servers, workdir / "latest")
    assert f"backup {incr.backup_id} " in reason
    assert restored.rows_by_phase() == {1: 100, 2: 100, 3: 100}
    restored.stop()

    # A target past the newest archived WAL replays everything rather than failing.
    future = datetime.now(UTC) + timedelta(hours=1)
    restored, reason = restore_and_start(engine, servers, workdir / "future", target_time=future)
    assert "past the newest archived WAL" in reason
    assert restored.rows_by_phase() == {1: 100, 2: 100, 3: 100}
    restored.stop()

    restored, _ = restore_and_start(engine, servers, workdir / "full-only", backup_id=full.backup_id)
    assert restored.rows_by_phase() == {}
    restored.stop()

    # Only the source's timeline 1 was ever archived: no promoted restore pushed anything.
    archived = archived_wal(engine)
    assert archived and all(name.startswith("00000001") for name in archived), archived
    assert not any(name.endswith((".partial", ".history")) for name in archived), archived

    with pytest.raises(EngineError, match="before the earliest restorable time"):
        engine.restore(STANZA, None, full.started_at, workdir / "too-early")

    # A damaged file of the full backup (the filler table, which the incremental references).
    relation = source.query("SELECT pg_relation_filepath('filler')")[0][0]
    corrupt(repo_file_of(engine, full, relation))
    result = engine.verify(STANZA)
    print(f"  findings after corruption: {result.findings}")
    assert not result.ok
    assert any(full.backup_id in f and Path(relation).name in f for f in result.findings)
    assert not engine.verify(STANZA, full.backup_id).ok
    assert not engine.verify(STANZA, incr.backup_id).ok

    # A new full backup; its progress only grows while it runs.
    observed: list[int] = []
    running = threading.Event()
    running.set()

    def poll() -> None:
        while running.is_set():
            progress = engine.backup_progress(STANZA)
            if progress is not None:
                observed.append(progress)
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        full2: BackupInfo = timed("second full backup", engine.backup, STANZA, "FULL")
    finally:
        running.clear()
        poller.join()
    print(f"  progress seen during the backup: {observed}")
    assert all(0 <= p <= 100 for p in observed) and observed == sorted(observed)

    # Expiry keeps the newest full backup only; the damaged one goes with its incremental.
    reason = engine.expire(STANZA, retention_full=1)
    print(f"  {reason}")
    assert [b.backup_id for b in engine.list_backups(STANZA)] == [full2.backup_id]
    assert "nothing to expire" in engine.expire(STANZA, retention_full=1)
    assert engine.verify(STANZA).ok
    window = engine.restorable_window(STANZA)
    assert window is not None and window.earliest > full2.finished_at

    source.stop()
    print(f"  {engine.delete_stanza(STANZA)}")
    assert not (engine.repo_path / "backup" / STANZA).exists()
    assert not engine.config_path(STANZA).exists()
    assert "nothing to delete" in engine.delete_stanza(STANZA)
    assert engine.list_backups(STANZA) == []


def test_a_running_backup_can_be_cancelled(
    engine: LocalPgBackRest, servers: list[Server], workdir: Path
) -> None:
    """cancel_backup (a delete that keeps no backup) stops a backup mid-way: its caller gets
    EngineError, no backup is left in the stanza, and the stanza works again afterwards."""
    source = Server(workdir / "src", free_port())
    source.initdb()
    source.configure(engine.archive_settings(STANZA, source.data, source.socket, source.port))
    servers.append(source)
    source.start()
    engine.create_stanza(STANZA, source.data, source.socket, source.port)
    source.query(
        "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 1000000) g"
    )
    assert engine.cancel_backup(STANZA) is None  # nothing runs
    outcome: dict[str, Any] = {}

    def back_up() -> None:
        try:
            outcome["info"] = engine.backup(STANZA, "full")
        except EngineError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=back_up)
    thread.start()
    deadline = time.monotonic() + 60
    while engine.backup_progress(STANZA) is None:
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.01)
    reason = engine.cancel_backup(STANZA)
    thread.join(60)
    assert reason is not None and reason.startswith("cancelled the running backup"), reason
    assert "error" in outcome and "info" not in outcome, outcome
    assert engine.backup_progress(STANZA) is None and engine.list_backups(STANZA) == []
    # Commands are accepted again: archiving and the next backup work.
    engine.check(STANZA)
    assert engine.backup(STANZA, "full").type == "full"


def test_stanza_configuration_is_private(workdir: Path) -> None:
    """The passphrase lives in a 0600 file of the postgres user, never in the archive_command."""
    engine = LocalPgBackRest(workdir / "fleet", cipher_passphrase_for=lambda stanza: PASSPHRASE)
    data, sock = workdir / "data", workdir / "sock"
    settings = engine.archive_settings(STANZA, data, sock, 5999)

    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "60"
    command = settings["archive_command"]
    assert f"--config={engine.config_path(STANZA)}" in command and f"--stanza={STANZA}" in command
    assert command.endswith("archive-push %p") and PASSPHRASE not in command

    config = engine.config_path(STANZA)
    assert config.stat().st_mode & 0o777 == 0o600
    assert pwd.getpwuid(config.stat().st_uid).pw_name == process.data_plane_user()
    text = config.read_text()
    assert f"repo1-cipher-pass={PASSPHRASE}" in text and "repo1-cipher-type=aes-256-cbc" in text
    assert f"pg1-path={data}" in text and "pg1-port=5999" in text and "start-fast=y" in text
    assert "compress-type=zst" in text or "compress-type=lz4" in text


def test_generated_passphrase_is_kept(workdir: Path) -> None:
    engine = LocalPgBackRest(workdir / "fleet")
    engine.archive_settings(STANZA, workdir / "data", workdir / "sock", 5999)
    first = engine.config_path(STANZA).read_text()
    engine.archive_settings(STANZA, workdir / "data", workdir / "sock", 5999)
    assert engine.config_path(STANZA).read_text() == first and "repo1-cipher-pass=" in first


def test_names_are_checked(workdir: Path) -> None:
    assert backup_type("INCREMENTAL") == "incr" and backup_type("differential") == "diff"
    with pytest.raises(ValueError):
        backup_type("weekly")
    engine = LocalPgBackRest(workdir / "fleet")
    with pytest.raises(ValueError):
        engine.archive_settings("../etc", workdir / "data", workdir / "sock", 5999)
    with pytest.raises(ValueError):
        LocalPgBackRest(workdir / "fleet", repo_type="ftp")
    assert engine.list_backups("never-configured") == []
    assert engine.backup_progress("never-configured") is None
    with pytest.raises(EngineError, match="not configured"):
        engine.backup("never-configured", "full")


# Output of pgBackRest 2.45 `verify --output=text --verbose --log-level-stderr=detail` on a
# repository with a damaged backup file, a damaged WAL segment and a missing one (captured).
VERIFY_STDOUT = """stanza: demo
status: error
  archiveId: 15-1, total WAL checked: 16, total valid WAL: 15
    missing: 0, checksum invalid: 0, size invalid: 0, other: 1
  backup: 20261123-185630F, status: valid, total files checked: 964, total valid files: 964
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261123-185645F, status: invalid, total files checked: 977, total valid files: 976
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
"""
VERIFY_STDERR = "\n".join(
    [
        "INFO: verify command begin 2.45: --config=/x.conf --repo1-cipher-pass=<redacted>",
        "INFO: invalid checksum '20261123-185645F/pg_data/base/5/16404.zst'",
        "INFO: invalid result 15-1/0000000100000000/000000010000000000000009-"
        "d68f9bf0bdf5fb0d8de0c6e830205e74602bad1b.zst: [95] raised from local-1 protocol: unable to flush",
        "      [CryptoError] on retry after 0ms",
        "DETAIL: archiveId: 15-1, wal start: 000000010000000000000001, wal stop: 000000010000000000000004",
        "DETAIL: archiveId: 15-1, wal start: 000000010000000000000006, wal stop: 000000010000000000000012",
        "DETAIL: archiveId: 15-1, wal start: 000000020000000000000012, wal stop: 000000020000000000000013",
        "INFO: stanza: demo",
        "      status: error",
        "INFO: verify command end: completed successfully (650ms)",
    ]
)


def test_verify_output_becomes_findings_per_backup() -> None:
    status, findings = verify_findings(VERIFY_STDOUT, VERIFY_STDERR)
    texts = [f.text for f in findings]
    assert status == "error"
    assert "invalid checksum '20261123-185645F/pg_data/base/5/16404.zst'" in texts
    assert "backup 20261123-185645F is invalid (checksum invalid: 1)" in texts
    assert any("000000010000000000000009" in t and "CryptoError" in t for t in texts)
    assert "archive 15-1: 1 of 16 WAL segments invalid (other: 1)" in texts
    # One gap on timeline 1; timeline 2 starting elsewhere is not a gap.
    gaps = [t for t in texts if "WAL missing" in t]
    assert gaps == [
        "archive 15-1: WAL missing after 000000010000000000000004 and before 000000010000000000000006; "
        "point-in-time recovery cannot cross this gap"
    ]

    def concerning(labels: set[str], wal_start: str, wal_stop: str) -> list[str]:
        return [f.text for f in findings if f.concerns(labels, wal_start, wal_stop)]

    # The valid full backup needs segments 1-2 only: nothing concerns it.
    assert concerning({"20261123-185630F"}, "000000010000000000000002", "000000010000000000000002") == []
    # An incremental on the damaged backup is concerned by its damaged file.
    damaged = concerning(
        {"20261123-185645F_20261123-190000I", "20261123-185645F"},
        "00000001000000000000000F",
        "00000001000000000000000F",
    )
    assert "invalid checksum '20261123-185645F/pg_data/base/5/16404.zst'" in damaged
    # A backup whose WAL spans the gap or the damaged segment is concerned by them.
    assert len(concerning({"x"}, "000000010000000000000004", "000000010000000000000009")) == 2
