"""The cluster API through the api handler, with fake ports below the domains."""

from __future__ import annotations

CLUSTERS = "/api/v1/postgres/cluster"


def _create(call, fake_ports, **extra):
    status, body = call("POST", CLUSTERS, {"name": "ha-db", **extra})
    assert status == 202, body
    fake_ports.drain()
    return body


def test_create_gives_multi_host_uris_and_topology(call, fake_ports):
    body = _create(call, fake_ports, replication_mode="sync")
    creds = body["credentials"]
    assert creds["uri"].count(",") == 2 and creds["uri"].endswith("target_session_attrs=read-write")
    assert creds["read_only_uri"].endswith("target_session_attrs=prefer-standby")
    status, got = call("GET", f"{CLUSTERS}/{body['id']}")
    assert status == 200 and got["status"] == "running" and got["node_count"] == 3
    assert got["primary"] == "n1" and [n["role"] for n in got["nodes"]] == ["primary", "replica", "replica"]
    assert got["replication_mode"] == "sync"


def test_cluster_runs_before_its_first_backup(call, fake_ports):
    from pgfleet.core import operations

    status, body = call("POST", CLUSTERS, {"name": "ha-db"})
    assert status == 202, body
    fake_ports.queue.messages.clear()  # the create alone
    assert "succeeded" in operations.run(fake_ports, body["operation_id"])
    _, op = call("GET", f"/api/v1/operations/{body['operation_id']}")
    assert [s["name"] for s in op["steps"]][-2:] == ["create_database", "mark_running"]
    # the stanza comes with the first backup, as its own operation
    assert not fake_ports.backup_engine.stanzas.get(body["id"], {}).get("created")
    _, got = call("GET", f"{CLUSTERS}/{body['id']}")
    assert got["status"] == "running" and got["backup_status"] == "pending", got
    (backup_op,) = [m["operation_id"] for m in fake_ports.queue.messages]
    assert f"operation {backup_op}" in got["backup_status_reason"]
    _, listing = call("GET", f"{CLUSTERS}/{body['id']}/backups")
    assert [(b["backup_id"], b["status"]) for b in listing["backups"]] == [
        (got["first_backup_id"], "pending")
    ]
    assert listing["earliest_restorable_time"] is None
    status, refused = call("POST", f"{CLUSTERS}/{body['id']}/restore", {})
    assert status == 409 and "the first backup of this cluster is pending" in refused["error"]["message"]
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{body['id']}")
    assert got["backup_status"] == "completed"
    assert fake_ports.backup_engine.stanzas[body["id"]]["created"]
    _, listing = call("GET", CLUSTERS)
    assert listing["clusters"][0]["backup_status"] == "completed"


def test_validation(call, fake_ports):
    assert call("POST", CLUSTERS, {"name": "ha-db", "node_count": 10})[0] == 422
    assert call("POST", CLUSTERS, {"name": "ha-db", "replication_mode": "quorum"})[0] == 422
    status, body = call(
        "POST", CLUSTERS, {"name": "ha-db", "node_count": 1, "replication_mode": "sync_strict"}
    )
    assert status == 422 and "sync_strict" in str(body["error"]["details"])
    assert fake_ports.store.records == {}


def test_promote_and_replication_status(call, fake_ports):
    body = _create(call, fake_ports)
    cid = body["id"]
    status, rs = call("GET", f"{CLUSTERS}/{cid}/replication/status")
    assert status == 200 and rs["primary"] == "n1"
    assert {r["node_name"] for r in rs["replicas"]} == {"n2", "n3"}
    assert set(rs["replicas"][0]) == {"node_name", "lag_bytes", "lag_seconds", "state", "is_healthy"}
    assert call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n1"})[0] == 409  # already primary
    assert call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n7"})[0] == 404
    status, got = call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n3"})
    assert status == 202 and got["status"] == "promoting"
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["primary"] == "n3" and got["status"] == "running"


def test_promote_refuses_a_replica_that_cannot_take_over(call, fake_ports):
    """An unhealthy or lagging replica gets a 409 with the reason at request time: nothing
    is queued and the cluster keeps running under its primary."""
    cid = _create(call, fake_ports)["id"]
    nodes = fake_ports.cluster_engine.nodes[cid]
    cases = [
        ({"running": False, "state": "stopped"}, "not running (stopped)"),
        ({"state": "starting"}, "not streaming (starting)"),
        ({"timeline": 0}, "timeline 0"),
        ({"lag_bytes": 64 * 1024 * 1024}, "67108864 bytes behind"),
        ({"lag_bytes": None}, "lag is unknown"),
    ]
    for override, reason in cases:
        saved = dict(nodes["n2"])
        nodes["n2"].update(override)
        status, body = call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n2"})
        nodes["n2"] = saved
        assert status == 409, (override, body)
        assert "n2" in body["error"]["message"] and reason in body["error"]["message"], (override, body)
    assert fake_ports.queue.messages == []
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "running" and got["primary"] == "n1"
    # A replica as far behind as the bound allows may still be promoted.
    nodes["n2"]["lag_bytes"] = fake_ports.settings.promote_max_lag_bytes
    assert call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n2"})[0] == 202


def test_promote_needs_a_running_primary(call, fake_ports):
    cid = _create(call, fake_ports)["id"]
    fake_ports.cluster_engine.nodes[cid]["n1"]["running"] = False  # Patroni has not elected yet
    status, body = call("POST", f"{CLUSTERS}/{cid}/promote", {"node_id": "n2"})
    assert status == 409 and "no running primary" in body["error"]["message"], body


def test_scale_up_and_down_never_removes_the_primary(call, fake_ports):
    cid = _create(call, fake_ports)["id"]
    fake_ports.cluster_engine.switchover(cid, "n3")
    assert call("POST", f"{CLUSTERS}/{cid}/scale", {"node_count": 5})[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert [n["id"] for n in got["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    assert call("POST", f"{CLUSTERS}/{cid}/scale", {"node_count": 2})[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["node_count"] == 2 and "n3" in [n["id"] for n in got["nodes"]] and got["primary"] == "n3"
    ports_held = [k for k in fake_ports.store.claims if k.startswith("port#")]
    assert len(ports_held) == 4  # two nodes, a PostgreSQL and a REST port each


def test_lifecycle_stats_logs_and_delete(call, fake_ports):
    cid = _create(call, fake_ports)["id"]
    status, stats = call("GET", f"{CLUSTERS}/{cid}/stats")
    assert status == 200 and len(stats["nodes"]) == 3 and stats["cluster"]["connections"]["total"] == 3
    status, logs = call("GET", f"{CLUSTERS}/{cid}/logs?node=n2")
    assert status == 200 and {ln["node"] for ln in logs["lines"]} == {"n2"}
    assert call("POST", f"{CLUSTERS}/{cid}/stop")[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["status"] == "stopped" and got["primary"] is None
    assert call("POST", f"{CLUSTERS}/{cid}/scale", {"node_count": 4})[0] == 409
    assert call("POST", f"{CLUSTERS}/{cid}/start")[0] == 202
    fake_ports.drain()
    assert call("DELETE", f"{CLUSTERS}/{cid}")[0] == 202
    fake_ports.drain()
    assert call("GET", f"{CLUSTERS}/{cid}")[0] == 404
    assert fake_ports.store.claims == {}


def test_viewer_and_other_tenant(call, fake_ports):
    cid = _create(call, fake_ports)["id"]
    assert call("POST", f"{CLUSTERS}/{cid}/stop", role="viewer")[0] == 403
    assert call("GET", f"{CLUSTERS}/{cid}", role="viewer")[0] == 200
    assert call("GET", f"{CLUSTERS}/{cid}", tenant="globex")[0] == 404


def test_reconcile_restarts_dead_nodes_and_records_failover(call, fake_ports):
    from pgfleet.domains.reconcile import service as reconcile

    cid = _create(call, fake_ports)["id"]
    fake_ports.cluster_engine.stop_node(cid, "n1")
    fake_ports.cluster_engine.switchover(cid, "n2")  # Patroni failed over by itself
    actions = reconcile.run(fake_ports)
    assert any("restarted dead node(s) n1" in a and "primary is now n2" in a for a in actions)
    _, got = call("GET", f"{CLUSTERS}/{cid}")
    assert got["primary"] == "n2" and "failover by Patroni" in got["status_reason"]


def test_reconcile_waits_for_patroni_before_restarting_a_lost_primary(call, fake_ports):
    from pgfleet.domains.reconcile import service as reconcile

    cid = _create(call, fake_ports)["id"]
    engine = fake_ports.cluster_engine
    engine.nodes[cid]["n1"]["running"] = False  # killed, but still the leader in the DCS
    actions = reconcile.run(fake_ports)
    assert any("waiting for Patroni" in a for a in actions)
    assert engine.nodes[cid]["n1"]["running"] is False
