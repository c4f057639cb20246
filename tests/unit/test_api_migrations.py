"""Migrating a single instance into a cluster (UC8) through the api handler, with fake ports."""

from __future__ import annotations

MIGRATE = "/api/v1/postgres/migrate"


def _instance(call, fake_ports, name: str = "orders-db", tenant: str = "acme") -> dict:
    status, body = call("POST", "/api/v1/postgres/single", {"name": name}, tenant=tenant)
    assert status == 202, body
    fake_ports.drain()
    return body


def _migrate(call, fake_ports, source_id: str, **extra) -> dict:
    status, body = call("POST", MIGRATE, {"source_id": source_id, "target_type": "cluster", **extra})
    assert status == 202, body
    return body


def test_manual_migration_moves_the_credentials_and_waits_for_the_cutover(call, fake_ports):
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"], node_count=3)
    assert body["phase"] == "building" and body["cutover_mode"] == "manual"
    # The app's role and password move with the data: the cluster has the source's.
    assert body["credentials"]["password"] == source["credentials"]["password"]
    assert body["credentials"]["username"] == source["credentials"]["username"]
    assert body["old_endpoint"].startswith("read-write")
    fake_ports.drain()

    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["phase"] == "ready" and got["lag_bytes"] == 0, got
    assert [s["name"] for s in got["steps"]][-2:] == ["catch_up", "mark_ready"]
    cid = got["cluster_id"]
    upstream = fake_ports.cluster_engine.upstreams[cid]
    assert (upstream.host, upstream.port) == (source["endpoint"]["host"], source["endpoint"]["port"])
    assert fake_ports.engine.slots[source["id"]] == {upstream.slot}
    _, cluster = call("GET", f"/api/v1/postgres/cluster/{cid}")
    assert cluster["status"] == "running" and "standby cluster of" in cluster["status_reason"]
    assert not fake_ports.cluster_engine.promoted
    assert not fake_ports.engine.servers[source["id"]].get("read_only")

    status, cut = call("POST", f"{MIGRATE}/{body['id']}/cutover")
    assert status == 202 and cut["phase"] == "cutting_over" and cut["cutover_operation_id"], cut
    _, cluster = call("GET", f"/api/v1/postgres/cluster/{cid}")
    assert cluster["status"] == "promoting"
    fake_ports.drain()

    _, done = call("GET", f"{MIGRATE}/{body['id']}")
    assert done["phase"] == "completed", done
    assert [s["name"] for s in done["steps"]][-7:] == [
        "refuse_writes", "wait_replayed", "promote_and_forward", "create_database", "move_dependents",
        "mark_running", "complete",
    ]  # fmt: skip
    assert (
        done["target"]["uri"].count(",") == 2 and "target_session_attrs=read-write" in done["target"]["uri"]
    )
    assert source["credentials"]["password"] not in done["target"]["uri"]
    assert done["old_endpoint"].startswith("forwarded") and "(now n1)" in done["old_endpoint"], done
    assert done["writes_refused_at"]
    assert fake_ports.cluster_engine.promoted == [cid]
    # The source's port forwards to the cluster; the source itself is stopped, its data kept.
    assert fake_ports.cluster_engine.forwarded == {source["endpoint"]["port"]: cid}
    assert fake_ports.engine.servers[source["id"]]["read_only"] is True
    assert fake_ports.engine.servers[source["id"]]["running"] is False
    assert fake_ports.engine.slots[source["id"]] == set()  # the source keeps no WAL for it
    assert {n["what"] for n in done["not_moved"]} == {"backups"}
    _, src = call("GET", f"/api/v1/postgres/single/{source['id']}")
    assert src["status"] == "stopped" and f"migrated to cluster {cid}" in src["status_reason"], src
    # It cannot start on the port the forwarding holds, nor take a final backup.
    status, refused = call("POST", f"/api/v1/postgres/single/{source['id']}/start")
    assert status == 409 and "forwards to" in refused["error"]["message"], refused
    assert call("DELETE", f"/api/v1/postgres/single/{source['id']}?final_backup=true")[0] == 409
    _, cluster = call("GET", f"/api/v1/postgres/cluster/{cid}")
    assert cluster["status"] == "running" and cluster["primary"] == "n1"
    assert fake_ports.store.get("cluster", cid)["standby_of"] is None
    # A second cutover of a completed migration is refused, and so is migrating the source again.
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover")[0] == 409
    status, again = call("POST", MIGRATE, {"source_id": source["id"], "target_type": "cluster"})
    assert status == 409 and "migrated to cluster" in again["error"]["message"], again

    # Deleting the source removes the forwarding and the migration.
    assert call("DELETE", f"/api/v1/postgres/single/{source['id']}")[0] == 202
    fake_ports.drain()
    assert fake_ports.cluster_engine.forwarded == {}
    assert call("GET", f"{MIGRATE}/{body['id']}")[0] == 404
    assert call("GET", f"/api/v1/postgres/cluster/{cid}")[0] == 200


def test_a_second_migration_of_the_same_source_is_409(call, fake_ports):
    source = _instance(call, fake_ports)
    first = _migrate(call, fake_ports, source["id"])
    status, body = call("POST", MIGRATE, {"source_id": source["id"], "target_type": "cluster"})
    assert status == 409 and first["id"] in body["error"]["message"], body
    # The source must keep running while it is migrated.
    status, body = call("POST", f"/api/v1/postgres/single/{source['id']}/stop")
    assert status == 409 and "being migrated" in body["error"]["message"], body
    fake_ports.drain()
    assert call("POST", MIGRATE, {"source_id": source["id"], "target_type": "cluster"})[0] == 409


def test_tenants_quota_schedule_and_settings_move_with_the_data(call, fake_ports):
    source = _instance(call, fake_ports)
    sid = source["id"]
    status, tenant = call("POST", f"/api/v1/postgres/single/{sid}/tenants", {"tenant_id": "blue"})
    assert status == 201, tenant
    quota = {"max_storage_mb": 500, "max_connections": 20}
    assert call("PUT", f"/api/v1/postgres/single/{sid}/quota", quota)[0] == 200
    schedule = {"full_backup_cron": "cron(0 3 * * ? *)", "retention_days": 9}
    assert call("PUT", f"/api/v1/postgres/single/{sid}/backup/schedule", schedule)[0] == 200
    fake_ports.store.update("instance", sid, {"settings": {"work_mem": "8MB"}})
    body = _migrate(call, fake_ports, sid, node_count=2)
    assert {m["what"].split(" (")[0] for m in body["moved"]} == {
        "tenants", "quota", "backup schedule", "setting overrides"
    }, body["moved"]  # fmt: skip
    fake_ports.drain()
    cid = fake_ports.store.get("migration", body["id"])["cluster_id"]
    assert fake_ports.store.get("cluster", cid)["settings"] == {"work_mem": "8MB"}
    # The physical copy brought the tenant's database and roles (the fakes keep them apart).
    fake_ports.cluster_engine.admins[cid] = fake_ports.engine.admins[sid]
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover")[0] == 202
    fake_ports.drain()
    _, done = call("GET", f"{MIGRATE}/{body['id']}")
    assert done["phase"] == "completed", done
    _, tenants = call("GET", f"/api/v1/postgres/cluster/{cid}/tenants")
    assert [t["tenant_id"] for t in tenants["tenants"]] == ["blue"], tenants
    _, left = call("GET", f"/api/v1/postgres/single/{sid}/tenants")
    assert left["tenants"] == []
    assert fake_ports.secrets.get(f"tenants/{cid}/blue") == tenant["credentials"]["password"]
    _, moved_quota = call("GET", f"/api/v1/postgres/cluster/{cid}/quota")
    assert moved_quota["max_storage_mb"] == 500 and moved_quota["max_connections"] == 20, moved_quota
    _, moved_schedule = call("GET", f"/api/v1/postgres/cluster/{cid}/backup/schedule")
    assert moved_schedule["full_backup_cron"] == "cron(0 3 * * ? *)" and moved_schedule["retention_days"] == 9
    _, old_schedule = call("GET", f"/api/v1/postgres/single/{sid}/backup/schedule")
    assert old_schedule["full_backup_cron"] is None


def test_deleting_the_cluster_frees_the_old_endpoint(call, fake_ports):
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"], cutover_mode="automatic")
    fake_ports.drain()
    cid = fake_ports.store.get("migration", body["id"])["cluster_id"]
    assert fake_ports.cluster_engine.forwarded == {source["endpoint"]["port"]: cid}
    assert call("DELETE", f"/api/v1/postgres/cluster/{cid}")[0] == 202
    fake_ports.drain()
    assert fake_ports.cluster_engine.forwarded == {}
    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["old_endpoint"].startswith("released"), got
    # The source may serve its data again on its own port.
    assert call("POST", f"/api/v1/postgres/single/{source['id']}/start")[0] == 202
    fake_ports.drain()
    assert fake_ports.engine.servers[source["id"]]["running"] is True


def test_reconcile_forwards_the_old_endpoint_again(call, fake_ports):
    from pgfleet.domains import migrations

    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"], cutover_mode="automatic")
    fake_ports.drain()
    fake_ports.cluster_engine.forwarded.clear()  # the proxy died, or the stack went down
    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["old_endpoint"].startswith("not forwarded"), got
    lines = migrations.reconcile(fake_ports)
    assert len(lines) == 1 and body["id"] in lines[0], lines
    assert source["endpoint"]["port"] in fake_ports.cluster_engine.forwarded


def test_automatic_migration_cuts_over_by_itself(call, fake_ports):
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"], node_count=2, cutover_mode="automatic")
    fake_ports.drain()
    _, done = call("GET", f"{MIGRATE}/{body['id']}")
    assert done["phase"] == "completed" and done["node_count"] == 2, done
    assert fake_ports.cluster_engine.promoted == [done["cluster_id"]]
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover")[0] == 409


def test_cutover_of_a_lagging_migration_is_409_with_the_lag(call, fake_ports):
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"])
    status, refused = call("POST", f"{MIGRATE}/{body['id']}/cutover")  # still building
    assert status == 409 and "building" in refused["error"]["message"]
    fake_ports.drain()
    fake_ports.engine.servers[source["id"]]["wal"] = 50 * 1024 * 1024  # the source wrote on
    status, refused = call("POST", f"{MIGRATE}/{body['id']}/cutover")
    assert status == 409 and f"{50 * 1024 * 1024} bytes behind" in refused["error"]["message"], refused
    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["phase"] == "ready" and got["lag_bytes"] == 50 * 1024 * 1024


def test_bad_input(call, fake_ports):
    source = _instance(call, fake_ports)
    ok = {"source_id": source["id"], "target_type": "cluster"}
    status, body = call("POST", MIGRATE, {**ok, "source_id": "pgc-0123456789ab"})
    assert status == 422 and "is a cluster already" in str(body["error"]["details"]), body
    assert call("POST", MIGRATE, {**ok, "target_type": "single"})[0] == 422
    assert call("POST", MIGRATE, {**ok, "node_count": 10})[0] == 422
    assert call("POST", MIGRATE, {**ok, "node_count": 0})[0] == 422
    assert call("POST", MIGRATE, {**ok, "cutover_mode": "later"})[0] == 422
    status, body = call("POST", MIGRATE, {**ok, "source_id": "pgi-0123456789ab"})
    assert status == 404, body
    assert call("GET", f"{MIGRATE}/mig-0123456789ab")[0] == 404
    assert call("POST", f"{MIGRATE}/mig-0123456789ab/cutover")[0] == 404
    # A token of another tenant does not see the source.
    assert call("POST", MIGRATE, ok, tenant="other")[0] == 404
    assert call("POST", MIGRATE, ok, role="viewer")[0] == 403
    # A stopped instance cannot be migrated.
    assert call("POST", f"/api/v1/postgres/single/{source['id']}/stop")[0] == 202
    fake_ports.drain()
    status, body = call("POST", MIGRATE, ok)
    assert status == 409 and "only a running instance" in body["error"]["message"], body
    assert not any(kind == "migration" for kind, _ in fake_ports.store.records)


def test_another_tenant_sees_no_migration(call, fake_ports):
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"])
    assert call("GET", f"{MIGRATE}/{body['id']}", tenant="other")[0] == 404
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover", tenant="other")[0] == 404


def test_a_failed_cutover_gives_the_source_its_writes_back(call, fake_ports, monkeypatch):
    from pgfleet.domains.migrations import workflows

    monkeypatch.setattr(workflows, "REPLAY_TIMEOUT", 0.3)
    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"])
    fake_ports.drain()
    fake_ports.cluster_engine.replayed[fake_ports.store.get("migration", body["id"])["cluster_id"]] = -1
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover")[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["phase"] == "failed" and "takes writes again" in got["phase_reason"], got
    assert fake_ports.engine.servers[source["id"]]["read_only"] is False
    assert not fake_ports.cluster_engine.promoted


def test_a_failed_promotion_starts_the_source_again_on_its_port(call, fake_ports, monkeypatch):
    from pgfleet.core.errors import EngineError

    def refuse(cluster_id: str) -> str:
        raise EngineError("the leader did not accept writes in time after promotion")

    source = _instance(call, fake_ports)
    body = _migrate(call, fake_ports, source["id"])
    fake_ports.drain()
    monkeypatch.setattr(fake_ports.cluster_engine, "promote_standby_cluster", refuse)
    assert call("POST", f"{MIGRATE}/{body['id']}/cutover")[0] == 202
    fake_ports.drain()
    _, got = call("GET", f"{MIGRATE}/{body['id']}")
    assert got["phase"] == "failed" and "started again" in got["phase_reason"], got
    server = fake_ports.engine.servers[source["id"]]
    assert server["running"] is True and server["read_only"] is False
    assert fake_ports.cluster_engine.forwarded == {}  # the port is the source's again
    _, src = call("GET", f"/api/v1/postgres/single/{source['id']}")
    assert src["status"] == "running", src
    # It may be migrated again once the failed cluster (which has the source's name) is deleted.
    assert call("DELETE", f"/api/v1/postgres/cluster/{got['cluster_id']}")[0] == 202
    fake_ports.drain()
    status, again = call("POST", MIGRATE, {"source_id": source["id"], "target_type": "cluster"})
    assert status == 202, again
