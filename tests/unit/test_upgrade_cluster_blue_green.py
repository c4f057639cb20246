"""Blue/green upgrades of a cluster without processes: the pre-flight read on the cluster's
primary, and the retention of the kept blue cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgfleet.domains.upgrades import blue_green, blue_green_cluster
from pgfleet.ports.cluster_engine import ClusterSpec, NodeSpec
from pgfleet.ports.engine import LogicalReadiness
from tests.unit.fakes import FakeClusterEngine, FakePorts

MB = 1024 * 1024


def _readiness(**changes: object) -> LogicalReadiness:
    values: dict[str, object] = {
        "wal_level": "replica", "databases": ["app", "postgres"], "tables_without_key": [],
        "unlogged_tables": [], "large_objects": [], "missing_extensions": [], "ddl_in_flight": [],
        "free_slots": 8, "free_wal_senders": 8, "prepared_transactions": 0,
        "data_bytes": 100 * MB, "free_bytes": 10_000 * MB,
    }  # fmt: skip
    return LogicalReadiness(**{**values, **changes})  # type: ignore[arg-type]


CLUSTER = {"id": "pgc-1", "nodes": [{"id": "n1"}, {"id": "n2"}, {"id": "n3"}]}


def test_a_cluster_that_can_be_replicated_passes(
    monkeypatch: pytest.MonkeyPatch, fake_ports: FakePorts
) -> None:
    monkeypatch.setattr(
        FakeClusterEngine, "logical_readiness", lambda self, cid, target: _readiness(), raising=False
    )
    items = {i.name: i for i in blue_green.checks(fake_ports, "cluster", CLUSTER, "18")}  # type: ignore[arg-type]
    assert all(i.passed for i in items.values()), items
    assert "restarts the primary once" in items["wal_level"].detail
    assert "3 node(s)" in items["disk"].detail


def test_findings_name_what_blocks_the_replication(
    monkeypatch: pytest.MonkeyPatch, fake_ports: FakePorts
) -> None:
    ready = _readiness(tables_without_key=["app: public.audit"], free_slots=1, free_bytes=200 * MB)
    monkeypatch.setattr(
        FakeClusterEngine, "logical_readiness", lambda self, cid, target: ready, raising=False
    )
    failed = {i.name: i.detail for i in blue_green_cluster.checks(fake_ports, CLUSTER, "18") if not i.passed}  # type: ignore[arg-type]
    assert set(failed) == {"primary keys", "replication slots", "disk"}, failed
    assert "public.audit" in failed["primary keys"]


def test_kept_blue_clusters_go_once_their_retention_has_passed(fake_ports: FakePorts) -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    for cid, hours in (("pgc-old", -1), ("pgc-new", 5)):
        kept = blue_green_cluster.kept_id(cid, "15")
        fake_ports.cluster_engine.provision_node(
            ClusterSpec(kept, "15", (NodeSpec("n1", 1, 2),)), NodeSpec("n1", 1, 2)
        )
        until = (now + timedelta(hours=hours)).isoformat()
        fake_ports.store.create(
            "cluster",
            {
                "id": cid,
                "tenant_id": "acme",
                "kept_blue": {"cluster_id": kept, "version": "15", "keep_until": until},
            },
        )
    done = blue_green_cluster.expire_kept(fake_ports, now)  # type: ignore[arg-type]
    assert done == [
        f"pgc-old: kept cluster pgc-old-blue15 destroyed (kept until {now - timedelta(hours=1):%Y-%m-%dT%H:%M:%S}+00:00)"
    ]
    assert set(fake_ports.cluster_engine.nodes) == {"pgc-new-blue15"}
    assert fake_ports.store.get("cluster", "pgc-old")["kept_blue"] is None
    assert blue_green_cluster.expire_kept(fake_ports, now) == []  # type: ignore[arg-type]


def test_a_standby_cluster_is_refused(fake_ports: FakePorts) -> None:
    record = {**CLUSTER, "standby_of": {"host": "127.0.0.1", "port": 5432, "slot": "s"}}
    (item,) = blue_green_cluster.checks(fake_ports, record, "18")  # type: ignore[arg-type]
    assert not item.passed and "migration" in item.detail
