"""Managed servers log every lock wait longer than deadlock_timeout (1 s), which the locks
domain reads back from their logs; a server's own settings may still change either."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgfleet.adapters.engines.local import patroni_config as cfg
from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.postgres.config import render_config
from pgfleet.adapters.engines.local.postgres.paths import ServerPaths
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from pgfleet.ports.engine import ServerSpec


def test_a_single_server_logs_lock_waits(tmp_path: Path) -> None:
    text = render_config(ServerSpec("pgi-0123456789ab", "15", 5433), ServerPaths(tmp_path), "127.0.0.1")
    assert "log_lock_waits = on\n" in text and "deadlock_timeout = '1s'\n" in text
    mine = render_config(
        ServerSpec("pgi-0123456789ab", "15", 5433, settings={"deadlock_timeout": "3s"}),
        ServerPaths(tmp_path),
        "127.0.0.1",
    )
    assert "deadlock_timeout = '3s'\n" in mine and "deadlock_timeout = '1s'" not in mine


@pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15's binaries")
def test_every_cluster_node_logs_lock_waits(tmp_path: Path) -> None:
    node = NodeSpec("n1", 5433, 8008)
    spec = ClusterSpec("pgc-0123456789ab", "15", (node,), "async", 1, 1024, 10, {})
    rendered = cfg.render(spec, node, cfg.NodePaths(tmp_path), "127.0.0.1", "http://127.0.0.1:2379")
    parameters = rendered["postgresql"]["parameters"]
    assert parameters["log_lock_waits"] == "on" and parameters["deadlock_timeout"] == "1s"


def test_a_cluster_nodes_log_is_read_from_a_moment_on(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from pgfleet.adapters.engines.local.patroni import LocalPatroniEngine

    engine = LocalPatroniEngine(tmp_path, "http://127.0.0.1:9")
    log = engine.paths("pgc-0123456789ab", "n1").log
    log.mkdir(parents=True)
    (log / "postgresql-2026-12-02_031000.json").write_text(
        '{"timestamp":"2026-12-02 03:10:01.000 UTC","error_severity":"LOG","message":"one","pid":7}\n'
        '{"timestamp":"2026-12-02 03:10:02.000 UTC","error_severity":"ERROR","message":"two","pid":8,'
        '"state_code":"40P01","user":"app"}\n'
    )
    lines = engine.node_logs("pgc-0123456789ab", "n1", 10)
    assert (
        [ln.message for ln in lines] == ["one", "two"]
        and lines[1].sqlstate == "40P01"
        and lines[1].user == "app"
    )
    since = datetime(2026, 12, 2, 3, 10, 2, tzinfo=UTC)
    assert [ln.message for ln in engine.node_logs("pgc-0123456789ab", "n1", 10, since)] == ["two"]
