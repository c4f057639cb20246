"""pg_upgrade of one real server, 15 -> 18, through the local engine: the pre-flight
findings, a copy-mode upgrade and its way back, and a link-mode upgrade whose way back holds
only until the new server starts."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.postgres import LocalPostgresEngine
from pgfleet.core.errors import EngineError
from pgfleet.ports.engine import ServerSpec
from tests.helpers import scratch_home

pytestmark = pytest.mark.skipif(
    not {"15", "18"} <= set(local_pg.installed_binaries()), reason="needs PostgreSQL 15 and 18"
)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalPostgresEngine]:
    with scratch_home("pgfleet-pgup-") as home:
        yield LocalPostgresEngine(home, host="127.0.0.1")


def _server(engine: LocalPostgresEngine, server_id: str) -> tuple[ServerSpec, ServerSpec]:
    old = ServerSpec(server_id=server_id, version="15", port=_port(), memory_mb=256, cpu=1)
    engine.provision(old)
    engine.start(old)
    with engine.connect(server_id) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 500) g")
    return old, ServerSpec(server_id=server_id, version="18", port=old.port, memory_mb=256, cpu=1)


def _version_and_rows(engine: LocalPostgresEngine, server_id: str) -> tuple[str, int]:
    with engine.connect(server_id) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split(".")[0]
        return version, conn.execute("SELECT count(*) FROM items").fetchone()[0]


def test_check_lists_the_objects_and_changes_nothing(engine: LocalPostgresEngine) -> None:
    old, _ = _server(engine, "chk")
    try:
        with engine.connect("chk") as conn:
            conn.execute("CREATE TABLE refs (f regproc)")
        findings = engine.upgrade_check("chk", "18", link=False)
        assert len(findings) == 1 and "reg*" in findings[0] and "public.refs.f" in findings[0], findings
        assert not (engine.paths("chk").root / "data.upgrade-18").exists()
        with engine.connect("chk") as conn:
            conn.execute("DROP TABLE refs")
        assert engine.upgrade_check("chk", "18", link=False) == []
        assert _version_and_rows(engine, "chk") == ("15", 500)
    finally:
        engine.destroy("chk")


def test_copy_mode_upgrade_and_its_way_back(engine: LocalPostgresEngine) -> None:
    old, new = _server(engine, "cpy")
    try:
        assert "initdb" in engine.prepare_upgrade("cpy", "18")
        engine.stop("cpy")
        reason = engine.upgrade_data(new, link=False)
        assert "with a copy" in reason and "pg_attver" in reason, reason
        assert engine.upgrade_data(new, link=False) == "already upgraded (data directory swapped)"
        engine.start(new)
        assert _version_and_rows(engine, "cpy") == ("18", 500)
        assert "statistics rebuilt" in engine.after_upgrade("cpy")
        # The 18 server ran and took a write; the copy kept 15 intact all along.
        with engine.connect("cpy") as conn:
            conn.execute("INSERT INTO items VALUES (501, 'on 18')")
        assert "put back" in engine.roll_back_upgrade("cpy", "18")
        engine.start(old)
        assert _version_and_rows(engine, "cpy") == ("15", 500)
    finally:
        engine.destroy("cpy")


def test_link_mode_way_back_holds_until_the_new_server_starts(engine: LocalPostgresEngine) -> None:
    old, new = _server(engine, "lnk")
    try:
        engine.stop("lnk")
        assert "hard links" in engine.upgrade_data(new, link=True)
        # Never started: pg_upgrade only renamed the old pg_control; renaming it back is enough.
        assert "put back" in engine.roll_back_upgrade("lnk", "18")
        engine.start(old)
        assert _version_and_rows(engine, "lnk") == ("15", 500)
        engine.stop("lnk")
        engine.upgrade_data(new, link=True)
        engine.start(new)
        assert _version_and_rows(engine, "lnk") == ("18", 500)
        with pytest.raises(EngineError, match="hard links shared with the old data directory"):
            engine.roll_back_upgrade("lnk", "18")
        engine.start(new)
        assert "removed" in engine.finish_upgrade("lnk", "18")
        assert _version_and_rows(engine, "lnk") == ("18", 500)
    finally:
        engine.destroy("lnk")
