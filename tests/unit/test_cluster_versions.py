"""Which PostgreSQL versions a cluster create accepts: those the cluster engine can run (a
version a single server runs may lack what HA needs), refused with a 422 listing them."""

from __future__ import annotations

import pytest

CLUSTERS = "/api/v1/postgres/cluster"


def _offer(monkeypatch: pytest.MonkeyPatch, engine: object, versions: list[str]) -> None:
    monkeypatch.setattr(engine, "supported_versions", lambda: list(versions))


def test_an_installed_version_is_created(call, fake_ports, monkeypatch):
    _offer(monkeypatch, fake_ports.engine, ["15", "18"])
    _offer(monkeypatch, fake_ports.cluster_engine, ["15", "18"])
    status, body = call("POST", CLUSTERS, {"name": "ha-18", "version": "18", "node_count": 2})
    assert status == 202, body
    assert body["version"] == "18"
    fake_ports.drain()
    status, got = call("GET", f"{CLUSTERS}/{body['id']}")
    assert status == 200 and got["status"] == "running" and got["version"] == "18"


def test_a_version_not_installed_is_refused_with_the_installed_ones(call, fake_ports, monkeypatch):
    _offer(monkeypatch, fake_ports.cluster_engine, ["15", "18"])
    status, body = call("POST", CLUSTERS, {"name": "ha-db", "version": "17"})
    assert status == 422, body
    assert body["error"]["details"] == {"field": "version", "supported": ["15", "18"]}
    assert "PostgreSQL 17 is not available" in body["error"]["message"]
    assert fake_ports.store.records == {}


def test_what_the_cluster_engine_runs_decides(call, fake_ports, monkeypatch):
    # Single servers of 18 run here, clusters of 18 do not (say its binaries lack pg_rewind).
    _offer(monkeypatch, fake_ports.engine, ["15", "18"])
    _offer(monkeypatch, fake_ports.cluster_engine, ["15"])
    status, body = call("POST", CLUSTERS, {"name": "ha-db", "version": "18"})
    assert status == 422, body
    assert body["error"]["details"]["supported"] == ["15"]
    assert call("POST", "/api/v1/postgres/single", {"name": "single-18", "version": "18"})[0] == 202
