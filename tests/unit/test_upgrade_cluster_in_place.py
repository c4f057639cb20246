"""The in-place upgrade of a cluster through the api handler, with fake ports: what the user
sees when it succeeds, when its check fails, and when a step fails before or after the
upgraded primary took writes."""

from __future__ import annotations

from typing import Any

import pytest

from pgfleet.core.errors import EngineError
from pgfleet.ports.cluster_engine import ClusterSpec
from tests.unit.fakes import FakeClusterEngine

CLUSTERS = "/api/v1/postgres/cluster"


class UpgradingClusterEngine(FakeClusterEngine):
    """Each node's data directory has a version; the upgrade moves the primary's and sets the
    others' aside, as the local engine does. `fail` names the methods that raise (each once)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[tuple[str, str], str | None] = {}  # (cluster, node) -> data version
        self.kept: dict[tuple[str, str], str | None] = {}
        self.findings: list[str] = []
        self.fail: set[str] = set()
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            self.fail.discard(name)
            raise EngineError(f"{name} failed (fake)")

    def provision_node(self, spec: ClusterSpec, node: Any) -> str:
        self.data.setdefault((spec.cluster_id, node.node_id), spec.version)
        return super().provision_node(spec, node)

    def start_node(self, spec: ClusterSpec, node: Any) -> str:
        key = (spec.cluster_id, node.node_id)
        if self.data.get(key) is None:
            self.data[key] = self.data[(spec.cluster_id, self.leader[spec.cluster_id])]  # a clone
        return super().start_node(spec, node)

    def upgrade_space(self, cluster_id: str) -> tuple[int, int]:
        return 100 * 2**20, 10 * 2**30

    def upgrade_check(self, cluster_id: str, target_version: str, link: bool) -> list[str]:
        self._call("upgrade_check")
        return list(self.findings)

    def prepare_upgrade(self, cluster_id: str, node_id: str, target_version: str) -> str:
        self._call("prepare_upgrade")
        return "prepared"

    def upgrade_primary(self, spec: ClusterSpec, node_id: str, link: bool) -> str:
        self._call("upgrade_primary")
        if any(v["running"] for v in self.nodes[spec.cluster_id].values()):
            raise EngineError("stop every node before pg_upgrade")
        for n in spec.nodes:
            key = (spec.cluster_id, n.node_id)
            self.kept[key] = self.data[key]
            self.data[key] = spec.version if n.node_id == node_id else None
        self.leader.pop(spec.cluster_id, None)
        return "upgraded"

    def start_leader(self, spec: ClusterSpec, node_id: str, timeout: float = 120) -> str:
        self._call("start_leader")
        self.leader[spec.cluster_id] = node_id
        return super().start_node(spec, spec.node(node_id))

    def roll_back_upgrade(self, spec: ClusterSpec, node_id: str, target_version: str) -> str:
        self._call("roll_back_upgrade")
        for n in spec.nodes:
            self.stop_node(spec.cluster_id, n.node_id)
            key = (spec.cluster_id, n.node_id)
            self.data[key] = self.kept.pop(key, self.data[key])
        self.leader.pop(spec.cluster_id, None)
        return "old data directories put back"

    def finish_upgrade(self, cluster_id: str, target_version: str) -> str:
        self._call("finish_upgrade")
        self.kept = {k: v for k, v in self.kept.items() if k[0] != cluster_id}
        return "old data dropped"

    def after_upgrade(self, cluster_id: str) -> str:
        self._call("after_upgrade")
        return "analyzed"

    def node_version(self, cluster_id: str, node_id: str) -> str:
        return f"{self.data[(cluster_id, node_id)]}.1"


@pytest.fixture
def engine(fake_ports: Any) -> UpgradingClusterEngine:
    fake_ports.cluster_engine = UpgradingClusterEngine()
    return fake_ports.cluster_engine  # type: ignore[no-any-return]


def _cluster(call: Any, fake_ports: Any, name: str = "ha-db") -> dict[str, Any]:
    status, body = call("POST", CLUSTERS, {"name": name, "version": "15"})
    assert status == 202, body
    fake_ports.drain()
    return body


def _upgrade(call: Any, fake_ports: Any, cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    status, body = call("POST", f"{CLUSTERS}/{cid}/upgrade", {"target_version": "18", "mode": "in_place"})
    assert status == 202, body
    assert body["status"] == "upgrading"
    fake_ports.drain()
    _, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    return op, got


def test_upgrade_moves_every_node_to_the_new_version(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    cid = _cluster(call, fake_ports)["id"]
    op, got = _upgrade(call, fake_ports, cid)
    assert op["status"] == "succeeded", op
    assert [s["name"] for s in op["steps"]][:4] == ["backup", "prepare_new_cluster", "stop", "pg_upgrade"]
    assert got["status"] == "running" and got["version"] == "18", got
    assert "upgraded in place from PostgreSQL 15 to 18" in got["status_reason"]
    assert {engine.node_version(cid, n["id"]) for n in got["nodes"]} == {"18.1"}
    assert all(v["running"] for v in engine.nodes[cid].values())
    assert op["detail"]["upgraded_node"] == "n1" and op["detail"]["down_seconds"] is not None


def test_a_failed_check_is_a_409_and_changes_nothing(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    cid = _cluster(call, fake_ports)["id"]
    engine.findings = ["n1 (primary): Checking for incompatible polymorphic functions: fatal"]
    status, body = call("POST", f"{CLUSTERS}/{cid}/upgrade", {"target_version": "18"})
    assert status == 409, body
    assert any("polymorphic" in f for f in body["error"]["details"]["findings"])
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "running" and got["version"] == "15"
    assert "prepare_upgrade" not in engine.calls


def test_a_failure_before_the_verification_puts_the_old_cluster_back(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    for n, failing in enumerate(("upgrade_primary", "start_leader")):
        cid = _cluster(call, fake_ports, f"ha-db-{n}")["id"]
        engine.fail = {failing}
        op, got = _upgrade(call, fake_ports, cid)
        assert op["status"] == "failed" and f"{failing} failed" in op["error"], op
        assert got["status"] == "running" and got["version"] == "15", got["status_reason"]
        assert (
            "rolled back" in got["status_reason"] and "PostgreSQL 15 runs as before" in got["status_reason"]
        )
        assert {engine.node_version(cid, n["id"]) for n in got["nodes"]} == {"15.1"}
        assert all(v["running"] for v in engine.nodes[cid].values())
        assert op["detail"]["phase"] == "rolled_back"


def test_a_failed_roll_back_says_so(call: Any, fake_ports: Any, engine: UpgradingClusterEngine) -> None:
    cid = _cluster(call, fake_ports)["id"]
    engine.fail = {"start_leader", "roll_back_upgrade"}
    op, got = _upgrade(call, fake_ports, cid)
    assert op["status"] == "failed", op
    assert got["status"] == "failed" and "could not be put back" in got["status_reason"], got


def test_a_failure_before_the_stop_changes_nothing(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    cid = _cluster(call, fake_ports)["id"]
    engine.fail = {"prepare_upgrade"}
    op, got = _upgrade(call, fake_ports, cid)
    assert op["status"] == "failed", op
    assert got["status"] == "running" and got["version"] == "15" and "nothing changed" in got["status_reason"]
    assert "roll_back_upgrade" not in engine.calls and all(v["running"] for v in engine.nodes[cid].values())


def test_a_failure_after_the_verification_keeps_the_new_version(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    cid = _cluster(call, fake_ports)["id"]
    engine.fail = {"after_upgrade"}
    op, got = _upgrade(call, fake_ports, cid)
    assert op["status"] == "failed", op
    assert got["status"] == "running" and got["version"] == "18", got
    assert "after the verification failed" in got["status_reason"]
    assert "roll_back_upgrade" not in engine.calls


def test_sync_strict_clones_the_replicas_before_the_verifying_write(
    call: Any, fake_ports: Any, engine: UpgradingClusterEngine
) -> None:
    status, body = call(
        "POST", CLUSTERS, {"name": "strict-db", "version": "15", "replication_mode": "sync_strict"}
    )
    assert status == 202, body
    fake_ports.drain()
    op, got = _upgrade(call, fake_ports, body["id"])
    assert op["status"] == "succeeded", op
    verify = next(s for s in op["steps"] if s["name"] == "verify")
    assert verify["reason"].startswith("cloned n2, n3 again from n1"), verify
    assert got["version"] == "18" and all(v["running"] for v in engine.nodes[body["id"]].values())
