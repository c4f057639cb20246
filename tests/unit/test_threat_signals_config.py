"""Managed servers log what threat detection reads (connections, error statements, pgaudit's
role and DDL entries where pgaudit is installed); a server provisioned before gets them at its
next start; blocked client addresses are reject lines before the password line, on a single
server and on every node of a cluster, kept across rewrites."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pgfleet.adapters.engines.local import patroni_config as cfg
from pgfleet.adapters.engines.local import postgres as local_pg
from pgfleet.adapters.engines.local.postgres import config
from pgfleet.adapters.engines.local.postgres.paths import ServerPaths
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from pgfleet.ports.engine import ServerSpec


def test_a_server_logs_connections_errors_and_with_pgaudit_role_and_ddl(tmp_path: Path) -> None:
    spec = ServerSpec("pgi-0123456789ab", "15", 5433)
    audited = config.render_config(spec, ServerPaths(tmp_path), "127.0.0.1", audit=True)
    assert "log_connections = on\n" in audited and "log_min_error_statement = 'error'\n" in audited
    assert "pgaudit.log = 'role, ddl'\n" in audited
    assert "shared_preload_libraries = 'pg_stat_statements,pgaudit'\n" in audited
    plain = config.render_config(spec, ServerPaths(tmp_path), "127.0.0.1", audit=False)
    assert "log_connections = on\n" in plain and "pgaudit" not in plain
    # A server's own preload list keeps both.
    own = ServerSpec("pgi-0123456789ab", "15", 5433, settings={"shared_preload_libraries": "auto_explain"})
    text = config.render_config(own, ServerPaths(tmp_path), "127.0.0.1", audit=True)
    assert "shared_preload_libraries = 'pg_stat_statements,auto_explain,pgaudit'\n" in text


def test_an_older_configuration_gets_the_signals_it_lacks_once() -> None:
    old = "# Managed by pgfleet\nport = 5433\nshared_preload_libraries = pg_stat_statements\nlog_connections = off\n"
    new = config.with_signals(old, audit=True)
    lines = new.splitlines()
    assert (
        lines[0] == "# Managed by pgfleet"
        and "shared_preload_libraries = 'pg_stat_statements,pgaudit'" in lines
    )
    # The server's own later line still wins (last one counts in postgresql.conf).
    assert lines.index("log_connections = off") > lines.index("log_min_error_statement = 'error'")
    assert "log_connections = on" not in lines
    assert config.with_signals(new, audit=True) == new


def test_blocked_addresses_are_rejected_before_the_password_line(tmp_path: Path) -> None:
    hba = config.render_hba("127.0.0.1", blocked=["203.0.113.7", "2001:db8::1", "203.0.113.7"])
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules[-3:] == [
        ["host", "all", "all", "2001:db8::1/128", "reject"],
        ["host", "all", "all", "203.0.113.7/32", "reject"],
        ["hostssl", "all", "all", "127.0.0.1/32", "scram-sha-256"],
    ]
    with pytest.raises(ValueError):
        config.reject_lines(["evil.example\nhost all all 0.0.0.0/0 trust"])
    config.write_blocked(tmp_path, ["203.0.113.7"])
    assert config.read_blocked(tmp_path) == ["203.0.113.7"]
    config.write_blocked(tmp_path, [])
    assert config.read_blocked(tmp_path) == []


@pytest.mark.skipif("15" not in local_pg.installed_binaries(), reason="needs PostgreSQL 15's binaries")
def test_every_cluster_node_logs_the_signals_and_refuses_blocked_addresses(tmp_path: Path) -> None:
    node = NodeSpec("n1", 5433, 8008)
    spec = ClusterSpec("pgc-0123456789ab", "15", (node,), "async", 1, 1024, 10, {})
    rendered = cfg.render(spec, node, cfg.NodePaths(tmp_path), "127.0.0.1", "http://127.0.0.1:2379")
    parameters = rendered["postgresql"]["parameters"]
    assert parameters["log_connections"] == "on" and parameters["log_min_error_statement"] == "error"
    assert ("pgaudit" in parameters["shared_preload_libraries"]) == local_pg.audit_available("15")
    text = cfg.dump(rendered)
    blocked = cfg.with_blocked(text, ["203.0.113.7"])
    assert blocked is not None
    hba = yaml.safe_load(blocked)["postgresql"]["pg_hba"]
    assert hba[-2:] == ["host all all 203.0.113.7/32 reject", hba[-1]] and hba[-1].endswith("scram-sha-256")
    assert cfg.with_blocked(blocked, ["203.0.113.7"]) is None
    assert (
        yaml.safe_load(cfg.with_blocked(blocked, []) or "")["postgresql"]["pg_hba"]
        == rendered["postgresql"]["pg_hba"]
    )
    # A node configured by an earlier version gets the signals at its next start.
    older = dict(rendered)
    older["postgresql"] = {
        **rendered["postgresql"],
        "parameters": {"shared_preload_libraries": "pg_stat_statements"},
    }
    upgraded = cfg.with_signals(cfg.dump(older), "15")
    assert (
        upgraded is not None
        and yaml.safe_load(upgraded)["postgresql"]["parameters"]["log_connections"] == "on"
    )
    assert cfg.with_signals(upgraded, "15") is None
